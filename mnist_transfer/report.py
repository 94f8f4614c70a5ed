"""Aggregate the label shards into the accuracy report.

Reads data/predictions/shard-*.csv and data/jpg/testing → writes reports/metrics.json,
reports/predictions.csv, reports/per_digit.csv, reports/misclassified.csv, reports/report.html.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from mnist_transfer.common import DataError, StageError, atomic_path
from mnist_transfer.idx import N_CLASSES

log = logging.getLogger("report")

REQUIRED_COLUMNS = ("path", "actual", "predicted", "confidence", "correct")


class CoverageError(StageError, ValueError):
    """The shards do not cover the test set exactly once."""


def read_shards(predictions_dir: Path) -> pd.DataFrame:
    shard_paths = sorted(predictions_dir.glob("shard-*.csv"))
    if not shard_paths:
        raise FileNotFoundError(f"{predictions_dir} holds no shard-*.csv; run the label stage first")
    frames = []
    for shard_path in shard_paths:
        frame = pd.read_csv(shard_path, dtype={"path": str})
        missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
        if missing:
            raise DataError(f"{shard_path}: missing columns {missing}")
        frames.append(frame.assign(shard=shard_path.name))
    return pd.concat(frames, ignore_index=True)


def check_coverage(predictions: pd.DataFrame, expected_paths: set[str]) -> None:
    """Every test image exactly once: no duplicate, no missing, no stranger."""
    duplicated = predictions.loc[predictions["path"].duplicated(keep=False)]
    if not duplicated.empty:
        first = duplicated.iloc[0]
        shards = sorted(set(duplicated.loc[duplicated["path"] == first["path"], "shard"]))
        raise CoverageError(f"{first['path']} is labelled {len(shards) if len(shards) > 1 else 'twice'} times ({', '.join(shards)})")
    found = set(predictions["path"])
    if missing := sorted(expected_paths - found):
        raise CoverageError(f"{len(missing)} test images have no prediction, e.g. {missing[0]}")
    if unknown := sorted(found - expected_paths):
        raise CoverageError(f"{len(unknown)} predictions are for images not in the test set, e.g. {unknown[0]}")


def confusion_matrix(predictions: pd.DataFrame) -> np.ndarray:
    """(10, 10) counts: row = actual digit, column = predicted digit."""
    matrix = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(matrix, (predictions["actual"].to_numpy(), predictions["predicted"].to_numpy()), 1)
    return matrix


def per_digit_table(matrix: np.ndarray) -> pd.DataFrame:
    """digit, n, correct, accuracy, most_confused_with (the commonest wrong prediction; empty if none)."""
    rows = []
    for digit in range(N_CLASSES):
        wrong = matrix[digit].copy()
        wrong[digit] = 0
        n_images = int(matrix[digit].sum())
        rows.append({
            "digit": digit,
            "n": n_images,
            "correct": int(matrix[digit, digit]),
            "accuracy": matrix[digit, digit] / n_images if n_images else float("nan"),
            "most_confused_with": int(wrong.argmax()) if wrong.any() else None,
        })
    return pd.DataFrame(rows).astype({"most_confused_with": "Int64"})


def summary_metrics(predictions: pd.DataFrame, per_digit: pd.DataFrame) -> dict:
    return {
        "accuracy": float(predictions["correct"].mean()),
        "n_images": int(len(predictions)),
        "n_errors": int((predictions["correct"] == 0).sum()),
        "mean_confidence": float(predictions["confidence"].mean()),
        # null for a digit with no test image (JSON has no NaN)
        "per_digit": {str(row.digit): None if pd.isna(row.accuracy) else float(row.accuracy) for row in per_digit.itertuples()},
    }


def misclassified(predictions: pd.DataFrame) -> pd.DataFrame:
    """The wrong predictions, most confident (worst) first."""
    wrong = predictions.loc[predictions["correct"] == 0, list(REQUIRED_COLUMNS)]
    return wrong.sort_values(["confidence", "path"], ascending=[False, True]).reset_index(drop=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp_path:
        frame.to_csv(tmp_path, index=False)


def write_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp_path:
        tmp_path.write_text(text, encoding="utf-8")
