"""model.tflite beside the SavedModel: written only when asked (the transfer model's with train.tflite), same digits
on MNIST through DigitModel, `predict --tflite` and the label stage's parity check (which must also fail when the
TFLite model disagrees, and skip the transfer model's when train.tflite left it out)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mnist_transfer.app import cli
from mnist_transfer.data.records import ImageRecord
from mnist_transfer.errors import DataError
from mnist_transfer.evaluation.parity import (
    TFLITE_MIN_AGREEMENT,
    ParityError,
    check_exported_parity,
    check_tflite_parity,
    optional_tflite_floor,
)
from mnist_transfer.evaluation.predictions import prediction_rows, write_predictions
from mnist_transfer.features.backbone import BackboneSpec
from mnist_transfer.models.cnn import digit_pixels
from mnist_transfer.models.export import (
    HEAD_FILE,
    LABELS_FILE,
    SAVED_MODEL_DIR,
    TFLITE_FILE,
    TfliteClassifier,
    classifier_module,
    classifier_signatures,
    load_exported,
    load_tflite,
    save_classifier,
    serve_files,
    tflite_model,
)
from mnist_transfer.models.inference import DigitModel
from mnist_transfer.models.metadata import ModelMetadata, read_metadata, write_metadata
from mnist_transfer.models.transfer import export_model, tflite_quantisable
from tests.conftest import EXPORTED_BACKBONE

SAMPLE_SIZE = 300  # MNIST test digits compared


@pytest.fixture(scope="module")
def test_sample(mnist_arrays) -> tuple[np.ndarray, np.ndarray]:
    images, labels = mnist_arrays["testing"]
    return images[:SAMPLE_SIZE], labels[:SAMPLE_SIZE]


@pytest.fixture(scope="module")
def transfer_tflite(exported_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's exported model re-exported as the train stage does with train.tflite: true."""
    import keras

    model_dir = tmp_path_factory.mktemp("opt-in") / "model"
    head = keras.saving.load_model(exported_model / HEAD_FILE)
    export_model(head, EXPORTED_BACKBONE, model_dir, read_metadata(exported_model), tflite=True)
    return model_dir


def dense_module() -> tuple[Any, Any]:
    """A small seeded dense digit classifier (untrained) and its classifier_module."""
    import keras

    keras.utils.set_random_seed(0)
    dense = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(512, "relu"),
                              keras.layers.Dense(10, "softmax")])
    module = classifier_module(prepare=digit_pixels, classify=lambda pixels: dense(pixels / 255.0), parts={"dense": dense})
    return module, dense


@pytest.mark.slow
def test_opt_in_tflite_predicts_the_savedmodel_digits(transfer_tflite: Path, test_sample) -> None:
    images, labels = test_sample
    assert (transfer_tflite / TFLITE_FILE).stat().st_size > 20e6  # the backbone's weights are in it (not NaN stubs)
    reference = DigitModel.load(transfer_tflite).predict(images)
    quantised = DigitModel.load(transfer_tflite, tflite=True).predict(images)
    assert quantised.shape == reference.shape and np.allclose(quantised.sum(axis=1), 1.0, atol=1e-3)
    assert np.mean(quantised.argmax(axis=1) == reference.argmax(axis=1)) >= TFLITE_MIN_AGREEMENT
    assert np.mean(quantised.argmax(axis=1) == labels) > 0.5  # a trained model, not a constant one
    assert load_tflite(transfer_tflite)(images[:0, :, :, None]).shape == (0, 10)


@pytest.mark.parametrize(("tflite", "written"), [(None, False), ("float", True)])
def test_save_classifier_writes_model_tflite_only_when_asked(tflite, written: bool, tmp_path: Path) -> None:
    module, _ = dense_module()
    save_classifier(module, classifier_signatures(module), tmp_path / "model", lambda folder: None, tflite)
    assert (tmp_path / "model" / SAVED_MODEL_DIR / "saved_model.pb").is_file()
    assert (tmp_path / "model" / TFLITE_FILE).is_file() is written


@pytest.mark.parametrize(
    ("spec", "quantisable"),
    [
        (BackboneSpec("keras", "", "random", 75), False),
        (BackboneSpec("keras", "", "imagenet", 299), True),
        (BackboneSpec("tfhub", "https://tfhub.dev/x", "imagenet", 299), True),
    ],
)
def test_only_the_random_stand_in_stays_float(spec: BackboneSpec, quantisable: bool) -> None:
    assert tflite_quantisable(spec) is quantisable


@pytest.mark.slow
def test_dynamic_range_quantisation_stores_int8_weights(test_sample, tmp_path: Path) -> None:
    module, dense = dense_module()
    images = test_sample[0][:50, :, :, None]
    probabilities = {}
    for quantise in (False, True):
        path = tmp_path / f"{quantise}.tflite"
        path.write_bytes(tflite_model(module, quantise))
        probabilities[quantise] = TfliteClassifier(path)(images)
    assert (tmp_path / "True.tflite").stat().st_size < (tmp_path / "False.tflite").stat().st_size / 3  # 1 byte vs 4
    assert np.allclose(probabilities[False], np.asarray(dense(images / 255.0)), atol=1e-5)
    assert np.abs(probabilities[True] - probabilities[False]).max() < 0.05


