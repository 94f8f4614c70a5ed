"""Compute the backbone's bottleneck features of every training JPG, through the feature store.

Reads data/jpg/training and params `backbone.*`, `bottlenecks.*`, `executor.scheduler`
→ writes data/bottlenecks/training.npz (features (n, 2048) float32, labels, paths, hashes).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from mnist_transfer.data.records import ImageRecord
from mnist_transfer.features.feature_store import FeatureStore
from mnist_transfer.outputs import atomic_path

log = logging.getLogger("bottlenecks")

EXPORT_CHUNK = 4096  # vectors read from the store at a time


def write_bottlenecks(records: Sequence[ImageRecord], store: FeatureStore, backbone_id: str, out_path: Path) -> None:
    """Write the features of records, in order, to an .npz, streaming through a memory-mapped buffer."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out_path.parent, prefix=".features-", suffix=".npy") as buffer:
        shape = (len(records), store.feature_dim)
        features = np.lib.format.open_memmap(buffer.name, mode="w+", dtype=np.float32, shape=shape)
        for start in range(0, len(records), EXPORT_CHUNK):
            part = records[start : start + EXPORT_CHUNK]
            features[start : start + len(part)] = store.get(backbone_id, [r.sha256 for r in part])
        with atomic_path(out_path) as tmp_path, open(tmp_path, "wb") as handle:
            np.savez(
                handle,
                features=features,  # (n_images, 2048)
                labels=np.array([r.label for r in records], dtype=np.int64),
                paths=np.array([r.rel_path for r in records]),
                hashes=np.array([r.sha256 for r in records]),
                backbone=np.array(backbone_id),
            )
        del features  # close the memory map before the scratch buffer is deleted


def read_bottlenecks(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}
