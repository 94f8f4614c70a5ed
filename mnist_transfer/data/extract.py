"""Gunzip the MNIST .gz files and validate the IDX files they hold.

Reads data/raw/*.gz and params `data.split_sizes` → writes data/idx/*-ubyte.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import zlib
from pathlib import Path

from mnist_transfer.data.idx import SPLITS, IdxError, IdxHeader, check_split_counts, validate_idx
from mnist_transfer.outputs import atomic_path
from mnist_transfer.params import SplitSizes

log = logging.getLogger("extract")


def gunzip_validated(gz_path: Path, out_path: Path, expected_count: int | None) -> IdxHeader:
    """Stream-decompress gz_path to out_path (atomically) and validate the IDX file it holds."""
    with atomic_path(out_path) as tmp_path:
        try:
            with gzip.open(gz_path, "rb") as source, open(tmp_path, "wb") as dest:
                shutil.copyfileobj(source, dest, length=1 << 20)
        except EOFError as error:
            raise IdxError(f"{gz_path}: truncated gzip stream ({error}); delete it and rerun the download") from error
        except (gzip.BadGzipFile, zlib.error) as error:
            raise IdxError(f"{gz_path}: corrupt gzip data ({error})") from error
        header = validate_idx(tmp_path, name=f"{out_path.name} (from {gz_path})", expected_count=expected_count)
    return header


def extract_all(raw_dir: Path, out_dir: Path, split_sizes: SplitSizes | None) -> dict[str, IdxHeader]:
    """Extract and validate both files of every split; return {IDX file name: header}.

    split_sizes: the image count each split must hold (data.split_sizes); None, or a None count: no check.
    """
    headers = {}
    for split, (images_name, labels_name) in SPLITS.items():
        expected_count = getattr(split_sizes, split) if split_sizes else None
        for name in (images_name, labels_name):
            gz_path = raw_dir / f"{name}.gz"
            if not gz_path.is_file():
                raise FileNotFoundError(f"{gz_path} is missing; run the download stage first (dvc repro download)")
            headers[name] = gunzip_validated(gz_path, out_dir / name, expected_count)
        check_split_counts(headers[images_name], headers[labels_name], split)
    return headers
