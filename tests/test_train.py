"""Train stage: the head learns what can be learned (and only that), stable split, train/serve parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mnist_transfer.data.convert import encode_jpg
from mnist_transfer.data.split import in_validation, validation_mask
from mnist_transfer.features.backbone import BackboneSpec, load_backbone
from mnist_transfer.models.calibration import calibrate
from mnist_transfer.models.export import HEAD_FILE, LABELS_FILE, TFLITE_FILE, load_exported
from mnist_transfer.models.head import head_probabilities, train_head
from mnist_transfer.models.metadata import ModelMetadata, read_metadata
from mnist_transfer.models.transfer import export_model
from mnist_transfer.params import TrainParams
from tests.conftest import configure_stand_in_run, run_dvc, tiny_split

FAST = TrainParams(learning_rate=0.01, epochs=40, batch_size=64, patience=5, seed=1)


def separable_features(n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features whose class is a linear function of them (one-hot direction + noise)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n_images)
    features = rng.normal(scale=0.3, size=(n_images, 64)).astype(np.float32)
    features[np.arange(n_images), labels] += 3.0
    paths = np.array([f"training/{label}/{i:05d}.jpg" for i, label in enumerate(labels)])
    return features, labels, paths


@pytest.mark.slow
def test_head_learns_separable_features():
    features, labels, paths = separable_features(2000)
    _, summary = train_head(features, labels, validation_mask(paths, 20), FAST, callbacks=[])
    assert summary["val_accuracy"] > 0.98
    assert summary["n_validation"] + summary["n_train"] == 2000


def test_head_cannot_learn_random_labels():
    features, labels, paths = separable_features(2000)
    shuffled = np.random.default_rng(5).permutation(labels)
    _, summary = train_head(features, shuffled, validation_mask(paths, 20), FAST, callbacks=[])
    assert summary["val_accuracy"] < 0.3  # chance is 0.1


@pytest.mark.slow
def test_training_is_deterministic_for_a_seed():
    features, labels, paths = separable_features(500)
    mask = validation_mask(paths, 20)
    first, _ = train_head(features, labels, mask, FAST, callbacks=[])
    second, _ = train_head(features, labels, mask, FAST, callbacks=[])
    np.testing.assert_array_equal(first.predict(features, verbose=0), second.predict(features, verbose=0))


def test_hash_split_is_stable_and_proportional():
    paths = np.array([f"training/{i % 10}/{i:05d}.jpg" for i in range(20000)])
    mask = validation_mask(paths, 10)
    assert 0.09 < mask.mean() < 0.11
    # only the path relative to the data root counts: the same images elsewhere split identically
    assert in_validation("training/7/00042.jpg", 10) == validation_mask(np.array(["training/7/00042.jpg"]), 10)[0]
    np.testing.assert_array_equal(mask, validation_mask(paths.copy(), 10))
    assert validation_mask(paths, 30).sum() > mask.sum()  # a larger percentage only adds images
    assert (validation_mask(paths, 30) | ~mask).all()


@pytest.mark.parametrize("percentage", [0, 100, -5])
def test_bad_validation_percentage_is_named(percentage: float):
    with pytest.raises(ValueError, match="train.validation_percentage"):
        validation_mask(np.array(["a"]), percentage)


@pytest.mark.slow
def test_exported_model_matches_bottleneck_path(tmp_path: Path):
    spec = BackboneSpec("keras", "", "random", 75)
    images, labels = tiny_split(20, seed=3)
    encoded = [encode_jpg(image, 95) for image in images]
    features = load_backbone(spec).embed_encoded(encoded, batch_size=8)  # the bottleneck stage's path
    is_validation = validation_mask(np.array([f"p{i}" for i in range(20)]), 30)
    head, summary = train_head(features, labels, is_validation, FAST, [])
    calibration = calibrate(head_probabilities(head, features, is_validation, chunk_rows=2), labels[is_validation])
    metadata = ModelMetadata.from_training("transfer", summary, calibration)
    export_model(head, spec, tmp_path / "model", metadata=metadata)
    assert read_metadata(tmp_path / "model") == metadata and calibration.n_images == is_validation.sum()

    exported = load_exported(tmp_path / "model")
    served_features = exported.signatures["features"](images=tf.constant(encoded))["features"].numpy()
    np.testing.assert_allclose(served_features, features, rtol=1e-4, atol=1e-6)
    served = exported.signatures["serving_default"](images=tf.constant(encoded))
    expected = head.predict(features, verbose=0)
    np.testing.assert_allclose(head_probabilities(head, features, is_validation, chunk_rows=2), expected[is_validation], atol=1e-6)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(served["digit"].numpy(), expected.argmax(axis=1))
    decoded = exported.signatures["predict_images"](images=tf.constant(images[..., None]))
    np.testing.assert_array_equal(decoded["digit"].numpy().shape, (20,))
    assert (tmp_path / "model" / LABELS_FILE).read_text().splitlines() == [str(d) for d in range(10)]
    assert (tmp_path / "model" / HEAD_FILE).is_file()
    assert not (tmp_path / "model" / TFLITE_FILE).exists()  # opt-in: train.tflite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folder left


@pytest.mark.e2e
def test_dvc_repro_train_with_the_stand_in(pipeline_repo: Path, mnist_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MNIST_FEATURE_STORE", str(tmp_path / "store.sqlite"))
    configure_stand_in_run(pipeline_repo, mnist_dir, limit_per_class=30, extra={"train.epochs": 20})
    result = run_dvc(pipeline_repo, "repro", "train")
    log = result.stdout + result.stderr
    assert (pipeline_repo / "data" / "model" / "saved_model" / "saved_model.pb").is_file()
    assert not (pipeline_repo / "data" / "model" / TFLITE_FILE).exists() and "train.tflite is off" in log
    metrics = json.loads((pipeline_repo / "reports" / "train" / "metrics.json").read_text())
    assert metrics["best"]["val_accuracy"] > 0.3  # 300 images, random backbone: well above chance (0.1)
    seconds = metrics["seconds"]  # the stage's wall time by phase, for benchmarks.experiment
    assert list(seconds) == ["startup", "load_features", "import_tensorflow", "fit", "calibrate", "export"]
    assert all(value >= 0 for value in seconds.values()) and seconds["startup"] > 0.1 and seconds["fit"] > 0
    assert "wall time by phase: startup " in log
    shown = json.loads(run_dvc(pipeline_repo, "metrics", "show", "--json").stdout)
    assert "val_accuracy" in json.dumps(shown)
    plots = json.loads(run_dvc(pipeline_repo, "plots", "show", "--json").stdout)["data"]
    loss_points = plots["Training loss (train vs validation)"][0]["content"]["data"]["values"]
    assert {point["filename"] for point in loss_points} == {"train/loss.tsv", "eval/loss.tsv"}
