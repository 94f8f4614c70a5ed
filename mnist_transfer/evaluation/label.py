"""Label the test set (and your own test digits) in shards with the trained head on feature-store
features (the parity checks against the exported model are in mnist_transfer.evaluation.parity).

One embedding path (mnist_transfer.features.embedding.ensure_features): the client reads the images, computes only
the features the store lacks on Dask workers (no cluster at all when none is missing), then applies the
head once per shard and writes each shard CSV atomically. Workers never see the repository or the store.
Reads data/jpg/testing, data/jpg/own/testing, data/model → writes data/predictions/shard-<k>.csv.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mnist_transfer.data.idx import N_CLASSES
from mnist_transfer.data.records import ImageRecord
from mnist_transfer.evaluation.predictions import ShardSummary, assign_shards, prediction_rows, write_predictions
from mnist_transfer.features.feature_store import FeatureStore

log = logging.getLogger("label")

HEAD_BATCH = 4096  # feature vectors per head call


def classify_stored(records: Sequence[ImageRecord], store: FeatureStore, backbone_id: str, head: Any) -> np.ndarray:
    """(n_images, 10) probabilities of the head on the stored features of records, a batch at a time."""
    parts = [np.empty((0, N_CLASSES), np.float32)]
    for start in range(0, len(records), HEAD_BATCH):
        features = store.get(backbone_id, [r.sha256 for r in records[start : start + HEAD_BATCH]])  # (batch, 2048)
        parts.append(np.asarray(head.predict(features, batch_size=HEAD_BATCH, verbose=0), np.float32))
    return np.concatenate(parts)


def write_shards(
    records: Sequence[ImageRecord], n_shards: int, out_dir: Path, store: FeatureStore, backbone_id: str, head: Any,
    *, temperature: float = 1.0,
) -> list[ShardSummary]:
    """Label every shard from the store (every feature must be there) and write data/predictions/shard-<k>.csv,
    its probabilities calibrated with the model's temperature (model.json)."""
    summaries = []
    for index, shard in enumerate(assign_shards(records, n_shards)):
        rows = prediction_rows(shard, classify_stored(shard, store, backbone_id, head), temperature)
        write_predictions(rows, out_dir / f"shard-{index}.csv")
        summaries.append(ShardSummary(index, len(rows), sum(row[4] for row in rows)))
    return summaries


