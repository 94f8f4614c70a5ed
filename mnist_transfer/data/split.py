"""The stable validation split (a hash of each path relative to the data root) and per-image training weights."""

from __future__ import annotations

import hashlib

import numpy as np

from mnist_transfer.errors import ParamsError

HASH_BUCKETS = 10_000  # validation membership resolution: 0.01 %


def in_validation(rel_path: str, validation_percentage: float) -> bool:
    """Stable split: hash the path relative to the data root, so moving the data folder changes nothing."""
    bucket = int(hashlib.sha1(rel_path.encode("utf-8")).hexdigest(), 16) % HASH_BUCKETS
    return bucket < validation_percentage / 100 * HASH_BUCKETS


def own_weights(rel_paths: np.ndarray, own_weight: float) -> np.ndarray:
    """(n_images,) training-loss weights: `own_weight` for your own digits (paths under own/), 1 for MNIST's."""
    is_own = np.char.startswith(rel_paths.astype(str), "own/")
    return np.where(is_own, np.float32(own_weight), np.float32(1.0))


def validation_mask(rel_paths: np.ndarray, validation_percentage: float) -> np.ndarray:
    if not 0 < validation_percentage < 100:
        raise ParamsError(f"train.validation_percentage must be in (0, 100), got {validation_percentage}")
    return np.array([in_validation(str(path), validation_percentage) for path in rel_paths], dtype=bool)
