"""Benchmark: cold labelling of the test set with 1 worker vs one worker per core, in one run, against the
raw forward-pass bound; then the warm relabelling a head-only change costs (zero backbone passes).

Needs a trained pipeline (data/jpg/testing, data/model/head.keras) with the keras/random backbone:

    python -m benchmarks.label --image-size 75
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.bottlenecks import raw_images_per_s
from mnist_transfer.backbone import BackboneSpec
from mnist_transfer.embedding import BackboneEmbedder, ExecutorSpec, dask_client, list_images, tf_threads_per_worker
from mnist_transfer.export import HEAD_FILE
from mnist_transfer.label import LabelContext, ShardJob, assign_shards, run_shards


def label_once(records: list, context: LabelContext, n_shards: int, workers: int, out_dir: Path) -> tuple[float, int]:
    """(seconds, backbone passes) of one labelling run, cluster start and model loading included."""
    jobs = [ShardJob(k, shard, out_dir / f"shard-{k}.csv") for k, shard in enumerate(assign_shards(records, n_shards))]
    started = time.perf_counter()
    with dask_client(ExecutorSpec("local", workers, context.chunk_images)) as client:
        summaries = run_shards(jobs, context, client)
    return time.perf_counter() - started, sum(s.n_computed for s in summaries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=Path("data/jpg/testing"))
    parser.add_argument("--model", type=Path, default=Path("data/model"))
    parser.add_argument("--image-size", type=int, default=75)
    parser.add_argument("--n-images", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--chunk-images", type=int, default=1024)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    spec = BackboneSpec("keras", "", "random", args.image_size)
    records = list_images(args.images, args.images.parent)[: args.n_images]
    cores = os.cpu_count() or 1
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for workers in (1, cores):
            context = LabelContext(
                args.images.parent.resolve(), Path(scratch) / f"store-{workers}.sqlite", (args.model / HEAD_FILE).resolve(),
                BackboneEmbedder(spec, args.batch_size, tf_threads_per_worker(workers)), args.chunk_images,
            )
            results[workers] = label_once(records, context, args.shards, workers, Path(scratch) / f"out-{workers}")
        warm_s, warm_passes = label_once(records, context, args.shards, cores, Path(scratch) / "warm")
    raw = raw_images_per_s(spec, min(len(records), 4096), args.batch_size)
    n = len(records)
    print(f"labelling {n} test JPGs, {args.shards} shards, keras InceptionV3 (random) at {args.image_size} px, {cores} cores")
    print(f"raw forward pass bound        : {raw:8.1f} images/s")
    for workers, (seconds, passes) in results.items():
        print(f"cold, {workers} worker(s)            : {n / seconds:8.1f} images/s  ({seconds:.1f} s, {passes} backbone passes)  "
              f"vs bound {n / seconds / raw:.3f}")
    print(f"ratio {cores} workers / 1 worker     : {results[1][0] / results[cores][0]:.3f}")
    print(f"warm relabel after head change: {warm_s:.1f} s  ({warm_passes} backbone passes)")


if __name__ == "__main__":
    main()
