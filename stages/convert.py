"""Convert the MNIST IDX files to verified grayscale JPGs in one folder per digit, plus a manifest.

Reads data/idx/*-ubyte and params `data.limit_per_class`, `data.jpeg_quality`, `data.convert_workers`
→ writes data/jpg/{training,testing}/<digit>/<index>.jpg and data/jpg/manifest.csv.

Thin DVC entry point: the work is done in mnist_transfer.convert.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from mnist_transfer.common import load_params, run_stage, setup_logging
from mnist_transfer.convert import convert_all, write_manifest
from mnist_transfer.idx import SPLITS

log = logging.getLogger("convert")


def main() -> None:
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idx", type=Path, required=True, help="folder of IDX files (data/idx)")
    parser.add_argument("--out", type=Path, required=True, help="JPG root (data/jpg)")
    parser.add_argument("--manifest", type=Path, required=True, help="manifest CSV (data/jpg/manifest.csv)")
    args = parser.parse_args()
    params = load_params("data")
    started = time.perf_counter()
    rows = convert_all(
        idx_dir=args.idx,
        out_dir=args.out,
        limit_per_class=params.get("limit_per_class"),
        quality=int(params.get("jpeg_quality", 95)),
        workers=int(params.get("convert_workers") or os.cpu_count() or 1),
    )
    write_manifest(rows, args.manifest)
    for split in SPLITS:
        log.info("%s: %d JPGs", split, sum(row.split == split for row in rows))
    log.info("wrote and verified %d JPGs to %s in %.1fs", len(rows), args.out, time.perf_counter() - started)


if __name__ == "__main__":
    run_stage(main)
