"""Convert the MNIST IDX files to verified grayscale JPGs in one folder per digit, plus a manifest.

Reads data/idx/*-ubyte and params `data.limit_per_class`, `data.jpeg_quality`, `data.convert_workers`
→ writes data/jpg/{training,testing}/<digit>/<index>.jpg and data/jpg/manifest.csv.
The JPG writing and checking here also serves Kaggle's CSVs (mnist_transfer.kaggle).
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from mnist_transfer.data.idx import IMAGE_SIDE_PX, SPLITS, read_images, read_labels
from mnist_transfer.data.records import sha256_bytes
from mnist_transfer.errors import ParamsError, StageError
from mnist_transfer.outputs import atomic_path

log = logging.getLogger("convert")

MANIFEST_COLUMNS = ("path", "split", "label", "bytes", "sha256")
INDEX_DIGITS = 5  # zero-padded file names (00042.jpg) so that listings sort numerically
CHUNK_IMAGES = 2000
UNLABELLED = "unlabelled"  # folder of images without a label (Kaggle's test.csv): <split>/<index>.jpg
NO_UNLABELLED_NOTE = (
    "data.source is mnist: no unlabelled images. With data.source kaggle, this folder holds one JPG per row of "
    "test.csv, named by its ImageId (00001.jpg is the first row)."
)

Encoder = Callable[[np.ndarray, int], bytes]


class ConvertError(StageError, RuntimeError):
    """A JPG could not be written correctly even after one rewrite."""


@dataclass(frozen=True)
class ManifestRow:
    path: str  # relative to the data/jpg root, e.g. training/7/00042.jpg
    split: str
    label: int | None  # None: unlabelled
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Chunk:
    """A batch of images of one split for one worker."""

    split: str
    out_dir: Path
    indices: np.ndarray  # (n,) positions in the IDX file (rows of a Kaggle CSV)
    labels: np.ndarray | None  # (n,); None: unlabelled images
    pixels: np.ndarray  # (n, 28, 28) uint8
    quality: int


def select_indices(labels: np.ndarray, limit_per_class: int | None) -> np.ndarray:
    """Indices of the first `limit_per_class` images of each digit (all if None), ascending."""
    if limit_per_class is None:
        return np.arange(labels.size)
    if limit_per_class < 1:
        raise ParamsError(f"data.limit_per_class must be null or ≥ 1, got {limit_per_class}")
    keep = np.zeros(labels.size, dtype=bool)
    for digit in np.unique(labels):
        keep[np.flatnonzero(labels == digit)[:limit_per_class]] = True
    return np.flatnonzero(keep)


def jpg_rel_path(split: str, label: int | None, index: int) -> str:
    """<split>/<label>/<index>.jpg, or <split>/<index>.jpg for an unlabelled image."""
    folder = split if label is None else f"{split}/{label}"
    return f"{folder}/{index:0{INDEX_DIGITS}d}.jpg"


def encode_jpg(pixels: np.ndarray, quality: int) -> bytes:
    """Encode one uint8 (28, 28) image as a grayscale JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpg_problem(payload: bytes) -> str | None:
    """Why these bytes are not a valid 28x28 grayscale JPEG, or None if they are."""
    if not payload:
        return "zero bytes"
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image.load()
            if image.format != "JPEG" or image.size != (IMAGE_SIDE_PX, IMAGE_SIDE_PX):
                return f"decodes as {image.format} {image.size[0]}x{image.size[1]}, expected JPEG 28x28"
    except Exception as error:  # PIL raises many types for corrupt data
        return f"does not decode ({error})"
    return None


def write_checked_jpg(path: Path, pixels: np.ndarray, quality: int, encode: Encoder = encode_jpg) -> bytes:
    """Write the JPG, read it back and check it; rewrite once if bad. Return the bytes on disk."""
    problem = None
    for _attempt in range(2):
        with atomic_path(path) as tmp_path:
            tmp_path.write_bytes(encode(pixels, quality))
        on_disk = path.read_bytes()
        problem = jpg_problem(on_disk)
        if problem is None:
            return on_disk
        log.warning("%s: %s; rewriting", path, problem)
    raise ConvertError(f"{path}: still bad after a rewrite: {problem}")


