"""Benchmark: the fixed cost of a cold embedding run, step by step, in the workers of a LocalCluster.

Cluster start, then in every worker at once: import TensorFlow + Keras, build the backbone, trace the
encoded-bytes function, and three chunks of real JPGs (the first one pays the graph optimisation).

    python -m benchmarks.startup --images /tmp/pipeline/data/jpg/testing --workers 2
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.record import add_record_flag, record
from mnist_transfer.data.records import list_images
from mnist_transfer.features.backbone import BackboneSpec
from mnist_transfer.features.embedding import ExecutorSpec, dask_client, tf_threads_per_worker, worker_backbone
from mnist_transfer.params import OFFLINE_PROFILE, BottlenecksParams, LabelParams


def import_frameworks() -> None:
    import keras  # noqa: F401
    import tensorflow  # noqa: F401


def build_backbone(spec: BackboneSpec, tf_threads: int) -> None:
    worker_backbone(spec, tf_threads)


def trace_backbone(spec: BackboneSpec, tf_threads: int) -> None:
    worker_backbone(spec, tf_threads).forward_encoded.get_concrete_function()


def embed_chunk(spec: BackboneSpec, tf_threads: int, encoded: list[bytes], batch_size: int) -> None:
    worker_backbone(spec, tf_threads).embed_encoded(encoded, batch_size)


def seconds_of(step: Callable[..., None]) -> Callable[..., float]:
    def timed(*args: Any) -> float:
        started = time.perf_counter()
        step(*args)
        return time.perf_counter() - started

    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=Path("data/jpg/testing"), help="a split folder of JPGs")
    parser.add_argument("--image-size", type=int, default=OFFLINE_PROFILE["backbone.image_size"])
    parser.add_argument("--workers", type=int, default=LabelParams().workers, help="label.workers")
    parser.add_argument("--chunk-images", type=int, default=BottlenecksParams().chunk_images, help="bottlenecks.chunk_images")
    parser.add_argument("--batch-size", type=int, default=BottlenecksParams().batch_size, help="bottlenecks.batch_size")
    add_record_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    spec = BackboneSpec("keras", "", "random", args.image_size)
    threads = tf_threads_per_worker(args.workers)
    encoded = [(args.images.parent / r.rel_path).read_bytes() for r in list_images(args.images, args.images.parent)[: args.chunk_images]]
    # (printed name, figure name, step, its arguments); a figure's name does not change with the settings
    steps = [("import tensorflow + keras", "import tensorflow + keras s", import_frameworks, ()),
             ("build the backbone", "build the backbone s", build_backbone, (spec, threads)),
             ("trace the encoded-bytes function", "trace the encoded-bytes function s", trace_backbone,
              (spec, threads))]
    steps += [(f"chunk #{k} of {len(encoded)} images", f"chunk #{k} s", embed_chunk,
               (spec, threads, encoded, args.batch_size)) for k in (1, 2, 3)]
    print(f"keras InceptionV3 (random) at {args.image_size} px, {args.workers} worker(s) × {threads} TensorFlow thread(s)")
    started = time.perf_counter()
    with dask_client(ExecutorSpec("local", args.workers, args.chunk_images)) as client:
        figures = {"LocalCluster start s": time.perf_counter() - started}
        print(f"{'LocalCluster start':<34}: {figures['LocalCluster start s']:6.2f} s")
        for name, key, step, step_args in steps:
            per_worker = sorted(client.run(seconds_of(step), *step_args).values())
            figures[key] = max(per_worker)
            print(f"{name:<34}: {max(per_worker):6.2f} s   (per worker: {', '.join(f'{s:.2f}' for s in per_worker)})")
    record("startup", figures, setup={"workers": args.workers, "TF threads per worker": threads,
                                      "image size px": args.image_size, "chunk images": len(encoded),
                                      "batch": args.batch_size}, enabled=args.record)


if __name__ == "__main__":
    main()
