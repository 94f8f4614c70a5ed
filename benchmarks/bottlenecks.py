"""Benchmark: the bottleneck stage's pipeline on real JPGs vs the raw forward pass, in one run.

raw   — the backbone alone on in-memory float tensors already at the input size (the bound);
warm  — the stage's path: read JPGs, Dask tasks, decode + resize + forward pass in one graph,
        feature-store writes; on warm workers (backbone loaded, one chunk run), empty store;
cold  — what the stage does from nothing: read and hash the files, start the LocalCluster, load the
        backbone in the workers, embed, store.

    python -m benchmarks.bottlenecks --images /tmp/pipeline/data/jpg/training --n-images 8192
    python -m benchmarks.bottlenecks --image-size 299 --n-images 300
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.record import add_record_flag, record
from mnist_transfer.data.records import list_images, sha256_bytes
from mnist_transfer.features.backbone import BackboneSpec, load_backbone
from mnist_transfer.features.embedding import (
    BackboneEmbedder,
    EmbedRun,
    ExecutorSpec,
    dask_client,
    ensure_features,
    fill_store,
    tf_threads_per_worker,
)
from mnist_transfer.features.feature_store import FeatureStore
from mnist_transfer.params import OFFLINE_PROFILE, BottlenecksParams


def raw_images_per_s(spec: BackboneSpec, n_images: int, batch_size: int) -> float:
    """Forward passes alone on a preprocessed in-memory batch, after one warm-up call."""
    import tensorflow as tf

    backbone = load_backbone(spec)
    pixels = tf.random.uniform((batch_size, spec.image_size_px, spec.image_size_px, 3), -1.0, 1.0, seed=0)
    for _ in range(3):  # trace, build kernels for the batch shape, warm caches
        backbone.forward(pixels).numpy()
    n_batches = max(1, n_images // batch_size)
    started = time.perf_counter()
    for _ in range(n_batches):
        backbone.forward(pixels).numpy()
    return n_batches * batch_size / (time.perf_counter() - started)


def warm_images_per_s(records: list, data_root: Path, embedder: BackboneEmbedder, executor: ExecutorSpec) -> float:
    """The stage's path (read files, Dask tasks, decode + forward pass, store writes) into an empty store, on warm
    workers: cluster started, backbone loaded and kernels built by one chunk before the clock starts."""
    with tempfile.TemporaryDirectory() as scratch, FeatureStore(Path(scratch) / "warm.sqlite") as store, dask_client(
        executor
    ) as client:
        warm_up = [(data_root / r.rel_path).read_bytes() for r in records[: executor.chunk_images]]
        for future in [client.submit(embedder, warm_up, pure=False) for _ in range(executor.workers)]:
            future.result()  # every worker, most likely (Dask spreads tasks over idle workers)
        run = EmbedRun(embedder, client, executor.chunk_images, max_in_flight=2 * executor.workers)
        missing = {r.sha256: r.rel_path for r in records}
        started = time.perf_counter()
        fill_store(missing, data_root, store, embedder.spec.identity(), run)
        return len(missing) / (time.perf_counter() - started)


def cold_images_per_s(records: list, data_root: Path, embedder: BackboneEmbedder, executor: ExecutorSpec) -> float:
    """The stage's work from nothing: read and hash the files, start the cluster, load the backbone, embed, store."""
    with tempfile.TemporaryDirectory() as scratch, FeatureStore(Path(scratch) / "cold.sqlite") as store:
        started = time.perf_counter()
        hashed = [replace(r, sha256=sha256_bytes((data_root / r.rel_path).read_bytes())) for r in records]
        computed = ensure_features(hashed, data_root, store, embedder, executor)
        return computed / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=Path("data/jpg/training"), help="a split folder of JPGs")
    parser.add_argument("--image-size", type=int, default=OFFLINE_PROFILE["backbone.image_size"])
    parser.add_argument("--n-images", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=BottlenecksParams().batch_size, help="bottlenecks.batch_size")
    parser.add_argument("--chunk-images", type=int, default=BottlenecksParams().chunk_images, help="bottlenecks.chunk_images")
    parser.add_argument("--workers", type=int, default=OFFLINE_PROFILE["bottlenecks.workers"],
                        help="bottlenecks.workers (the offline profile's)")
    add_record_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    spec = BackboneSpec("keras", "", "random", args.image_size)
    records = list_images(args.images, args.images.parent)[: args.n_images]
    executor = ExecutorSpec("local", args.workers, args.chunk_images)
    embedder = BackboneEmbedder(spec, args.batch_size, tf_threads_per_worker(args.workers))
    cold = cold_images_per_s(records, args.images.parent, embedder, executor)
    warm = warm_images_per_s(records, args.images.parent, embedder, executor)
    raw = raw_images_per_s(spec, len(records), args.batch_size)
    print(f"backbone: keras InceptionV3 (random) at {args.image_size} px, {len(records)} JPGs, {os.cpu_count()} cores, "
          f"{args.workers} worker(s), chunks of {args.chunk_images}, batches of {args.batch_size}")
    print(f"raw forward pass      : {raw:8.1f} images/s   (the bound: in-memory tensors at the input size)")
    print(f"stage pipeline (warm) : {warm:8.1f} images/s   ratio {warm / raw:.3f}")
    print(f"stage pipeline (cold) : {cold:8.1f} images/s   ratio {cold / raw:.3f}   "
          "(listing + hashing, cluster start and backbone load included)")
    record("bottlenecks", {"raw images/s": raw, "warm images/s": warm, "cold images/s": cold, "warm/raw": warm / raw,
                           "cold/raw": cold / raw},
           setup={"image size px": args.image_size, "images": len(records), "workers": args.workers,
                  "chunk images": args.chunk_images, "batch": args.batch_size},
           enabled=args.record)


if __name__ == "__main__":
    main()
