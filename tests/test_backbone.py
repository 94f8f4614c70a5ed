"""Backbone loader: both sources load, preprocessing range/shape, offline errors, determinism."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mnist_transfer.features.backbone import FEATURE_DIM, BackboneLoadError, BackboneSpec, load_backbone, preprocess
from tests.conftest import REPO_ROOT

KERAS_75 = BackboneSpec("keras", "", "random", 75)


def build_tiny_hub_model(folder: Path) -> np.ndarray:
    """A SavedModel callable like TF-Hub's feature vectors: (b, h, w, 3) in [0, 1] → (b, 2048).

    Its features are the per-channel means times a fixed projection; returns that projection (3, 2048).
    """
    projection = np.random.default_rng(0).normal(size=(3, FEATURE_DIM)).astype(np.float32)

    class TinyFeatureVector(tf.Module):
        def __init__(self):
            super().__init__()
            self.projection = tf.Variable(projection)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            return tf.reduce_mean(images, axis=[1, 2]) @ self.projection

    tf.saved_model.save(TinyFeatureVector(), str(folder))
    return projection


@pytest.mark.parametrize("source, low, high", [("keras", -1.0, 1.0), ("tfhub", 0.0, 1.0)])
def test_preprocess_range_and_shape(source: str, low: float, high: float):
    images = np.stack([np.zeros((28, 28, 1), np.uint8), np.full((28, 28, 1), 255, np.uint8)])
    pixels = preprocess(images, BackboneSpec(source, "x", "random", 80)).numpy()
    assert pixels.shape == (2, 80, 80, 3) and pixels.dtype == np.float32
    assert np.allclose(pixels[0], low) and np.allclose(pixels[1], high)
    # gray becomes three equal channels
    gradient = np.arange(28 * 28, dtype=np.uint32).reshape(1, 28, 28, 1) % 256
    rgb = preprocess(gradient.astype(np.uint8), BackboneSpec(source, "x", "random", 80)).numpy()
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    assert low <= rgb.min() and rgb.max() <= high


def test_tfhub_source_loads_a_local_saved_model(tmp_path: Path):
    projection = build_tiny_hub_model(tmp_path / "model")
    backbone = load_backbone(BackboneSpec("tfhub", str(tmp_path / "model"), "imagenet", 75))
    images = np.full((2, 28, 28, 1), 51, np.uint8)  # 51/255 = 0.2 in every channel
    features = backbone.embed(images)
    assert features.shape == (2, FEATURE_DIM)
    np.testing.assert_allclose(features[0], 0.2 * projection.sum(axis=0), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_keras_random_source_loads_and_embeds():
    features = load_backbone(KERAS_75).embed(np.zeros((3, 28, 28, 1), np.uint8))
    assert features.shape == (3, FEATURE_DIM) and features.dtype == np.float32
    assert np.isfinite(features).all()


@pytest.mark.slow
def test_encoded_images_embed_like_decoded_ones(tmp_path: Path):
    from mnist_transfer.data.convert import encode_jpg

    backbone = load_backbone(KERAS_75)
    pixels = np.random.default_rng(1).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    encoded = [encode_jpg(image, 95) for image in pixels]
    decoded = np.stack([tf.io.decode_jpeg(blob, channels=1).numpy() for blob in encoded])
    np.testing.assert_allclose(backbone.embed_encoded(encoded, batch_size=2), backbone.embed(decoded), rtol=1e-4, atol=1e-6)


def test_unreachable_handle_says_how_to_proceed(unused_tcp_port: int):
    spec = BackboneSpec("tfhub", f"http://127.0.0.1:{unused_tcp_port}/inception_v3/5", "imagenet", 75)
    with pytest.raises(BackboneLoadError) as raised:
        load_backbone(spec)
    message = str(raised.value)
    assert spec.handle in message
    assert "TFHUB_CACHE_DIR" in message and "local SavedModel" in message and "backbone.source=keras" in message


def test_missing_local_folder_is_named(tmp_path: Path):
    with pytest.raises(BackboneLoadError, match="no-such-model"):
        load_backbone(BackboneSpec("tfhub", str(tmp_path / "no-such-model"), "imagenet", 75))


@pytest.mark.parametrize(
    "spec, message",
    [
        (BackboneSpec("torch", "", "imagenet", 299), "backbone.source"),
        (BackboneSpec("keras", "", "random", 74), "backbone.image_size"),
        (BackboneSpec("keras", "", "imagenet21k", 299), "backbone.weights"),
    ],
)
def test_bad_specs_are_named(spec: BackboneSpec, message: str):
    """Specs built in code (benchmarks, tests) are checked like params.yaml's values."""
    with pytest.raises(BackboneLoadError, match=message):
        spec.validate()


def test_identity_changes_with_what_changes_the_features():
    identities = {
        KERAS_75.identity(),
        BackboneSpec("keras", "", "random", 76).identity(),
        BackboneSpec("keras", "", "random", 75, seed=1).identity(),
        BackboneSpec("keras", "", "imagenet", 75).identity(),
        BackboneSpec("tfhub", "https://tfhub.dev/a/1", "imagenet", 75).identity(),
    }
    assert len(identities) == 5
    assert BackboneSpec("keras", "ignored", "random", 75).identity() == KERAS_75.identity()


EMBED_IN_A_FRESH_PROCESS = """
import sys, numpy as np
from mnist_transfer.features.backbone import BackboneSpec, load_backbone
images = np.arange(2 * 28 * 28, dtype=np.uint32).reshape(2, 28, 28, 1) % 256
features = load_backbone(BackboneSpec("keras", "", "random", 75)).embed(images.astype(np.uint8))
np.save(sys.argv[1], features)
"""


@pytest.mark.slow
def test_random_stand_in_is_identical_whatever_ran_before_in_the_process():
    import keras

    images = np.full((1, 28, 28, 1), 128, np.uint8)
    first = load_backbone(KERAS_75).embed(images)
    keras.utils.set_random_seed(99)
    keras.layers.Dense(3).build((None, 2))  # consumes Keras' global random state
    np.testing.assert_array_equal(load_backbone(KERAS_75).embed(images), first)


@pytest.mark.slow
def test_random_stand_in_is_identical_in_two_processes(tmp_path: Path):
    outputs = []
    for run in range(2):
        out = tmp_path / f"features-{run}.npy"
        subprocess.run([sys.executable, "-c", EMBED_IN_A_FRESH_PROCESS, str(out)], cwd=REPO_ROOT, check=True)
        outputs.append(np.load(out))
    assert np.array_equal(outputs[0], outputs[1])
    assert outputs[0].std() > 0  # not a constant output
