"""model.tflite beside the SavedModel: same digits on MNIST, through DigitModel, `predict --tflite` and the
label stage's parity check (which must also fail when the TFLite model disagrees)."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_transfer.app import cli
from mnist_transfer.data.records import ImageRecord
from mnist_transfer.errors import DataError
from mnist_transfer.evaluation.parity import TFLITE_MIN_AGREEMENT, ParityError, check_tflite_parity
from mnist_transfer.features.backbone import BackboneSpec
from mnist_transfer.models.cnn import digit_pixels
from mnist_transfer.models.export import TFLITE_FILE, TfliteClassifier, classifier_module, load_tflite, tflite_model
from mnist_transfer.models.inference import DigitModel
from mnist_transfer.models.transfer import tflite_quantisable

SAMPLE_SIZE = 300  # MNIST test digits compared


@pytest.fixture(scope="module")
def test_sample(mnist_arrays) -> tuple[np.ndarray, np.ndarray]:
    images, labels = mnist_arrays["testing"]
    return images[:SAMPLE_SIZE], labels[:SAMPLE_SIZE]


@pytest.mark.slow
def test_tflite_predicts_the_savedmodel_digits(exported_model: Path, test_sample) -> None:
    images, labels = test_sample
    assert (exported_model / TFLITE_FILE).stat().st_size > 20e6  # the backbone's weights are in it (not NaN stubs)
    reference = DigitModel.load(exported_model).predict(images)
    quantised = DigitModel.load(exported_model, tflite=True).predict(images)
    assert quantised.shape == reference.shape and np.allclose(quantised.sum(axis=1), 1.0, atol=1e-3)
    assert np.mean(quantised.argmax(axis=1) == reference.argmax(axis=1)) >= TFLITE_MIN_AGREEMENT
    assert np.mean(quantised.argmax(axis=1) == labels) > 0.5  # a trained model, not a constant one
    assert load_tflite(exported_model)(images[:0, :, :, None]).shape == (0, 10)


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
    import keras

    keras.utils.set_random_seed(0)
    dense = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(512, "relu"),
                              keras.layers.Dense(10, "softmax")])
    module = classifier_module(prepare=digit_pixels, classify=lambda pixels: dense(pixels / 255.0), parts={"dense": dense})
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


@pytest.mark.slow
def test_predict_tflite_gives_the_savedmodel_digits(exported_model: Path, test_sample, tmp_path: Path) -> None:
    images, _ = test_sample
    for index, digit in enumerate(images[:12]):
        Image.fromarray(digit).save(tmp_path / f"{index:02d}.png")
    for extra, name in (([], "saved.csv"), (["--tflite"], "tflite.csv")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["predict", "--model", str(exported_model), "--csv", str(tmp_path / name), *extra, str(tmp_path)])
        assert exit_info.value.code == 0
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
def test_label_parity_check_passes_and_fails(exported_model: Path, test_sample, tmp_path: Path, caplog) -> None:
    images, _ = test_sample
    records = parity_inputs(images[:100], tmp_path / "jpg")
    digits = DigitModel.load(exported_model).predict(images[:100]).argmax(axis=1)
    reported = {r.rel_path: {"predicted": int(d)} for r, d in zip(records, digits)}
    with caplog.at_level(logging.INFO, logger="parity"):
        assert check_tflite_parity(records, tmp_path / "jpg", exported_model, reported) >= TFLITE_MIN_AGREEMENT
    assert "model.tflite" in caplog.text and "of 100 sampled images" in caplog.text
    wrong = {path: {"predicted": (entry["predicted"] + 1) % 10} for path, entry in reported.items()}
    with pytest.raises(ParityError, match="agrees with the label stage on"):
        check_tflite_parity(records, tmp_path / "jpg", exported_model, wrong)
    no_tflite = tmp_path / "model"
    shutil.copytree(exported_model, no_tflite, ignore=shutil.ignore_patterns(TFLITE_FILE))
    with pytest.raises(DataError, match="model.tflite is missing"):
        check_tflite_parity(records, tmp_path / "jpg", no_tflite, reported)
