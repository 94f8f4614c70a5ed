"""The images of a split folder as records: path relative to the data root, label and content hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mnist_transfer.errors import DataError


def sha256_bytes(payload: bytes) -> str:
    """The content address of an encoded image (the feature store's key)."""
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class ImageRecord:
    rel_path: str  # relative to the data root (data/jpg), e.g. training/3/00013.jpg
    label: int
    sha256: str  # of the encoded file: the feature store's content address


def list_images(split_dir: Path, data_root: Path, required: bool = True) -> list[ImageRecord]:
    """Every image of a split folder (<split>/<digit>/<file>), sorted by path, with label and content hash.

    An absent or empty folder is an error when `required` (the MNIST splits), else no images (own digits).
    """
    records = []
    if not required and not split_dir.is_dir():
        return records
    for path in sorted(split_dir.glob("*/*")):
        if not path.is_file():
            continue
        if not path.parent.name.isdigit():
            raise DataError(f"{path}: the folder name must be the digit (0-9) it holds")
        records.append(ImageRecord(path.relative_to(data_root).as_posix(), int(path.parent.name), sha256_bytes(path.read_bytes())))
    if not records and required:
        raise FileNotFoundError(f"{split_dir} holds no images (<digit>/<file>); run the convert stage first")
    return records
