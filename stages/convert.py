"""Convert the MNIST IDX files, or Kaggle's CSVs, to verified grayscale JPGs in one folder per digit, plus a manifest.

Reads data/idx/*-ubyte (`data.source: mnist`) or <data.kaggle_dir>/{train,test}.csv (`kaggle`) and params
`data.limit_per_class`, `data.jpeg_quality`, `data.convert_workers`, `data.kaggle_holdout_percentage`
→ writes data/jpg/{training,testing}/<digit>/<index>.jpg, data/jpg/unlabelled/ (test.csv's rows as
<ImageId>.jpg; a note with MNIST) and data/jpg/manifest.csv.

Thin DVC entry point: the work is done in mnist_transfer.convert and mnist_transfer.kaggle.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from mnist_transfer.data.convert import NO_UNLABELLED_NOTE, UNLABELLED, convert_all, write_manifest
from mnist_transfer.data.idx import SPLITS
from mnist_transfer.data.kaggle import KaggleSource, convert_kaggle
from mnist_transfer.outputs import write_placeholder
from mnist_transfer.params import Params
from mnist_transfer.runner import run_stage

log = logging.getLogger("convert")


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idx", type=Path, required=True, help="folder of IDX files (data/idx)")
    parser.add_argument("--kaggle", type=Path, required=True, help="folder of Kaggle's CSVs (data.kaggle_dir)")
    parser.add_argument("--out", type=Path, required=True, help="JPG root (data/jpg)")
    parser.add_argument("--manifest", type=Path, required=True, help="manifest CSV (data/jpg/manifest.csv)")
    args = parser.parse_args()
    data = params.data
    limit_per_class, quality = data.limit_per_class, data.jpeg_quality
    workers = data.convert_workers or os.cpu_count() or 1
    started = time.perf_counter()
    if data.source == "kaggle":
        source = KaggleSource(args.kaggle, data.kaggle_holdout_percentage)
        rows = convert_kaggle(source, args.out, limit_per_class, quality, workers)
    else:
        rows = convert_all(args.idx, args.out, limit_per_class, quality, workers)
        write_placeholder(args.out / UNLABELLED, NO_UNLABELLED_NOTE)
    write_manifest(rows, args.manifest)
    for split in (*SPLITS, UNLABELLED):
        log.info("%s: %d JPGs", split, sum(row.split == split for row in rows))
    log.info("wrote and verified %d JPGs from %s to %s in %.1fs", len(rows), data.source, args.out,
             time.perf_counter() - started)


if __name__ == "__main__":
    run_stage(main)
