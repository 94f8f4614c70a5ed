"""The IDX file format of MNIST: parsing and validation, shared by the extract and convert stages.

An IDX file is a big-endian header (magic, then one uint32 per dimension) followed by uint8 data.
Magic 2051 = images (n, rows, cols); magic 2049 = labels (n,).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_transfer.errors import StageError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGE_SIDE_PX = 28
N_CLASSES = 10

# split name → (images file, labels file), as the data/jpg folders and the IDX files are named
SPLITS = {
    "training": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "testing": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IdxError(StageError, ValueError):
    """An IDX file is malformed; the message names the file."""


@dataclass(frozen=True)
class IdxHeader:
    magic: int
    dims: tuple[int, ...]

    @property
    def header_bytes(self) -> int:
        return 4 + 4 * len(self.dims)

    @property
    def expected_file_bytes(self) -> int:
        return self.header_bytes + int(np.prod(self.dims))


def parse_header(payload: bytes, name: str) -> IdxHeader:
    """Parse and check the header of an MNIST IDX file (images or labels)."""
    if len(payload) < 8:
        raise IdxError(f"{name}: only {len(payload)} bytes, too short for an IDX header")
    (magic,) = struct.unpack(">I", payload[:4])
    if magic == IMAGES_MAGIC:
        n_dims = 3
    elif magic == LABELS_MAGIC:
        n_dims = 1
    else:
        raise IdxError(f"{name}: bad magic number {magic} (expected {IMAGES_MAGIC} images or {LABELS_MAGIC} labels)")
    if len(payload) < 4 + 4 * n_dims:
        raise IdxError(f"{name}: truncated header")
    dims = struct.unpack(f">{n_dims}I", payload[4 : 4 + 4 * n_dims])
    if magic == IMAGES_MAGIC and dims[1:] != (IMAGE_SIDE_PX, IMAGE_SIDE_PX):
        raise IdxError(f"{name}: images are {dims[1]}x{dims[2]}, expected {IMAGE_SIDE_PX}x{IMAGE_SIDE_PX}")
    return IdxHeader(magic=magic, dims=tuple(dims))


def validate_idx(path: Path, name: str | None = None, expected_count: int | None = None) -> IdxHeader:
    """Check magic, dimensions, item count, exact length and (for labels) the label range of a file."""
    name = name or str(path)
    with open(path, "rb") as handle:
        header = parse_header(handle.read(16), name)
    size_bytes = path.stat().st_size
    if expected_count is not None and header.dims[0] != expected_count:
        raise IdxError(f"{name}: holds {header.dims[0]} items, expected {expected_count}")
    if size_bytes != header.expected_file_bytes:
        raise IdxError(
            f"{name}: {size_bytes} bytes, but its header {header.dims} implies {header.expected_file_bytes} "
            "(truncated or padded file)"
        )
    if header.magic == LABELS_MAGIC:
        labels = np.fromfile(path, dtype=np.uint8, offset=header.header_bytes)
        if labels.size and labels.max() >= N_CLASSES:
            raise IdxError(f"{name}: label {labels.max()} out of range 0..{N_CLASSES - 1}")
    return header


def check_split_counts(images: IdxHeader, labels: IdxHeader, split: str) -> None:
    """Images and labels of one split must pair up one to one."""
    if images.magic != IMAGES_MAGIC or labels.magic != LABELS_MAGIC:
        raise IdxError(f"{split}: expected an images file and a labels file, got magics {images.magic}/{labels.magic}")
    if images.dims[0] != labels.dims[0]:
        raise IdxError(f"{split}: {images.dims[0]} images but {labels.dims[0]} labels")


def read_images(path: Path) -> np.ndarray:
    """Load a validated images file as uint8 (n_images, 28, 28)."""
    header = validate_idx(path)
    if header.magic != IMAGES_MAGIC:
        raise IdxError(f"{path}: is a labels file, expected images")
    return np.fromfile(path, dtype=np.uint8, offset=header.header_bytes).reshape(header.dims)


def read_labels(path: Path) -> np.ndarray:
    """Load a validated labels file as uint8 (n_images,)."""
    header = validate_idx(path)
    if header.magic != LABELS_MAGIC:
        raise IdxError(f"{path}: is an images file, expected labels")
    return np.fromfile(path, dtype=np.uint8, offset=header.header_bytes)


def encode_idx(array: np.ndarray) -> bytes:
    """Encode uint8 images (n, 28, 28) or labels (n,) as IDX bytes (the inverse of read_*)."""
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
