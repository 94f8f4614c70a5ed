"""model.json (round trip, bad files) and the rule that picks the model `predict` and `serve` answer with."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_transfer.errors import DataError
from mnist_transfer.models.calibration import Calibration
from mnist_transfer.models.export import HEAD_FILE, LABELS_FILE
from mnist_transfer.models.inference import ModelNotFoundError, default_model_dir, model_name
from mnist_transfer.models.metadata import (
    METADATA_FILE,
    ModelMetadata,
    choose_model,
    copy_metadata,
    read_metadata,
    write_metadata,
)

TRANSFER = ModelMetadata("transfer", val_accuracy=0.9652, n_validation=6043, temperature=0.61)
CNN = ModelMetadata("cnn", val_accuracy=0.9964, n_validation=6043, temperature=1.2)


def test_round_trip_and_the_copy_beside_the_shards(tmp_path: Path) -> None:
    written = write_metadata(CNN, tmp_path)
    assert written == tmp_path / METADATA_FILE and '"format": 1' in written.read_text()
    assert read_metadata(tmp_path) == CNN
    (tmp_path / "out").mkdir()
    assert copy_metadata(tmp_path, tmp_path / "out") == CNN and read_metadata(tmp_path / "out") == CNN
    assert read_metadata(tmp_path / "nothing") is None and copy_metadata(tmp_path / "nothing", tmp_path / "out") is None


def test_from_training_summary() -> None:
    calibration = Calibration(1.5, ece_before=0.04, ece_after=0.01, nll_before=0.2, nll_after=0.15, n_images=6043)
    metadata = ModelMetadata.from_training("cnn", {"val_accuracy": 0.99, "n_validation": 6043, "epochs_run": 3}, calibration)
    assert metadata == ModelMetadata("cnn", 0.99, 6043, 1.5, 0.04, 0.01)


@pytest.mark.parametrize(
    "content",
    ['{"name": "cnn"', '{"name": "cnn"}', '{"name": "cnn", "val_accuracy": 0.9, "n_validation": 1, "temperature": 0}', "[]"],
    ids=["not-json", "missing-fields", "zero-temperature", "not-an-object"],
)
def test_a_bad_model_json_is_named(tmp_path: Path, content: str) -> None:
    (tmp_path / METADATA_FILE).write_text(content)
    with pytest.raises(DataError, match="model.json"):
        read_metadata(tmp_path)


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    (tmp_path / METADATA_FILE).write_text('{"format": 2, "name": "cnn", "val_accuracy": 0.9, "n_validation": 10, "new": 1}')
    assert read_metadata(tmp_path) == ModelMetadata("cnn", 0.9, 10)


@pytest.mark.parametrize(
    ("candidates", "index", "reason"),
    [
        ([("data/model", TRANSFER), ("data/cnn", CNN)], 1, "cnn (data/cnn) answers: validation accuracy 99.64% vs transfer 96.52%"),
        ([("data/model", CNN), ("data/cnn", TRANSFER)], 0, "cnn (data/model) answers"),
        ([("data/model", TRANSFER), ("data/cnn", ModelMetadata("cnn", 0.9652 + 1e-7, 6043))], 0, "a tie: the first"),
        ([("data/model", None), ("data/cnn", CNN)], 1, "cnn (data/cnn) answers: validation accuracy 99.64%"),
        ([("data/model", TRANSFER), ("data/cnn", None)], 0, "transfer (data/model) answers"),
        ([("data/model", None), ("data/cnn", None)], 0, "no model.json in data/model, data/cnn"),
        ([("data/cnn", CNN)], 0, "cnn (data/cnn) answers: validation accuracy 99.64%"),
    ],
    ids=["higher-wins", "order-does-not-matter", "tie-first", "unmeasured-loses", "unmeasured-loses-2", "none-measured",
         "alone"],
)
def test_the_higher_validation_accuracy_answers(candidates, index: int, reason: str) -> None:
    choice = choose_model(candidates)
    assert choice.index == index and reason in choice.reason


def test_choosing_among_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        choose_model([])


def exported_folder(folder: Path, metadata: ModelMetadata | None, head: bool = False) -> Path:
    """Enough of an exported model folder for the choice: labels.txt, model.json and perhaps head.keras."""
    folder.mkdir(parents=True)
    (folder / LABELS_FILE).write_text("".join(f"{d}\n" for d in range(10)))
    if metadata is not None:
        write_metadata(metadata, folder)
    if head:
        (folder / HEAD_FILE).write_bytes(b"")
    return folder


def test_default_model_dir_reads_the_folders(tmp_path: Path) -> None:
    transfer = exported_folder(tmp_path / "model", TRANSFER)
    cnn = exported_folder(tmp_path / "cnn", CNN)
    folder, reason = default_model_dir([transfer, cnn, tmp_path / "absent"])
    assert folder == cnn and "validation accuracy 99.64% vs transfer 96.52%" in reason
    assert default_model_dir([transfer, tmp_path / "absent"])[0] == transfer
    with pytest.raises(ModelNotFoundError, match="dvc repro"):
        default_model_dir([tmp_path / "absent", tmp_path / "also-absent"])


def test_model_name_without_model_json(tmp_path: Path) -> None:
    assert model_name(exported_folder(tmp_path / "model", None, head=True), None) == "transfer"
    assert model_name(exported_folder(tmp_path / "cnn", None), None) == "cnn"
    assert model_name(tmp_path / "anything", CNN) == "cnn"
