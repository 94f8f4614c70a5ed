"""Benchmark: the label stage's work against the raw forward-pass bound measured in the same run.

cold  — as the stage does it from an empty store: read and hash the test images, load the head, start a
        LocalCluster (1 worker, and one per core), load the backbone in the workers, embed, store, write shards;
warm  — the embedding path on warm workers (cluster up, backbone loaded), empty store;
relabel — a head-only change: every feature in the store, no cluster, zero backbone passes.

Needs a trained pipeline with the keras/random backbone (data/jpg/testing, data/model/head.keras):

    python -m benchmarks.label --images /tmp/pipeline/data/jpg/testing --model /tmp/pipeline/data/model
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.bottlenecks import raw_images_per_s, warm_images_per_s
from benchmarks.record import add_record_flag, record
from mnist_transfer.data.records import list_images, sha256_bytes
from mnist_transfer.evaluation.label import write_shards
from mnist_transfer.features.backbone import BackboneSpec
from mnist_transfer.features.embedding import BackboneEmbedder, ExecutorSpec, ensure_features, tf_threads_per_worker
from mnist_transfer.features.feature_store import FeatureStore
from mnist_transfer.models.export import HEAD_FILE
from mnist_transfer.params import OFFLINE_PROFILE, BottlenecksParams, LabelParams


def label_once(records: list, data_root: Path, store_path: Path, embedder: BackboneEmbedder, run: dict) -> tuple[float, int]:
    """(seconds, backbone passes) of one labelling run as the stage does it: files read and hashed, head loaded,
    cluster started and backbone loaded where features are missing, shards written.

    run: executor (ExecutorSpec), shards, head (path), out (folder).
    """
    import keras

    started = time.perf_counter()
    hashed = [replace(r, sha256=sha256_bytes((data_root / r.rel_path).read_bytes())) for r in records]
    head = keras.saving.load_model(run["head"])
    with FeatureStore(store_path) as store:
        computed = ensure_features(hashed, data_root, store, embedder, run["executor"])
        write_shards(hashed, run["shards"], run["out"], store, embedder.spec.identity(), head)
    return time.perf_counter() - started, computed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=Path("data/jpg/testing"))
    parser.add_argument("--model", type=Path, default=Path("data/model"))
    parser.add_argument("--image-size", type=int, default=OFFLINE_PROFILE["backbone.image_size"])
    parser.add_argument("--n-images", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--shards", type=int, default=LabelParams().shards, help="label.shards")
    parser.add_argument("--batch-size", type=int, default=BottlenecksParams().batch_size, help="bottlenecks.batch_size")
    parser.add_argument("--chunk-images", type=int, default=BottlenecksParams().chunk_images, help="bottlenecks.chunk_images")
    add_record_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    spec = BackboneSpec("keras", "", "random", args.image_size)
    records = list_images(args.images, args.images.parent)[: args.n_images]
    cores = os.cpu_count() or 1
    cold = {}
    with tempfile.TemporaryDirectory() as scratch:
        for workers in (1, cores):
            embedder = BackboneEmbedder(spec, args.batch_size, tf_threads_per_worker(workers))
            run = {"executor": ExecutorSpec("local", workers, args.chunk_images), "shards": args.shards,
                   "head": args.model / HEAD_FILE, "out": Path(scratch) / f"out-{workers}"}
            cold[workers] = label_once(records, args.images.parent, Path(scratch) / f"store-{workers}.sqlite", embedder, run)
        run["out"] = Path(scratch) / "relabel"
        relabel_s, relabel_passes = label_once(records, args.images.parent, Path(scratch) / f"store-{cores}.sqlite", embedder, run)
    warm = warm_images_per_s(records, args.images.parent, embedder, run["executor"])
    raw = raw_images_per_s(spec, min(len(records), 4096), args.batch_size)
    n = len(records)
    print(f"labelling {n} test JPGs, {args.shards} shards, keras InceptionV3 (random) at {args.image_size} px, "
          f"{cores} cores, chunks of {args.chunk_images}, batches of {args.batch_size}")
    print(f"raw forward pass bound          : {raw:8.1f} images/s")
    for workers, (seconds, passes) in cold.items():
        print(f"cold, {workers} worker(s)              : {n / seconds:8.1f} images/s  ratio {n / seconds / raw:.3f}  "
              f"({seconds:.1f} s, {passes} backbone passes; cluster start included)")
    print(f"warm workers, {cores} worker(s)        : {warm:8.1f} images/s  ratio {warm / raw:.3f}")
    print(f"relabel after a head change     : {n / relabel_s:8.1f} images/s  ({relabel_s:.1f} s, {relabel_passes} backbone passes)")
    figures = {"raw images/s": raw}
    for workers, (seconds, passes) in cold.items():
        figures |= {f"cold {workers} worker(s) images/s": n / seconds, f"cold {workers} worker(s) s": seconds,
                    f"cold {workers} worker(s) backbone passes": passes}
    figures |= {"warm images/s": warm, "warm/raw": warm / raw, "relabel images/s": n / relabel_s,
                "relabel s": relabel_s, "relabel backbone passes": relabel_passes}
    record("label", figures, setup={"image size px": args.image_size, "images": n, "shards": args.shards,
                                    "chunk images": args.chunk_images, "batch": args.batch_size}, enabled=args.record)


if __name__ == "__main__":
    main()
