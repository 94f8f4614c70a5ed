"""The Inception v3 feature extractor ("backbone") and its preprocessing, shared by every stage that
embeds images and by the exported model, so that training and serving see identical inputs.

Sources: `tfhub` (a tfhub.dev/Kaggle URL or a local SavedModel, loaded with hub.load; inputs in [0, 1])
and `keras` (keras.applications.InceptionV3, `imagenet` or seeded `random` weights; inputs in [-1, 1]).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mnist_transfer.errors import StageError
from mnist_transfer.features.decode import map_decoded
from mnist_transfer.params import MIN_IMAGE_SIZE_PX, SOURCES, BackboneParams

FEATURE_DIM = 2048  # Inception v3's pooled feature vector
PREPROCESS_VERSION = 1  # bump when preprocess() changes: stored features of older versions are not reused
DEFAULT_TFHUB_CACHE = Path.home() / ".cache" / "tfhub_modules"
OFFLINE_HELP = (
    "To proceed without network: (1) download the model once where there is network and copy it into "
    "TFHUB_CACHE_DIR (currently {cache}), (2) set backbone.handle to a local SavedModel folder, or "
    "(3) use the offline stand-in: dvc exp run -S backbone.source=keras -S backbone.weights=random"
)


class BackboneLoadError(StageError, RuntimeError):
    """The backbone named by the backbone.* params cannot be loaded."""


@dataclass(frozen=True)
class BackboneSpec:
    """What identifies a backbone: the backbone.* params."""

    source: str
    handle: str
    weights: str
    image_size_px: int
    seed: int = 0

    @classmethod
    def from_params(cls, params: BackboneParams) -> BackboneSpec:
        spec = cls(params.source, params.handle, params.weights, params.image_size, params.seed)
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.source not in SOURCES:
            raise BackboneLoadError(f"backbone.source must be one of {SOURCES}, got {self.source!r}")
        if self.image_size_px < MIN_IMAGE_SIZE_PX:
            raise BackboneLoadError(f"backbone.image_size must be ≥ {MIN_IMAGE_SIZE_PX}, got {self.image_size_px}")
        if self.source == "keras" and self.weights not in ("imagenet", "random"):
            raise BackboneLoadError(f"backbone.weights must be imagenet or random, got {self.weights!r}")

    @property
    def input_range(self) -> tuple[float, float]:
        """The pixel range the source expects: [0, 1] for TF-Hub Inception, [-1, 1] for Keras."""
        return (0.0, 1.0) if self.source == "tfhub" else (-1.0, 1.0)

    def identity(self) -> str:
        """A string that changes whenever the features would: the feature store's key."""
        if self.source == "keras":
            weights = f"random-glorot-seed{self.seed}" if self.weights == "random" else self.weights
            model = f"keras:inception_v3:{weights}"
        else:
            model = f"tfhub:{self.handle}{local_model_digest(self.handle)}"
        return f"{model}|{self.image_size_px}px|prep{PREPROCESS_VERSION}"


def local_model_digest(handle: str) -> str:
    """For a local SavedModel folder, a digest of its graph, so a replaced model is not mistaken for the old."""
    graph = Path(handle) / "saved_model.pb"
    if not graph.is_file():
        return ""
    return "@" + hashlib.sha256(graph.read_bytes()).hexdigest()[:16]


def preprocess(images: Any, spec: BackboneSpec) -> Any:
    """uint8 (batch, h, w, 1 or 3) → float32 (batch, size, size, 3) in the source's input range.

    The one preprocessing function of the project: the stages and the exported model both call it.
    """
    import tensorflow as tf

    pixels = tf.cast(images, tf.float32)
    pixels = tf.image.resize(pixels, (spec.image_size_px, spec.image_size_px), method="bilinear")
    if pixels.shape[-1] == 1:
        pixels = tf.image.grayscale_to_rgb(pixels)
    low, high = spec.input_range
    return pixels * ((high - low) / 255.0) + low


