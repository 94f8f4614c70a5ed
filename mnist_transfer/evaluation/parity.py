"""Train/serve skew checks: the exported SavedModel and model.tflite must predict what a label stage wrote.

The CNN always exports a model.tflite; the transfer model only with train.tflite (optional_tflite_floor)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mnist_transfer.data.records import ImageRecord
from mnist_transfer.errors import DataError, StageError
from mnist_transfer.evaluation.predictions import read_predictions
from mnist_transfer.models.calibration import apply_temperature
from mnist_transfer.models.export import TFLITE_FILE, load_exported, load_tflite, serve_files
from mnist_transfer.models.metadata import read_metadata

log = logging.getLogger("parity")

class ParityError(StageError):
    """The exported model (SavedModel or model.tflite) does not predict what the label stage wrote."""
# probabilities of the exported model vs the store+head path: the two graphs sum in other orders, which moved a
# probability by 1.14e-4 (at T 0.877) on a 30-per-class stand-in run; a real skew moves them by 1e-2 and more
PARITY_ATOL = 1e-3
TFLITE_MIN_AGREEMENT = 0.99  # share of sampled digits model.tflite must predict as the label stage did


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
    tflite_min_agreement: float | None = TFLITE_MIN_AGREEMENT,
) -> int:
    """The exported SavedModel, calibrated with its model.json's temperature as DigitModel serves it, must
    predict what the shards say: same digit, probabilities within PARITY_ATOL (times 1/T when T < 1: sharpening
    multiplies log-probabilities, and so their small differences, by 1/T); model.tflite the same digit on
    ≥ tflite_min_agreement of the sample (check_tflite_parity; None: no TFLite check)."""
    if not sample:
        return 0
    reported = read_predictions(predictions_dir)
    served = load_exported(model_dir).signatures["serving_default"]
    digits, probabilities = serve_files(served, [data_root / r.rel_path for r in sample], batch_size=64)
    metadata = read_metadata(model_dir)
    temperature = metadata.temperature if metadata is not None else 1.0
    probabilities = apply_temperature(probabilities, temperature) if temperature != 1.0 else probabilities
    tolerance = PARITY_ATOL * max(1.0, 1.0 / temperature)
    for record, digit, record_probabilities in zip(sample, digits, probabilities):
        expected = reported[record.rel_path]
        gap = float(np.abs(record_probabilities - expected["probabilities"]).max())
        if digit != expected["predicted"] or gap > tolerance:
            raise ParityError(
                f"{record.rel_path}: the exported model in {model_dir} says {digit}, the label stage says "
                f"{expected['predicted']} (largest probability gap {gap:.2e}); train/serve skew"
            )
    if tflite_min_agreement is not None:
        check_tflite_parity(sample, data_root, model_dir, reported, tflite_min_agreement)
    return len(sample)


def optional_tflite_floor(model_dir: Path, min_agreement: float) -> float | None:
    """min_agreement if model_dir holds a model.tflite, else None, logged: the transfer model's TFLite is opt-in
    (train.tflite), so the label stage checks it only when the train stage wrote one."""
    if (model_dir / TFLITE_FILE).is_file():
        return min_agreement
    log.info("no %s in %s (train.tflite is off): its TFLite parity check is skipped (label_cnn still checks the "
             "CNN's)", TFLITE_FILE, model_dir)
    return None


def check_tflite_parity(
    sample: Sequence[ImageRecord],
    data_root: Path,
    model_dir: Path,
    reported: dict[str, dict[str, Any]],
    min_agreement: float = TFLITE_MIN_AGREEMENT,
) -> float:
    """model_dir/model.tflite must predict the reported digit for ≥ min_agreement of the sample (its
    quantised weights move probabilities a little, so digits are compared); returns the agreement."""
    from mnist_transfer.features.decode import decode_image

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
