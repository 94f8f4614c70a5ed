"""The shard CSVs every label stage writes: one row per image (path, actual, predicted, confidence, correct,
p0..p9, raw_confidence), images assigned to shards by a stable hash of their path.

confidence and p0..p9 are calibrated (the model's temperature, as `predict` and `serve` report them);
raw_confidence is the model's own top probability, kept for the report's before/after calibration figures."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mnist_transfer.data.idx import N_CLASSES
from mnist_transfer.data.records import ImageRecord
from mnist_transfer.errors import ParamsError
from mnist_transfer.models.calibration import apply_temperature
from mnist_transfer.outputs import atomic_path

PREDICTION_COLUMNS = (
    "path", "actual", "predicted", "confidence", "correct", *(f"p{d}" for d in range(N_CLASSES)), "raw_confidence",
)


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


def prediction_rows(records: Sequence[ImageRecord], probabilities: np.ndarray, temperature: float = 1.0) -> list[tuple]:
    """One CSV row per image: path, actual, predicted, confidence, correct, p0..p9 (calibrated with temperature),
    raw_confidence (of the model's own probabilities)."""
    calibrated = apply_temperature(probabilities, temperature) if temperature != 1.0 else probabilities
    predicted = probabilities.argmax(axis=1)
    return [
        (r.rel_path, r.label, int(p), f"{probs[p]:.6f}", int(p == r.label), *(f"{v:.6f}" for v in probs), f"{raw[p]:.6f}")
        for r, p, probs, raw in zip(records, predicted, calibrated, probabilities)
    ]


def write_predictions(rows: Sequence[tuple], path: Path) -> None:
    with atomic_path(path) as tmp_path, open(tmp_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        writer.writerows(rows)


def read_predictions(predictions_dir: Path) -> dict[str, dict[str, Any]]:
    """{path: {predicted, probabilities}} from every shard CSV."""
    predictions = {}
    for shard in sorted(predictions_dir.glob("shard-*.csv")):
        with open(shard, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                probabilities = np.array([float(row[f"p{d}"]) for d in range(N_CLASSES)], dtype=np.float32)
                predictions[row["path"]] = {"predicted": int(row["predicted"]), "probabilities": probabilities}
    return predictions
