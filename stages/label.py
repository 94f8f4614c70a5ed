"""Label the test set (and your own test digits) in shards with the trained head on feature-store
features, and check that the exported SavedModel (and model.tflite, if train.tflite wrote one) agrees on a sample.

Reads data/jpg/testing, data/jpg/own/testing, data/model and params `label.*`, `backbone.*`,
`bottlenecks.*`, `executor.scheduler` → writes data/predictions/shard-<k>.csv (probabilities calibrated with
data/model/model.json's temperature) and a copy of that model.json.

Thin DVC entry point: the work is done in mnist_transfer.label.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

from mnist_transfer.data.records import list_images
from mnist_transfer.evaluation.label import write_shards
from mnist_transfer.evaluation.parity import check_exported_parity, optional_tflite_floor, parity_sample
from mnist_transfer.features.embedding import embedding_setup, ensure_features
from mnist_transfer.features.feature_store import FeatureStore, default_store_path
from mnist_transfer.models.export import HEAD_FILE
from mnist_transfer.models.metadata import copy_metadata
from mnist_transfer.params import Params
from mnist_transfer.runner import run_stage

log = logging.getLogger("label")


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True, help="test JPG folder (data/jpg/testing)")
    parser.add_argument("--own", type=Path, required=True, help="your own test digits (data/jpg/own/testing)")
    parser.add_argument("--model", type=Path, required=True, help="exported model folder (data/model)")
    parser.add_argument("--out", type=Path, required=True, help="predictions folder (data/predictions)")
    args = parser.parse_args()
    settings = params.label
    bottlenecks = params.bottlenecks
    spec, embedder, executor = embedding_setup(
        params.backbone, bottlenecks.batch_size, bottlenecks.chunk_images, params.executor.scheduler, settings.workers
    )
    data_root = args.images.parent
    started = time.perf_counter()
    official = list_images(args.images, data_root)
    records = official + list_images(args.own, data_root, required=False)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    import keras  # only now: a usage error above costs no TensorFlow start-up

    head = keras.saving.load_model(args.model / HEAD_FILE)
    metadata = copy_metadata(args.model, args.out)  # beside the shards: the report reads the temperature there
    temperature = metadata.temperature if metadata is not None else 1.0
    with FeatureStore(default_store_path()) as store:
        computed = ensure_features(records, data_root, store, embedder, executor)
        summaries = write_shards(records, settings.shards, args.out, store, spec.identity(), head, temperature=temperature)
    elapsed_s = time.perf_counter() - started
    log.info(
        "labelled %d images (%d official, %d of your own) in %d shards in %.1fs (%.1f images/s); "
        "%d backbone passes, the rest from the store; probabilities calibrated with temperature %.3f",
        len(records), len(official), len(records) - len(official), len(summaries), elapsed_s,
        len(records) / elapsed_s, computed, temperature,
    )
    sample = parity_sample(official, settings.parity_sample)
    tflite_floor = optional_tflite_floor(args.model, settings.tflite_min_agreement) if sample else None
    checked = check_exported_parity(sample, data_root, args.model, args.out, tflite_floor)
    log.info("exported SavedModel agrees with the label stage on %d sampled test images", checked)


if __name__ == "__main__":
    run_stage(main)
