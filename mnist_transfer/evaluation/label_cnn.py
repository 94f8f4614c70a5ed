"""Label images with the from-scratch CNN into shard CSVs with the label stage's columns and shard assignment
(mnist_transfer.label), so that the report reads both models' predictions alike. Core of the label_cnn stage.

The shards run one after the other in this process: the CNN on 28×28 digits is cheap, and one TensorFlow
process already uses every core: 5,650 images/s here vs 1,475 on two Dask workers, which must each load
TensorFlow and the model first (python -m benchmarks.cnn).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from mnist_transfer.data.records import ImageRecord
from mnist_transfer.evaluation.predictions import ShardSummary, assign_shards, prediction_rows, write_predictions
from mnist_transfer.models.cnn import load_digits, predict_probabilities


def label_cnn_shard(
    records: Sequence[ImageRecord], data_root: Path, cnn: Any, out_path: Path, temperature: float = 1.0
) -> int:
    """Decode, classify and write one shard's CSV (atomically, probabilities calibrated with temperature);
    returns how many it got right."""
    digits = load_digits(records, data_root)
    rows = prediction_rows(records, predict_probabilities(cnn, digits.images), temperature)
    write_predictions(rows, out_path)
    return sum(row[4] for row in rows)


def write_cnn_shards(
    records: Sequence[ImageRecord], data_root: Path, cnn: Any, n_shards: int, out_dir: Path, *, temperature: float = 1.0
) -> list[ShardSummary]:
    """Label every shard of records into out_dir/shard-<k>.csv (probabilities calibrated: model.json's temperature)."""
    summaries = []
    for index, shard in enumerate(assign_shards(records, n_shards)):
        n_correct = label_cnn_shard(shard, data_root, cnn, out_dir / f"shard-{index}.csv", temperature)
        summaries.append(ShardSummary(index, len(shard), n_correct))
    return summaries