def predicted_digits(csv_path: Path) -> list[str]:
    with open(csv_path, newline="", encoding="utf-8") as handle:
        return [row["digit"] for row in csv.DictReader(handle)]


def predict(*argv: str | Path) -> int:
    """Run `mnist-transfer predict …` in this process; its exit status."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", *map(str, argv)])
    return exit_info.value.code


@pytest.mark.slow
def test_predict_tflite_gives_the_savedmodel_digits(transfer_tflite: Path, test_sample, tmp_path: Path) -> None:
    images, _ = test_sample
    for index, digit in enumerate(images[:12]):
        Image.fromarray(digit).save(tmp_path / f"{index:02d}.png")
    for extra, name in (([], "saved.csv"), (["--tflite"], "tflite.csv")):
        assert predict("--model", transfer_tflite, "--csv", tmp_path / name, *extra, tmp_path) == 0
    assert len(predicted_digits(tmp_path / "saved.csv")) == 12
    assert predicted_digits(tmp_path / "tflite.csv") == predicted_digits(tmp_path / "saved.csv")


def parity_inputs(images: np.ndarray, data_root: Path) -> list[ImageRecord]:
    records = []
    for index, digit in enumerate(images):
        rel_path = f"testing/{index:03d}.png"  # PNG: the exact pixels, no JPEG loss
        (data_root / "testing").mkdir(parents=True, exist_ok=True)
        Image.fromarray(digit).save(data_root / rel_path)
        records.append(ImageRecord(rel_path=rel_path, label=-1, sha256=""))
    return records


@pytest.mark.slow
def test_label_parity_check_passes_and_fails(
    transfer_tflite: Path, exported_model: Path, test_sample, tmp_path: Path, caplog
) -> None:
    images, _ = test_sample
    records = parity_inputs(images[:100], tmp_path / "jpg")
    digits = DigitModel.load(transfer_tflite).predict(images[:100]).argmax(axis=1)
    reported = {r.rel_path: {"predicted": int(d)} for r, d in zip(records, digits)}
    with caplog.at_level(logging.INFO, logger="parity"):
        assert check_tflite_parity(records, tmp_path / "jpg", transfer_tflite, reported) >= TFLITE_MIN_AGREEMENT
    assert "model.tflite" in caplog.text and "of 100 sampled images" in caplog.text
    wrong = {path: {"predicted": (entry["predicted"] + 1) % 10} for path, entry in reported.items()}
    with pytest.raises(ParityError, match="agrees with the label stage on"):
        check_tflite_parity(records, tmp_path / "jpg", transfer_tflite, wrong)
    with pytest.raises(DataError, match="model.tflite is missing"):  # asked for (the CNN's): a missing one fails
        check_tflite_parity(records, tmp_path / "jpg", exported_model, reported)


@pytest.mark.slow
def test_label_parity_skips_the_transfer_tflite_train_left_out(exported_model: Path, test_sample, tmp_path: Path,
                                                               caplog) -> None:
    records = parity_inputs(test_sample[0][:20], tmp_path / "jpg")
    served = load_exported(exported_model).signatures["serving_default"]
    _, probabilities = serve_files(served, [tmp_path / "jpg" / r.rel_path for r in records], batch_size=64)
    (tmp_path / "predictions").mkdir()
    write_predictions(prediction_rows(records, probabilities), tmp_path / "predictions" / "shard-0.csv")
    assert not (exported_model / TFLITE_FILE).exists()  # the default export
    with caplog.at_level(logging.INFO, logger="parity"):
        floor = optional_tflite_floor(exported_model, TFLITE_MIN_AGREEMENT)
        assert check_exported_parity(records, tmp_path / "jpg", exported_model, tmp_path / "predictions", floor) == 20
    assert floor is None and "TFLite parity check is skipped" in caplog.text
    with pytest.raises(DataError, match="model.tflite is missing"):
        check_exported_parity(records, tmp_path / "jpg", exported_model, tmp_path / "predictions", TFLITE_MIN_AGREEMENT)


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with labels.txt and the float model.tflite of dense_module() (no SavedModel)."""
    folder = tmp_path_factory.mktemp("tiny") / "tflite"
    folder.mkdir()
    (folder / LABELS_FILE).write_text("".join(f"{digit}\n" for digit in range(10)), encoding="utf-8")
    (folder / TFLITE_FILE).write_bytes(tflite_model(dense_module()[0], quantise=False))
    return folder


def test_predict_tflite_answers_with_a_default_folder_that_has_one(
    tiny_tflite: Path, test_sample, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    Image.fromarray(test_sample[0][0]).save(tmp_path / "digit.png")
    transfer = tmp_path / "data" / "model"  # the better model, exported with train.tflite off
    transfer.mkdir(parents=True)
    (transfer / LABELS_FILE).write_bytes((tiny_tflite / LABELS_FILE).read_bytes())
    write_metadata(ModelMetadata("transfer", 0.99, 100), transfer)
    assert predict("--tflite", "digit.png") == 1
    assert "train.tflite: true" in capsys.readouterr().err  # why there is none, and where one is
    (tmp_path / "data" / "cnn").symlink_to(tiny_tflite)
    assert predict("--tflite", "digit.png") == 0
    assert "with cnn (" in capsys.readouterr().err  # data/cnn answered (named after its folder: no model.json)
