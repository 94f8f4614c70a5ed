"""Label the test set in parallel shards with the trained head on feature-store features, and check the
exported SavedModel agrees on a sample.

Reads data/jpg/testing, data/model and params `label.*`, `backbone.*`, `bottlenecks.batch_size`,
`bottlenecks.chunk_images`, `executor.scheduler` → writes data/predictions/shard-<k>.csv.
Workers must see the repository and the feature store (same machine, or a shared filesystem).

Thin DVC entry point: the work is done in mnist_transfer.label.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

from mnist_transfer.backbone import BackboneSpec
from mnist_transfer.common import load_params, run_stage, setup_logging
from mnist_transfer.embedding import BackboneEmbedder, ExecutorSpec, dask_client, list_images, tf_threads_per_worker
from mnist_transfer.export import HEAD_FILE
from mnist_transfer.feature_store import default_store_path
from mnist_transfer.label import LabelContext, ShardJob, assign_shards, check_exported_parity, parity_sample, run_shards

log = logging.getLogger("label")


def main() -> None:
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True, help="test JPG folder (data/jpg/testing)")
    parser.add_argument("--model", type=Path, required=True, help="exported model folder (data/model)")
    parser.add_argument("--out", type=Path, required=True, help="predictions folder (data/predictions)")
    args = parser.parse_args()
    settings, embed_settings = load_params("label"), load_params("bottlenecks")
    spec = BackboneSpec.from_params(load_params("backbone"))
    workers = int(settings["workers"])
    context = LabelContext(
        data_root=args.images.parent.resolve(),
        store_path=default_store_path().resolve(),
        head_path=(args.model / HEAD_FILE).resolve(),
        embedder=BackboneEmbedder(spec, int(embed_settings["batch_size"]), tf_threads_per_worker(workers)),
        chunk_images=int(embed_settings["chunk_images"]),
    )
    started = time.perf_counter()
    records = list_images(args.images, data_root=args.images.parent)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    jobs = [
        ShardJob(index, shard, (args.out / f"shard-{index}.csv").resolve())
        for index, shard in enumerate(assign_shards(records, int(settings["shards"])))
    ]
    with dask_client(ExecutorSpec(load_params("executor")["scheduler"], workers, context.chunk_images)) as client:
        summaries = run_shards(jobs, context, client)
    elapsed_s = time.perf_counter() - started
    n_computed = sum(s.n_computed for s in summaries)
    log.info(
        "labelled %d images in %d shards on %d workers in %.1fs (%.1f images/s); %d backbone passes, the rest from the store",
        len(records), len(jobs), workers, elapsed_s, len(records) / elapsed_s, n_computed,
    )
    checked = check_exported_parity(parity_sample(records, int(settings["parity_sample"])), args.images.parent, args.model, args.out)
    log.info("exported SavedModel agrees with the label stage on %d sampled test images", checked)


if __name__ == "__main__":
    run_stage(main)
