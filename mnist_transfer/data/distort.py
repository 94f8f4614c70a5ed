"""Digits as other people's handwriting often arrives: moved off-centre, rescaled, with thicker or thinner
strokes than MNIST's. Seeded distortions of MNIST-like images (uint8 (n, 28, 28) or (n, 28, 28, 1), bright
digit on black) that measure how a model copes beyond MNIST's own size and centre normalisation: on
validation digits when choosing defaults, never on the test set.

The magnitudes lie beyond the CNN's default augmentation (shift ≤ 2 px, zoom ≤ 10 %, 2×2 stroke changes),
so that a score here measures generalisation rather than recall of the augmentation.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

SHIFT_PX = (3.0, 5.0)  # off_centre: distance of the move, uniform in this range, in a random direction
SMALLER = (0.6, 0.8)  # rescaled: half the digits shrink by a factor in this range …
LARGER = (1.15, 1.3)  # … the other half grow (beyond ~1.3 MNIST's 20 px digits leave the 28 px frame)
THICKER_FOOTPRINT = ndimage.generate_binary_structure(2, 1)  # 3×3 cross: strokes ~2 px wider
THINNER_FOOTPRINT = np.ones((2, 2), bool)  # strokes ~1 px narrower (a 3×3 erosion erases MNIST's thin ones)


def _off_centre(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    distance, angle = rng.uniform(*SHIFT_PX), rng.uniform(0, 2 * np.pi)
    return ndimage.shift(image, (distance * np.sin(angle), distance * np.cos(angle)), order=1, mode="constant")


def _rescaled(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    scale = rng.uniform(*(SMALLER if rng.random() < 0.5 else LARGER))
    centre = (np.array(image.shape) - 1) / 2
    # output pixel o samples input centre + (o - centre) / scale
    return ndimage.affine_transform(image, np.eye(2) / scale, offset=centre - centre / scale, order=1, mode="constant")


def _thicker(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return ndimage.grey_dilation(image, footprint=THICKER_FOOTPRINT)


def _thinner(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return ndimage.grey_erosion(image, footprint=THINNER_FOOTPRINT)


DISTORTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "off_centre": _off_centre,
    "rescaled": _rescaled,
    "thicker": _thicker,
    "thinner": _thinner,
}


def distort(images: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """images distorted by DISTORTIONS[kind], each with its own random draw from `seed`; same shape, uint8."""
    if kind not in DISTORTIONS:
        raise ValueError(f"unknown distortion {kind!r}; known: {sorted(DISTORTIONS)}")
    rng = np.random.default_rng(seed)
    flat = images.reshape(-1, *images.shape[1:3]).astype(np.float32)  # (n, h, w)
    distorted = np.stack([DISTORTIONS[kind](image, rng) for image in flat]) if len(flat) else flat
    return np.clip(np.round(distorted), 0, 255).astype(np.uint8).reshape(images.shape)


def distortions(images: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Every distortion of images: {kind: distorted images}."""
    return {kind: distort(images, kind, seed) for kind in DISTORTIONS}
