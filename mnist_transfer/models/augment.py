"""Training-time augmentation of the CNN's digits with Keras preprocessing layers: small shifts, rotations,
zoom and stroke thickness, each seeded. The layers run inside the training step only; the exported model
holds none of them.

Imports Keras at module level (a Layer subclass needs its base class): import this module only where
TensorFlow runs anyway (mnist_transfer.cnn imports it inside its functions).
"""

from __future__ import annotations

from typing import Any

import keras

from mnist_transfer.data.idx import IMAGE_SIDE_PX
from mnist_transfer.params import CnnAugmentParams


class RandomStrokeWidth(keras.layers.Layer):
    """Make the strokes of a random share of the digits 1 px thicker (2×2 max pooling, a dilation) or thinner
    (2×2 min pooling, an erosion), half each; the others pass unchanged. Bright digits on a dark background."""

    def __init__(self, probability: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.probability = probability
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images: Any, training: bool = True) -> Any:
        if not training or self.probability <= 0:
            return images
        ops = keras.ops
        thicker = ops.max_pool(images, pool_size=2, strides=1, padding="same")
        thinner = -ops.max_pool(-images, pool_size=2, strides=1, padding="same")
        draw = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), seed=self.generator)  # one per digit
        return ops.where(draw < self.probability / 2, thicker, ops.where(draw < self.probability, thinner, images))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "probability": self.probability, "seed": self.seed}


def augmentation_layers(params: CnnAugmentParams, seed: int) -> list[Any]:
    """The random layers for params (those set to 0 left out), on float pixels 0..255 with a 0 background.

    Stroke width first (on the digit as written), then rotation, zoom and shift, each with its own seed.
    """
    fill = {"fill_mode": "constant", "fill_value": 0.0}
    layers: list[Any] = []
    if params.stroke_probability > 0:
        layers.append(RandomStrokeWidth(params.stroke_probability, seed=seed, name="stroke_width"))
    if params.rotation_deg > 0:
        layers.append(keras.layers.RandomRotation(params.rotation_deg / 360, seed=seed + 1, name="rotation", **fill))
    if params.zoom > 0:
        layers.append(keras.layers.RandomZoom((-params.zoom, params.zoom), seed=seed + 2, name="zoom", **fill))
    if params.shift_px > 0:
        shift = params.shift_px / IMAGE_SIDE_PX
        layers.append(keras.layers.RandomTranslation(shift, shift, seed=seed + 3, name="shift", **fill))
    return layers
