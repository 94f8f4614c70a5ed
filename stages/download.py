"""Download the four MNIST .gz files from the first mirror that serves them intact.

Reads params `data.mirrors`, `data.files` (name, bytes, sha256), `data.download` → writes data/raw/*.gz.
With `data.source: kaggle` there is nothing to download: data/raw holds only a note.

Thin DVC entry point: the work is done in mnist_transfer.download.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

from mnist_transfer.data.download import RetryPolicy, download_all, expected_files
from mnist_transfer.outputs import write_placeholder
from mnist_transfer.params import Params
from mnist_transfer.runner import run_stage

log = logging.getLogger("download")


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for the .gz files (data/raw)")
    args = parser.parse_args()
    if params.data.source == "kaggle":  # the convert stage reads Kaggle's CSVs from data.kaggle_dir
        write_placeholder(args.out, "data.source is kaggle: no MNIST files downloaded.")
        log.info("data.source is kaggle: nothing to download")
        return
    download = params.data.download
    retry = RetryPolicy(download.attempts, download.backoff_s, download.timeout_s)
    files = expected_files(params.data.files)
    if args.out.exists():
        shutil.rmtree(args.out)  # never mix files of an earlier data version with this one
    started = time.perf_counter()
    sources = download_all(files, params.data.mirrors, args.out, retry)
    for name, mirror in sources.items():
        log.info("%s verified (sha256) from %s", name, mirror)
    log.info("downloaded %d files to %s in %.1fs", len(sources), args.out, time.perf_counter() - started)


if __name__ == "__main__":
    run_stage(main)