def load_tfhub(handle: str) -> Callable:
    """Load a TF-Hub model (URL or local folder) as a callable; clear errors when that cannot work."""
    import tensorflow_hub as hub

    os.environ.setdefault("TFHUB_CACHE_DIR", str(DEFAULT_TFHUB_CACHE))
    offline_help = OFFLINE_HELP.format(cache=os.environ["TFHUB_CACHE_DIR"])
    if "://" not in handle and not Path(handle).is_dir():
        raise BackboneLoadError(f"backbone.handle {handle!r} is neither a URL nor an existing SavedModel folder")
    try:
        return hub.load(handle)
    except Exception as error:  # hub raises URLError, OSError, ValueError… for unreachable models
        raise BackboneLoadError(f"cannot load backbone.handle {handle!r}: {error}\n{offline_help}") from error


def load_keras(weights: str, image_size_px: int, seed: int) -> Callable:
    """Keras InceptionV3 without its top, average-pooled; `random` weights are seeded and deterministic."""
    import keras

    try:
        model = keras.applications.InceptionV3(
            include_top=False,
            weights=None if weights == "random" else "imagenet",
            input_shape=(image_size_px, image_size_px, 3),
            pooling="avg",
        )
    except Exception as error:  # the imagenet weights are a download
        raise BackboneLoadError(
            f"cannot load Keras InceptionV3 weights={weights!r}: {error}\n{OFFLINE_HELP.format(cache='-')}"
        ) from error
    if weights == "random":
        seed_kernels(model, seed)
    return model


def seed_kernels(model: Any, seed: int) -> None:
    """Glorot-uniform kernels (Keras' default) drawn from our own RNG: the same weights in every process,
    whatever Keras' global random state went through before (keras.utils.set_random_seed does not reset
    an already-used global generator, so a second model built in one process came out different)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if len(shape) < 2:  # batch-norm offsets and statistics: constants already
            continue
        receptive_field = int(np.prod(shape[:-2]))
        fan_in, fan_out = shape[-2] * receptive_field, shape[-1] * receptive_field
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        variable.assign(rng.uniform(-limit, limit, size=shape).astype(np.float32))


def prepare_encoded(encoded: Any, spec: BackboneSpec) -> Any:
    """Encoded JPEG/PNG bytes (string tensor, (batch,)) → float32 (batch, size, size, 3) backbone input."""
    return map_decoded(encoded, lambda pixels: preprocess(pixels, spec))


class Backbone:
    """A loaded backbone: images in, (batch, 2048) float32 features out."""

    def __init__(self, spec: BackboneSpec, model: Callable):
        import tensorflow as tf

        self.spec = spec
        self.model = model
        size = spec.image_size_px
        # fixed signatures: one trace for every batch size (retracing InceptionV3 costs seconds per shape)
        self.forward = tf.function(self.features, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
        self.forward_encoded = tf.function(
            lambda encoded: self.features(prepare_encoded(encoded, spec)), input_signature=[tf.TensorSpec([None], tf.string)]
        )

    def features(self, pixels: Any) -> Any:
        """Traceable: preprocessed float32 (batch, size, size, 3) → float32 (batch, 2048)."""
        if self.spec.source == "keras":
            return self.model(pixels, training=False)
        return self.model(pixels)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 (batch, h, w, c) array → float32 (batch, 2048) array."""
        return self.forward(preprocess(images, self.spec)).numpy()

    def embed_encoded(self, encoded: list[bytes], batch_size: int) -> np.ndarray:
        """Encoded images → float32 (n, 2048), batch by batch, decoding and resizing inside the same graph.

        Decode + resize cost ~1-3 % of a forward pass here; a tf.data prefetch pipeline was measured slower
        (12.5 vs 17.2 images/s at 299 px) when run from a Dask worker's task thread.
        """
        import tensorflow as tf

        batches = [
            self.forward_encoded(tf.constant(encoded[start : start + batch_size], dtype=tf.string)).numpy()
            for start in range(0, len(encoded), batch_size)
        ]
        return np.concatenate(batches) if batches else np.empty((0, FEATURE_DIM), np.float32)


def load_backbone(spec: BackboneSpec) -> Backbone:
    spec.validate()
    if spec.source == "keras":
        return Backbone(spec, load_keras(spec.weights, spec.image_size_px, spec.seed))
    return Backbone(spec, load_tfhub(spec.handle))
