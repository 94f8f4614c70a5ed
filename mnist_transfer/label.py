"""Label the test set (and your own test digits) in shards with the trained head on feature-store
features, and check that the exported SavedModel (and its model.tflite) agrees on a sample.

One embedding path (mnist_transfer.embedding.ensure_features): the client reads the images, computes only
the features the store lacks on Dask workers (no cluster at all when none is missing), then applies the
head once per shard and writes each shard CSV atomically. Workers never see the repository or the store.
Reads data/jpg/testing, data/jpg/own/testing, data/model → writes data/predictions/shard-<k>.csv.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mnist_transfer.common import DataError, ParamsError, StageError, atomic_path
from mnist_transfer.embedding import ImageRecord
from mnist_transfer.export import TFLITE_FILE, load_exported, load_tflite, serve_files
from mnist_transfer.feature_store import FeatureStore
from mnist_transfer.idx import N_CLASSES


class ParityError(StageError):
    """The exported model (SavedModel or model.tflite) does not predict what the label stage wrote."""


log = logging.getLogger("label")

PREDICTION_COLUMNS = ("path", "actual", "predicted", "confidence", "correct", *(f"p{d}" for d in range(N_CLASSES)))
PARITY_ATOL = 1e-4  # probabilities of the exported model vs the store+head path
TFLITE_MIN_AGREEMENT = 0.99  # share of sampled digits model.tflite must predict as the label stage did
HEAD_BATCH = 4096  # feature vectors per head call


@dataclass(frozen=True)
class ShardSummary:
    index: int
    n_images: int
    n_correct: int


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


def classify_stored(records: Sequence[ImageRecord], store: FeatureStore, backbone_id: str, head: Any) -> np.ndarray:
    """(n_images, 10) probabilities of the head on the stored features of records, a batch at a time."""
    parts = [np.empty((0, N_CLASSES), np.float32)]
    for start in range(0, len(records), HEAD_BATCH):
        features = store.get(backbone_id, [r.sha256 for r in records[start : start + HEAD_BATCH]])  # (batch, 2048)
        parts.append(np.asarray(head.predict(features, batch_size=HEAD_BATCH, verbose=0), np.float32))
    return np.concatenate(parts)


def write_shards(
    records: Sequence[ImageRecord], n_shards: int, out_dir: Path, store: FeatureStore, backbone_id: str, head: Any
) -> list[ShardSummary]:
    """Label every shard from the store (every feature must be there) and write data/predictions/shard-<k>.csv."""
    summaries = []
    for index, shard in enumerate(assign_shards(records, n_shards)):
        rows = prediction_rows(shard, classify_stored(shard, store, backbone_id, head))
        write_predictions(rows, out_dir / f"shard-{index}.csv")
        summaries.append(ShardSummary(index, len(rows), sum(row[4] for row in rows)))
    return summaries


def parity_sample(records: Sequence[ImageRecord], size: int) -> list[ImageRecord]:
    """An evenly spread, deterministic sample of the (sorted) records."""
    if size <= 0 or not records:
        return []
    positions = np.unique(np.linspace(0, len(records) - 1, num=min(size, len(records))).round().astype(int))
    return [records[p] for p in positions]


def check_exported_parity(
    sample: Sequence[ImageRecord],
    data_root: Path,
    model_dir: Path,
    predictions_dir: Path,
    tflite_min_agreement: float = TFLITE_MIN_AGREEMENT,
) -> int:
    """The exported SavedModel must predict what the shards say: same digit, probabilities within PARITY_ATOL;
    model.tflite the same digit on ≥ tflite_min_agreement of the sample (check_tflite_parity)."""
    if not sample:
        return 0
    reported = read_predictions(predictions_dir)
    served = load_exported(model_dir).signatures["serving_default"]
    digits, probabilities = serve_files(served, [data_root / r.rel_path for r in sample], batch_size=64)
    for record, digit, record_probabilities in zip(sample, digits, probabilities):
        expected = reported[record.rel_path]
        gap = float(np.abs(record_probabilities - expected["probabilities"]).max())
        if digit != expected["predicted"] or gap > PARITY_ATOL:
            raise ParityError(
                f"{record.rel_path}: the exported model in {model_dir} says {digit}, the label stage says "
                f"{expected['predicted']} (largest probability gap {gap:.2e}); train/serve skew"
            )
    check_tflite_parity(sample, data_root, model_dir, reported, tflite_min_agreement)
    return len(sample)


def check_tflite_parity(
    sample: Sequence[ImageRecord],
    data_root: Path,
    model_dir: Path,
    reported: dict[str, dict[str, Any]],
    min_agreement: float = TFLITE_MIN_AGREEMENT,
) -> float:
    """model_dir/model.tflite must predict the reported digit for ≥ min_agreement of the sample (its
    quantised weights move probabilities a little, so digits are compared); returns the agreement."""
    from mnist_transfer.backbone import decode_image

    if not (model_dir / TFLITE_FILE).is_file():
        raise DataError(f"{model_dir / TFLITE_FILE} is missing: rerun the stage that exports {model_dir} (dvc repro)")
    # decoded by TensorFlow like every stage (Pillow's JPEG decoder differs by a grey level here and there)
    pixels = np.stack([decode_image((data_root / r.rel_path).read_bytes()).numpy() for r in sample])  # (n, 28, 28, 1)
    digits = load_tflite(model_dir)(pixels).argmax(axis=1)
    agreement = float(np.mean([digit == reported[r.rel_path]["predicted"] for r, digit in zip(sample, digits)]))
    log.info("model.tflite in %s predicts the label stage's digit on %.1f %% of %d sampled images",
             model_dir, 100 * agreement, len(sample))
    if agreement < min_agreement:
        raise ParityError(
            f"{model_dir / TFLITE_FILE} agrees with the label stage on {agreement:.1%} of {len(sample)} sampled "
            f"digits (< {min_agreement:.0%}, label.tflite_min_agreement): its quantisation or conversion broke the "
            "model; re-export it"
        )
    return agreement


def read_predictions(predictions_dir: Path) -> dict[str, dict[str, Any]]:
    """{path: {predicted, probabilities}} from every shard CSV."""
    predictions = {}
    for shard in sorted(predictions_dir.glob("shard-*.csv")):
        with open(shard, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                probabilities = np.array([float(row[f"p{d}"]) for d in range(N_CLASSES)], dtype=np.float32)
                predictions[row["path"]] = {"predicted": int(row["predicted"]), "probabilities": probabilities}
    return predictions
