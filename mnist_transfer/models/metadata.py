"""model.json beside every exported model: which model it is, how it did on the validation split, and its
calibration temperature — and the rule that picks the model `predict` and `serve` answer with.

The file travels with the model folder (the artifact that gets deployed), so neither the choice nor the
calibration depends on reports/. Written by the train and train_cnn stages; read by DigitModel (inference),
the label stages (calibrated shard probabilities) and the report (via the copy the label stages put beside
their shards).

Why validation accuracy decides: both models are measured on the same stable hash split of the training
folder (train.validation_percentage, by path), which neither trains on and which is never the test set, so
choosing by it keeps the test figures honest. Measured on the full pipeline (2026-12-02, reports/train and
reports/cnn): transfer head 96.52 % (test 96.61 %), from-scratch CNN 99.64 % (test 99.68 %; 98.99 % on
distorted validation digits) — the CNN answers by default. Ties (within 1e-6) go to the earlier candidate,
the transfer model (whose figures are metrics.json's top level); a folder without model.json (exported
before it existed) only answers when no candidate has one, and then the first candidate answers as before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mnist_transfer.errors import DataError
from mnist_transfer.models.calibration import Calibration

METADATA_FILE = "model.json"
METADATA_FORMAT = 1
TIE_TOLERANCE = 1e-6  # validation accuracies closer than this are a tie (under one image in a million)


@dataclass(frozen=True)
class ModelMetadata:
    """What model.json holds (flat JSON; `format` first)."""

    name: str  # "transfer" | "cnn": the name every answer carries
    val_accuracy: float  # on the validation split, best epoch
    n_validation: int
    temperature: float = 1.0  # calibrated = softmax(log(p) / temperature)
    val_ece_before: float | None = None  # 15-bin ECE on the validation split, raw and calibrated
    val_ece_after: float | None = None

    @classmethod
    def from_training(cls, name: str, summary: dict[str, Any], calibration: Calibration) -> ModelMetadata:
        """From a training summary (val_accuracy, n_validation) and the calibration fitted on the same split."""
        return cls(
            name=name, val_accuracy=float(summary["val_accuracy"]), n_validation=int(summary["n_validation"]),
            temperature=calibration.temperature, val_ece_before=calibration.ece_before,
            val_ece_after=calibration.ece_after,
        )


def write_metadata(metadata: ModelMetadata, folder: Path) -> Path:
    """folder/model.json (the caller's folder is a staging folder or a stage output: no temp file needed)."""
    path = folder / METADATA_FILE
    path.write_text(json.dumps({"format": METADATA_FORMAT, **asdict(metadata)}, indent=2) + "\n", encoding="utf-8")
    return path


def read_metadata(folder: Path) -> ModelMetadata | None:
    """folder/model.json, or None if there is none; DataError naming the file if it is malformed."""
    path = folder / METADATA_FILE
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        known = {field.name for field in fields(ModelMetadata)}
        metadata = ModelMetadata(**{key: value for key, value in content.items() if key in known})
        if not metadata.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {metadata.temperature}")
        return metadata
    except (ValueError, TypeError, AttributeError) as error:
        raise DataError(f"{path}: not a valid model.json ({error}); re-export the model (dvc repro)") from error


def copy_metadata(model_dir: Path, out_dir: Path) -> ModelMetadata | None:
    """model_dir's model.json into out_dir (a label stage's shards: the report reads it there); its content."""
    metadata = read_metadata(model_dir)
    if metadata is not None:
        write_metadata(metadata, out_dir)
    return metadata


@dataclass(frozen=True)
class ModelChoice:
    index: int  # of the chosen candidate
    reason: str  # one line for the user


def choose_model(candidates: Sequence[tuple[str, ModelMetadata | None]]) -> ModelChoice:
    """The candidate (label, its model.json) with the highest validation accuracy; see the module docstring
    for ties and candidates without model.json."""
    if not candidates:
        raise ValueError("no candidate model to choose from")
    measured = [(index, meta) for index, (_, meta) in enumerate(candidates) if meta is not None]
    if not measured:
        labels = ", ".join(label for label, _ in candidates)
        return ModelChoice(0, f"no model.json in {labels} (exported before validation accuracy was recorded): "
                              f"using {candidates[0][0]}; rerun `dvc repro` to choose by validation accuracy")
    best_index, best = measured[0]
    for index, meta in measured[1:]:
        if meta.val_accuracy > best.val_accuracy + TIE_TOLERANCE:
            best_index, best = index, meta
    others = [f"{meta.name} {meta.val_accuracy:.2%}" for index, meta in measured if index != best_index]
    versus = f" vs {', '.join(others)}" if others else ""
    tied = any(abs(meta.val_accuracy - best.val_accuracy) <= TIE_TOLERANCE for index, meta in measured if index != best_index)
    return ModelChoice(best_index, f"{best.name} ({candidates[best_index][0]}) answers: validation accuracy "
                                   f"{best.val_accuracy:.2%}{versus}{' (a tie: the first candidate answers)' if tied else ''}")
