"""Normalise your own handwriting (photos, scans) into MNIST-like JPGs for training and a separate report.

Reads data/own/{training,testing}/ and params `data.jpeg_quality` → writes data/jpg/own/training/,
data/jpg/own/testing/ (<digit>/<name>.jpg, 28×28) and data/jpg/own/manifest.csv. No own images: empty folders.

Thin DVC entry point: the work is done in mnist_transfer.own.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

from mnist_transfer.data.own import OWN_SPLITS, normalise_own, own_images, write_own_manifest
from mnist_transfer.params import Params
from mnist_transfer.runner import run_stage

log = logging.getLogger("own")


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--own", type=Path, required=True, help="your images (data/own)")
    parser.add_argument("--out", type=Path, required=True, help="JPG root (data/jpg); writes <out>/own/…")
    parser.add_argument("--manifest", type=Path, required=True, help="data/jpg/own/manifest.csv")
    args = parser.parse_args()
    started = time.perf_counter()
    images = own_images(args.own)
    shutil.rmtree(args.out / "own", ignore_errors=True)
    for split in OWN_SPLITS:  # DVC tracks both folders, even when empty
        (args.out / "own" / split).mkdir(parents=True)
    rows = normalise_own(images, args.own, args.out, quality=params.data.jpeg_quality)
    write_own_manifest(rows, args.manifest)
    for split in OWN_SPLITS:
        log.info("%s: %d of your own digits", split, sum(row[2] == split for row in rows))
    log.info("normalised %d images from %s into %s/own in %.1fs", len(rows), args.own, args.out, time.perf_counter() - started)


if __name__ == "__main__":
    run_stage(main)
