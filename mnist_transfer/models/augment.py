"""Training-time augmentation of the CNN's digits: one random affine transform per digit (rotation, zoom and
shift about the centre, in a single resampling) and, for a share of the digits, strokes 1 px thicker or
thinner. A batch at a time inside the tf.data pipeline, from a stateless seed per step: training is
deterministic per `cnn.seed`, and the exported model holds no augmentation.

One transform instead of Keras' RandomRotation + RandomZoom + RandomTranslation layers (three resamplings,
each in the training step): benchmarks.cnn_recipe measures both recipes in one run.
"""

from __future__ import annotations

import math
from typing import Any

from mnist_transfer.data.idx import IMAGE_SIDE_PX
from mnist_transfer.params import CnnAugmentParams

CENTRE = (IMAGE_SIDE_PX - 1) / 2


def affine_rows(draws: Any, params: CnnAugmentParams, centre: tuple[float, float] = (CENTRE, CENTRE)) -> Any:
    """Uniform draws in [-1, 1], float32 (n, 4): rotation, zoom, shift x, shift y → (n, 8) projective transforms in
    ImageProjectiveTransformV3's convention (each maps an output pixel to the input pixel it samples).

    A digit is rotated by up to ±rotation_deg, scaled by 1 ± zoom about the centre (x, y: a 28×28 digit's by
    default) and moved by up to ±shift_px; all zero draws give the identity [1, 0, 0, 0, 1, 0, 0, 0].
    """
    import tensorflow as tf

    centre_x, centre_y = centre

    angle = draws[:, 0] * (params.rotation_deg * math.pi / 180)
    scale = 1 + draws[:, 1] * params.zoom
    shift_x, shift_y = draws[:, 2] * params.shift_px, draws[:, 3] * params.shift_px
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # output (x, y) → input: centre + inverse-rotate/scale (x - centre - shift, y - centre - shift)
    offset_x = centre_x - cos * (centre_x + shift_x) + sin * (centre_y + shift_y)
    offset_y = centre_y - sin * (centre_x + shift_x) - cos * (centre_y + shift_y)
    zeros = tf.zeros_like(angle)
    return tf.stack([cos, -sin, offset_x, sin, cos, offset_y, zeros, zeros], axis=1)


def augment_batch(images: Any, seed: Any, params: CnnAugmentParams) -> Any:
    """float32 (batch, h, w, 1) digits (28×28; a number reader's pairs are 28×56), bright on a 0 background → the
    batch augmented (TensorFlow ops).

    Args:
        seed: int32 (2,) stateless seed: the same seed gives the same augmentation.
    """
    import tensorflow as tf

    height, width = images.shape[1:3]
    draws = tf.random.stateless_uniform([tf.shape(images)[0], 5], seed, -1.0, 1.0)
    moved = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=affine_rows(draws[:, :4], params, ((width - 1) / 2, (height - 1) / 2)),
        output_shape=[height, width],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT",
    )
    if params.stroke_probability <= 0:
        return moved
    thicker = tf.nn.max_pool2d(moved, 2, 1, "SAME")  # a 1 px dilation
    thinner = -tf.nn.max_pool2d(-moved, 2, 1, "SAME")  # a 1 px erosion
    draw = tf.reshape((draws[:, 4] + 1) / 2, [-1, 1, 1, 1])  # one per digit, uniform in [0, 1]
    half = params.stroke_probability / 2
    return tf.where(draw < half, thicker, tf.where(draw < 2 * half, thinner, moved))

