"""Aggregate the label shards of each model into the accuracy report.

Reads data/predictions/shard-*.csv (the transfer model), data/predictions_cnn/shard-*.csv (the CNN, when
there), data/jpg/testing and your own test digits → writes reports/metrics.json, predictions.csv,
per_digit.csv, misclassified.csv, disagreements.csv, own_predictions.csv, report.html. The official test
set and your own digits are reported apart: own digits never enter the official figures. Each model's
"calibration" (metrics.json) is its temperature and the test set's ECE before and after it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mnist_transfer.data.idx import N_CLASSES
from mnist_transfer.errors import DataError, StageError
from mnist_transfer.models.calibration import ECE_BINS, expected_calibration_error
from mnist_transfer.models.metadata import ModelMetadata
from mnist_transfer.outputs import atomic_path

log = logging.getLogger("report")

REQUIRED_COLUMNS = ("path", "actual", "predicted", "confidence", "correct")
OWN_PREFIX = "own/"  # paths of your own digits, relative to data/jpg


class CoverageError(StageError, ValueError):
    """The shards do not cover the test set exactly once."""


def check_correct_column(frame: pd.DataFrame, shard_path: Path) -> None:
    """`correct` is 1 exactly where actual == predicted: the accuracy figures average it."""
    agree = (frame["actual"] == frame["predicted"]).astype(int)
    if bad := frame.index[frame["correct"] != agree].tolist():
        row = frame.loc[bad[0]]
        raise DataError(
            f"{shard_path} line {bad[0] + 2} ({row['path']}): correct={row['correct']} but actual={row['actual']}, "
            f"predicted={row['predicted']} ({len(bad)} such rows); rerun the label stage"
        )


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
        check_correct_column(frame, shard_path)
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


def own_summary(own: pd.DataFrame) -> dict:
    """metrics.json's "own" entry: accuracy, n_images, per_digit (null for a digit you gave no image of)."""
    per_digit = per_digit_table(confusion_matrix(own))
    return {k: v for k, v in summary_metrics(own, per_digit).items() if k in ("accuracy", "n_images", "per_digit")}


def raw_confidences(predictions: pd.DataFrame) -> pd.Series:
    """The model's own top probabilities: raw_confidence where the shards have it, else confidence (shards
    written before calibration)."""
    return predictions["raw_confidence"] if "raw_confidence" in predictions.columns else predictions["confidence"]


def calibration_metrics(predictions: pd.DataFrame, temperature: float) -> dict:
    """metrics.json's "calibration": the temperature (fitted on the validation split) and the 15-bin ECE on
    these predictions before (raw_confidence) and after (confidence) it."""
    correct = predictions["correct"].to_numpy()
    return {
        "temperature": float(temperature),
        "ece_before": expected_calibration_error(raw_confidences(predictions).to_numpy(), correct),
        "ece_after": expected_calibration_error(predictions["confidence"].to_numpy(), correct),
        "n_bins": ECE_BINS,
    }


@dataclass(frozen=True)
class ModelResults:
    """One model's predictions, split into the official test set and your own digits, with its tables."""

    name: str  # "transfer" | "cnn"
    official: pd.DataFrame
    own: pd.DataFrame
    matrix: np.ndarray  # (10, 10) of the official test set
    per_digit: pd.DataFrame
    metrics: dict  # official figures (with "calibration"), plus "own" when you gave own test digits
    metadata: ModelMetadata | None = None  # the model.json the label stage copied beside the shards


def model_results(name: str, predictions: pd.DataFrame, metadata: ModelMetadata | None = None) -> ModelResults:
    is_own = predictions["path"].str.startswith(OWN_PREFIX)
    official = predictions.loc[~is_own].sort_values("path").reset_index(drop=True)
    own = predictions.loc[is_own].sort_values("path").reset_index(drop=True)
    if official.empty:
        raise DataError(f"the {name} model's predictions hold no official test image")
    matrix = confusion_matrix(official)
    per_digit = per_digit_table(matrix)
    metrics = summary_metrics(official, per_digit)
    metrics["calibration"] = calibration_metrics(official, metadata.temperature if metadata is not None else 1.0)
    if not own.empty:
        metrics["own"] = own_summary(own)
    return ModelResults(name, official, own, matrix, per_digit, metrics, metadata)


def combined_metrics(transfer: ModelResults, cnn: ModelResults | None) -> dict:
    """metrics.json: the transfer model's figures at the top level (other tools read them), the CNN's under "cnn"."""
    metrics = dict(transfer.metrics)
    if cnn is not None:
        keep = ("accuracy", "n_images", "n_errors", "mean_confidence", "per_digit", "calibration", "own")
        metrics["cnn"] = {key: cnn.metrics[key] for key in keep if key in cnn.metrics}
    return metrics


def per_digit_side_by_side(transfer: ModelResults, cnn: ModelResults | None) -> pd.DataFrame:
    """per_digit.csv: the transfer model's table, plus cnn_accuracy per digit when the CNN is there."""
    table = transfer.per_digit.copy()
    if cnn is not None:
        table["cnn_accuracy"] = cnn.per_digit["accuracy"].to_numpy()
    return table


DISAGREEMENT_COLUMNS = ("path", "actual", "transfer", "transfer_confidence", "cnn", "cnn_confidence")


def disagreements(transfer: pd.DataFrame, cnn: pd.DataFrame) -> pd.DataFrame:
    """Test images the two models label differently, by path."""
    both = transfer.merge(cnn, on=["path", "actual"], suffixes=("_t", "_c"), validate="one_to_one")
    differ = both.loc[both["predicted_t"] != both["predicted_c"]]
    table = pd.DataFrame({
        "path": differ["path"], "actual": differ["actual"],
        "transfer": differ["predicted_t"], "transfer_confidence": differ["confidence_t"],
        "cnn": differ["predicted_c"], "cnn_confidence": differ["confidence_c"],
    })
    return table.sort_values("path").reset_index(drop=True)


def own_table(transfer: ModelResults, cnn: ModelResults | None, manifest_rows: list[dict[str, str]]) -> pd.DataFrame:
    """own_predictions.csv: each of your own test digits with its original file and each model's answer."""
    originals = {row["path"]: row["original"] for row in manifest_rows}
    table = transfer.own.loc[:, list(REQUIRED_COLUMNS)].copy()
    table.insert(1, "original", [originals.get(path, "") for path in table["path"]])
    if cnn is not None:
        by_path = cnn.own.set_index("path")
        table["cnn_predicted"] = by_path.loc[table["path"], "predicted"].to_numpy() if len(table) else []
        table["cnn_confidence"] = by_path.loc[table["path"], "confidence"].to_numpy() if len(table) else []
    return table.reset_index(drop=True)
