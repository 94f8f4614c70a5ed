"""Label the test set (and your own test digits) with the from-scratch CNN, in shards, and check that the
exported SavedModel agrees on a sample.

Reads data/jpg/testing, data/jpg/own/testing, data/cnn and params `label.shards`, `label.parity_sample` →
writes data/predictions_cnn/shard-<k>.csv (the label stage's columns and shard assignment; probabilities calibrated
with data/cnn/model.json's temperature) and a copy of that model.json.

Thin DVC entry point: the work is done in mnist_transfer.label_cnn.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

from mnist_transfer.data.records import list_images
from mnist_transfer.evaluation.label_cnn import write_cnn_shards
from mnist_transfer.evaluation.parity import check_exported_parity, parity_sample
from mnist_transfer.models.cnn import load_cnn
from mnist_transfer.models.metadata import copy_metadata
from mnist_transfer.params import Params
from mnist_transfer.runner import run_stage

log = logging.getLogger("label_cnn")


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True, help="test JPG folder (data/jpg/testing)")
    parser.add_argument("--own", type=Path, required=True, help="your own test digits (data/jpg/own/testing)")
    parser.add_argument("--model", type=Path, required=True, help="exported CNN folder (data/cnn)")
    parser.add_argument("--out", type=Path, required=True, help="predictions folder (data/predictions_cnn)")
    args = parser.parse_args()
    settings = params.label
    data_root = args.images.parent
    started = time.perf_counter()
    official = list_images(args.images, data_root)
    records = official + list_images(args.own, data_root, required=False)
    cnn = load_cnn(args.model)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    metadata = copy_metadata(args.model, args.out)  # beside the shards: the report reads the temperature there
    temperature = metadata.temperature if metadata is not None else 1.0
    summaries = write_cnn_shards(records, data_root, cnn, settings.shards, args.out, temperature=temperature)
    elapsed_s = time.perf_counter() - started
    log.info(
        "labelled %d images (%d official, %d of your own) with the CNN in %d shards in %.1fs (%.0f images/s); "
        "accuracy %.4f; probabilities calibrated with temperature %.3f",
        len(records), len(official), len(records) - len(official), len(summaries), elapsed_s, len(records) / elapsed_s,
        sum(s.n_correct for s in summaries) / max(1, len(records)), temperature,
    )
    sample = parity_sample(official, settings.parity_sample)
    checked = check_exported_parity(sample, data_root, args.model, args.out, settings.tflite_min_agreement)
    log.info("exported CNN SavedModel agrees with the label_cnn stage on %d sampled test images", checked)


if __name__ == "__main__":
    run_stage(main)
