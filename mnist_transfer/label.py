"""Label the test set in parallel shards with the trained head on feature-store features, and check the
exported SavedModel agrees on a sample.

Reads data/jpg/testing, data/model and params `label.*`, `backbone.*`, `bottlenecks.batch_size`,
`bottlenecks.chunk_images`, `executor.scheduler` → writes data/predictions/shard-<k>.csv.
Workers must see the repository and the feature store (same machine, or a shared filesystem).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mnist_transfer.common import ParamsError, StageError, atomic_path
from mnist_transfer.embedding import BackboneEmbedder, ImageRecord, embed_missing
from mnist_transfer.export import load_exported
from mnist_transfer.feature_store import FeatureStore
from mnist_transfer.idx import N_CLASSES

log = logging.getLogger("label")

PREDICTION_COLUMNS = ("path", "actual", "predicted", "confidence", "correct", *(f"p{d}" for d in range(N_CLASSES)))
PARITY_ATOL = 1e-4  # probabilities of the exported model vs the store+head path
_HEADS: dict[Path, Any] = {}  # per worker process: the head is loaded once


@dataclass(frozen=True)
class LabelContext:
    """What every shard needs: where things are and how to embed."""

    data_root: Path
    store_path: Path
    head_path: Path
    embedder: BackboneEmbedder
    chunk_images: int


@dataclass(frozen=True)
class ShardJob:
    index: int
    records: tuple[ImageRecord, ...]
    out_path: Path


@dataclass(frozen=True)
class ShardSummary:
    index: int
    n_images: int
    n_computed: int  # backbone passes this shard needed
    n_correct: int
    seconds: float


class ShardError(StageError, RuntimeError):
    """A shard failed twice."""


def shard_of(rel_path: str, n_shards: int) -> int:
    """Stable shard of an image: a hash of its path relative to the data root, not its listing position."""
    return int(hashlib.sha1(rel_path.encode("utf-8")).hexdigest()[:12], 16) % n_shards


def assign_shards(records: Sequence[ImageRecord], n_shards: int) -> list[tuple[ImageRecord, ...]]:
    if n_shards < 1:
        raise ParamsError(f"label.shards must be ≥ 1, got {n_shards}")
    shards: list[list[ImageRecord]] = [[] for _ in range(n_shards)]
    for record in records:
        shards[shard_of(record.rel_path, n_shards)].append(record)
    return [tuple(shard) for shard in shards]


def prediction_rows(records: Sequence[ImageRecord], probabilities: np.ndarray) -> list[tuple]:
    """One CSV row per image: path, actual, predicted, confidence, correct, p0..p9."""
    predicted = probabilities.argmax(axis=1)
    return [
        (r.rel_path, r.label, int(p), f"{probs[p]:.6f}", int(p == r.label), *(f"{v:.6f}" for v in probs))
        for r, p, probs in zip(records, predicted, probabilities)
    ]


def write_predictions(rows: Sequence[tuple], path: Path) -> None:
    with atomic_path(path) as tmp_path, open(tmp_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        writer.writerows(rows)


def worker_head(head_path: Path) -> Any:
    if head_path not in _HEADS:
        import keras

        _HEADS[head_path] = keras.saving.load_model(head_path)
    return _HEADS[head_path]


def label_shard(job: ShardJob, context: LabelContext) -> ShardSummary:
    """On a worker: features from the store (computing the missing ones), head, shard CSV."""
    started = time.perf_counter()
    with FeatureStore(context.store_path) as store:
        computed = embed_missing(job.records, context.data_root, store, context.embedder, context.chunk_images)
        features = store.get(context.embedder.spec.identity(), [r.sha256 for r in job.records])
    if job.records:
        probabilities = worker_head(context.head_path).predict(features, batch_size=4096, verbose=0)
    else:  # a shard may be empty on a tiny test set
        probabilities = np.empty((0, N_CLASSES), np.float32)
    rows = prediction_rows(job.records, probabilities)
    write_predictions(rows, job.out_path)
    n_correct = sum(row[4] for row in rows)
    return ShardSummary(job.index, len(rows), computed, n_correct, time.perf_counter() - started)


def run_shards(jobs: Sequence[ShardJob], context: LabelContext, client: Any) -> list[ShardSummary]:
    """Run every shard on the cluster; retry a failed shard once, then fail naming it and its error."""
    from distributed import as_completed

    futures = {client.submit(label_shard, job, context, pure=False): job for job in jobs}
    retried: set[int] = set()
    summaries = []
    in_flight = as_completed(futures)
    for future in in_flight:
        job = futures[future]
        try:
            summary = future.result()
        except Exception as error:
            if job.index in retried:
                raise ShardError(f"shard {job.index} ({job.out_path}) failed twice: {error}") from error
            log.warning("shard %d failed (%s); retrying it once", job.index, error)
            retried.add(job.index)
            retry = client.submit(label_shard, job, context, pure=False)
            futures[retry] = job
            in_flight.add(retry)
            continue
        summaries.append(summary)
        log.info(
            "shard %d: %d images (%d backbone passes) in %.1fs, accuracy %.4f",
            summary.index, summary.n_images, summary.n_computed, summary.seconds, summary.n_correct / max(1, summary.n_images),
        )
    return sorted(summaries, key=lambda s: s.index)


def parity_sample(records: Sequence[ImageRecord], size: int) -> list[ImageRecord]:
    """An evenly spread, deterministic sample of the (sorted) records."""
    if size <= 0 or not records:
        return []
    positions = np.unique(np.linspace(0, len(records) - 1, num=min(size, len(records))).round().astype(int))
    return [records[p] for p in positions]


def check_exported_parity(sample: Sequence[ImageRecord], data_root: Path, model_dir: Path, predictions_dir: Path) -> int:
    """The exported SavedModel must predict what the shards say: same digit, probabilities within PARITY_ATOL."""
    import tensorflow as tf

    if not sample:
        return 0
    reported = read_predictions(predictions_dir)
    served = load_exported(model_dir).signatures["serving_default"]
    for start in range(0, len(sample), 64):
        part = sample[start : start + 64]
        encoded = tf.constant([(data_root / r.rel_path).read_bytes() for r in part])
        outputs = served(images=encoded)
        for record, digit, probabilities in zip(part, outputs["digit"].numpy(), outputs["probabilities"].numpy()):
            expected = reported[record.rel_path]
            gap = float(np.abs(probabilities - expected["probabilities"]).max())
            if digit != expected["predicted"] or gap > PARITY_ATOL:
                raise AssertionError(
                    f"{record.rel_path}: the exported model in {model_dir} says {digit}, the label stage says "
                    f"{expected['predicted']} (largest probability gap {gap:.2e}); train/serve skew"
                )
    return len(sample)


def read_predictions(predictions_dir: Path) -> dict[str, dict[str, Any]]:
    """{path: {predicted, probabilities}} from every shard CSV."""
    predictions = {}
    for shard in sorted(predictions_dir.glob("shard-*.csv")):
        with open(shard, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                probabilities = np.array([float(row[f"p{d}"]) for d in range(N_CLASSES)], dtype=np.float32)
                predictions[row["path"]] = {"predicted": int(row["predicted"]), "probabilities": probabilities}
    return predictions
