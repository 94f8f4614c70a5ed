"""Compute the backbone's bottleneck features of every training JPG, through the feature store.

Reads data/jpg/training and params `backbone.*`, `bottlenecks.*`, `executor.scheduler`
→ writes data/bottlenecks/training.npz (features (n, 2048) float32, labels, paths, hashes).

Thin DVC entry point: the work is done in mnist_transfer.bottlenecks.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from mnist_transfer.data.records import list_images
from mnist_transfer.features.bottlenecks import write_bottlenecks
from mnist_transfer.features.embedding import embedding_setup, ensure_features
from mnist_transfer.features.feature_store import FeatureStore, default_store_path
from mnist_transfer.params import Params
from mnist_transfer.runner import run_stage

log = logging.getLogger("bottlenecks")


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True, help="training JPG folder (data/jpg/training)")
    parser.add_argument("--own", type=Path, required=True, help="your own training digits (data/jpg/own/training)")
    parser.add_argument("--out", type=Path, required=True, help="features file (data/bottlenecks/training.npz)")
    args = parser.parse_args()
    bottlenecks = params.bottlenecks
    spec, embedder, executor = embedding_setup(
        params.backbone, bottlenecks.batch_size, bottlenecks.chunk_images, params.executor.scheduler, params.bottlenecks.workers
    )
    started = time.perf_counter()
    records = list_images(args.images, args.images.parent) + list_images(args.own, args.images.parent, required=False)
    with FeatureStore(default_store_path()) as store:
        computed = ensure_features(records, args.images.parent, store, embedder, executor)
        write_bottlenecks(records, store, spec.identity(), args.out)
    log.info(
        "wrote %d bottlenecks (%d of your own digits) to %s in %.1fs: %d backbone passes now, the rest from the feature store %s",
        len(records), sum(r.rel_path.startswith("own/") for r in records), args.out, time.perf_counter() - started, computed, store.path,
    )


if __name__ == "__main__":
    run_stage(main)
