"""Gunzip the MNIST .gz files and validate the IDX files they hold.

Reads data/raw/*.gz and params `data.split_sizes` → writes data/idx/*-ubyte.
With `data.source: kaggle` there is nothing to extract: data/idx holds only a note.

Thin DVC entry point: the work is done in mnist_transfer.extract.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from mnist_transfer.data.extract import extract_all
from mnist_transfer.outputs import write_placeholder
from mnist_transfer.params import Params
from mnist_transfer.runner import run_stage

log = logging.getLogger("extract")


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True, help="folder of .gz files (data/raw)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the IDX files (data/idx)")
    args = parser.parse_args()
    if params.data.source == "kaggle":  # the convert stage reads Kaggle's CSVs from data.kaggle_dir
        write_placeholder(args.out, "data.source is kaggle: no MNIST IDX files.")
        log.info("data.source is kaggle: nothing to extract")
        return
    started = time.perf_counter()
    headers = extract_all(args.raw, args.out, params.data.split_sizes)
    for name, header in headers.items():
        log.info("%s: %s items %s", name, header.dims[0], "x".join(map(str, header.dims[1:])) or "labels")
    log.info("extracted and validated %d IDX files to %s in %.1fs", len(headers), args.out, time.perf_counter() - started)


if __name__ == "__main__":
    run_stage(main)
