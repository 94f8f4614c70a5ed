"""Label the test set (and your own test digits) in shards with the trained head on feature-store
features, and check that the exported SavedModel agrees on a sample.

Reads data/jpg/testing, data/jpg/own/testing, data/model and params `label.*`, `backbone.*`,
`bottlenecks.*`, `executor.scheduler` → writes data/predictions/shard-<k>.csv.

Thin DVC entry point: the work is done in mnist_transfer.label.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

from mnist_transfer.common import load_params, run_stage, setup_logging
from mnist_transfer.embedding import embedding_setup, ensure_features, list_images
from mnist_transfer.export import HEAD_FILE
from mnist_transfer.feature_store import FeatureStore, default_store_path
from mnist_transfer.label import check_exported_parity, parity_sample, write_shards

log = logging.getLogger("label")


def main() -> None:
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True, help="test JPG folder (data/jpg/testing)")
    parser.add_argument("--own", type=Path, required=True, help="your own test digits (data/jpg/own/testing)")
    parser.add_argument("--model", type=Path, required=True, help="exported model folder (data/model)")
    parser.add_argument("--out", type=Path, required=True, help="predictions folder (data/predictions)")
    args = parser.parse_args()
    settings = load_params("label")
    spec, embedder, executor = embedding_setup(int(settings["workers"]))
    data_root = args.images.parent
    started = time.perf_counter()
    official = list_images(args.images, data_root)
    records = official + list_images(args.own, data_root, required=False)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    import keras  # only now: a usage error above costs no TensorFlow start-up

    head = keras.saving.load_model(args.model / HEAD_FILE)
    with FeatureStore(default_store_path()) as store:
        computed = ensure_features(records, data_root, store, embedder, executor)
        summaries = write_shards(records, int(settings["shards"]), args.out, store, spec.identity(), head)
    elapsed_s = time.perf_counter() - started
    log.info(
        "labelled %d images (%d official, %d of your own) in %d shards in %.1fs (%.1f images/s); "
        "%d backbone passes, the rest from the store",
        len(records), len(official), len(records) - len(official), len(summaries), elapsed_s,
        len(records) / elapsed_s, computed,
    )
    sample = parity_sample(official, int(settings["parity_sample"]))
    checked = check_exported_parity(sample, data_root, args.model, args.out, float(settings["tflite_min_agreement"]))
    log.info("exported SavedModel agrees with the label stage on %d sampled test images", checked)


if __name__ == "__main__":
    run_stage(main)
