"""Write Kaggle's submission file: one digit per row of test.csv, `ImageId,Label`, in test.csv's order.

Reads data/jpg/unlabelled, data/model and params `data.source`, `backbone.*`, `bottlenecks.batch_size`,
`bottlenecks.chunk_images`, `label.workers`, `executor.scheduler` → writes reports/kaggle/submission.csv
(and submission_cnn.csv with --cnn DIR, an exported CNN). With `data.source: mnist`: a note only.

Thin DVC entry point: the work is done in mnist_transfer.submit.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

from mnist_transfer.evaluation.submit import (
    CNN_SUBMISSION_FILE,
    MNIST_NOTE,
    SUBMISSION_FILE,
    exported_model_digits,
    read_submission,
    transfer_model_digits,
    unlabelled_records,
    write_submission,
)
from mnist_transfer.features.embedding import embedding_setup, ensure_features
from mnist_transfer.features.feature_store import FeatureStore, default_store_path
from mnist_transfer.outputs import write_placeholder
from mnist_transfer.params import Params
from mnist_transfer.runner import run_stage

log = logging.getLogger("submit")


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True, help="test.csv's images (data/jpg/unlabelled)")
    parser.add_argument("--model", type=Path, required=True, help="exported transfer model (data/model)")
    parser.add_argument("--out", type=Path, required=True, help="submission folder (reports/kaggle)")
    parser.add_argument("--cnn", type=Path, help="an exported CNN (data/cnn): also write submission_cnn.csv")
    args = parser.parse_args()
    if params.data.source != "kaggle":  # cheap: no TensorFlow, no cluster
        write_placeholder(args.out, MNIST_NOTE)
        log.info("data.source is mnist: nothing to submit (note in %s)", args.out)
        return
    bottlenecks = params.bottlenecks
    spec, embedder, executor = embedding_setup(
        params.backbone, bottlenecks.batch_size, bottlenecks.chunk_images, params.executor.scheduler, params.label.workers
    )
    data_root = args.images.parent
    started = time.perf_counter()
    records = unlabelled_records(args.images, data_root)
    shutil.rmtree(args.out, ignore_errors=True)
    with FeatureStore(default_store_path()) as store:
        computed = ensure_features(records, data_root, store, embedder, executor)
        digits = transfer_model_digits(records, store, spec.identity(), args.model)
    write_submission(digits, args.out / SUBMISSION_FILE)
    log.info(
        "wrote %s: %d rows (ImageId 1..%d) in %.1fs, %d backbone passes, the rest from the feature store",
        args.out / SUBMISSION_FILE, len(read_submission(args.out / SUBMISSION_FILE)), len(records),
        time.perf_counter() - started, computed,
    )
    if args.cnn:
        cnn_digits = exported_model_digits(args.cnn, [data_root / r.rel_path for r in records])
        write_submission(cnn_digits, args.out / CNN_SUBMISSION_FILE)
        log.info("wrote %s with %s (agrees with the transfer model on %.2f %% of rows)",
                 args.out / CNN_SUBMISSION_FILE, args.cnn, 100 * (cnn_digits == digits).mean())


if __name__ == "__main__":
    run_stage(main)