def convert_chunk(chunk: Chunk) -> list[ManifestRow]:
    """Write and verify every JPG of a chunk; return its manifest rows."""
    rows = []
    labels = [None] * chunk.indices.size if chunk.labels is None else [int(label) for label in chunk.labels]
    for index, label, pixels in zip(chunk.indices, labels, chunk.pixels):
        rel_path = jpg_rel_path(chunk.split, label, int(index))
        on_disk = write_checked_jpg(chunk.out_dir / rel_path, pixels, chunk.quality)
        rows.append(ManifestRow(rel_path, chunk.split, label, len(on_disk), sha256_bytes(on_disk)))
    return rows


def bounded_map(pool: ProcessPoolExecutor, function: Callable, items: Iterable, max_in_flight: int) -> Iterator:
    """Results of function over items, in completion order, with at most max_in_flight submitted at a time."""
    pending: set[Future] = set()
    for item in items:  # a lazy iterable (a CSV being read) is consumed only as fast as the pool works
        pending.add(pool.submit(function, item))
        if len(pending) >= max_in_flight:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)
    yield from (future.result() for future in wait(pending).done)


def convert_chunks(chunks: Iterable[Chunk], total_images: int | None, workers: int) -> list[ManifestRow]:
    """Convert chunks in a process pool, two per worker in flight; return the manifest rows sorted by path."""
    rows: list[ManifestRow] = []
    with ProcessPoolExecutor(max_workers=workers) as pool, tqdm(
        total=total_images, unit="img", desc="convert", disable=None
    ) as progress:
        for chunk_rows in bounded_map(pool, convert_chunk, chunks, max_in_flight=2 * workers):
            rows.extend(chunk_rows)
            progress.update(len(chunk_rows))
    return sorted(rows, key=lambda row: row.path)


def split_chunks(split: str, idx_dir: Path, out_dir: Path, limit_per_class: int | None, quality: int) -> list[Chunk]:
    """Cut one split into chunks of at most CHUNK_IMAGES selected images."""
    images_name, labels_name = SPLITS[split]
    images = read_images(idx_dir / images_name)
    labels = read_labels(idx_dir / labels_name)
    selected = select_indices(labels, limit_per_class)
    return [
        Chunk(split, out_dir, part, labels[part], images[part], quality)
        for part in np.array_split(selected, max(1, -(-selected.size // CHUNK_IMAGES)))
        if part.size
    ]


def convert_all(
    idx_dir: Path, out_dir: Path, limit_per_class: int | None, quality: int, workers: int
) -> list[ManifestRow]:
    """Convert both splits with a process pool; return the manifest rows sorted by path."""
    for split in SPLITS:
        shutil.rmtree(out_dir / split, ignore_errors=True)  # no stale JPGs from an earlier limit
        for digit in range(10):
            (out_dir / split / str(digit)).mkdir(parents=True, exist_ok=True)
    chunks = [chunk for split in SPLITS for chunk in split_chunks(split, idx_dir, out_dir, limit_per_class, quality)]
    return convert_chunks(chunks, sum(c.indices.size for c in chunks), workers)


def write_manifest(rows: list[ManifestRow], path: Path) -> None:
    with atomic_path(path) as tmp_path, open(tmp_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(
            (row.path, row.split, "" if row.label is None else row.label, row.bytes, row.sha256) for row in rows
        )


def read_manifest(path: Path) -> list[ManifestRow]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            ManifestRow(r["path"], r["split"], int(r["label"]) if r["label"] else None, int(r["bytes"]), r["sha256"])
            for r in csv.DictReader(handle)
        ]
