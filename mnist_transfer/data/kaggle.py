"""Kaggle's "Digit Recognizer" CSVs: a validating streaming reader, their conversion to JPG folders, and a
writer of Kaggle-format pairs.

train.csv is `label,pixel0,…,pixel783` (one 28×28 image per row, row-major), test.csv `pixel0,…,pixel783`;
a submission is `ImageId,Label` with ImageId counting data rows of test.csv from 1. With data.source kaggle
the convert stage writes train.csv's rows to data/jpg/training and, a stable hash share of them, to
data/jpg/testing (the labelled holdout), and test.csv's rows to data/jpg/unlabelled/<ImageId>.jpg.
write_kaggle_csvs writes such a pair (`mnist-transfer kaggle-csvs`: from MNIST, a stand-in for the
competition's data, which only a Kaggle account can download), plus solution.csv, the labels of its test rows.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_transfer.data.convert import UNLABELLED, Chunk, ManifestRow, convert_chunks
from mnist_transfer.data.idx import IMAGE_SIDE_PX, N_CLASSES
from mnist_transfer.errors import DataError
from mnist_transfer.outputs import atomic_path

TRAIN_FILE, TEST_FILE, SOLUTION_FILE = "train.csv", "test.csv", "solution.csv"
PIXEL_COLUMNS = tuple(f"pixel{i}" for i in range(IMAGE_SIDE_PX * IMAGE_SIDE_PX))
TRAIN_HEADER = ("label", *PIXEL_COLUMNS)
TEST_HEADER = PIXEL_COLUMNS
SUBMISSION_HEADER = ("ImageId", "Label")
BLOCK_ROWS = 2000  # rows parsed at a time: ~12 MB of int64, whatever the file's size
HOLDOUT_BUCKETS = 10_000  # holdout membership resolution: 0.01 %
COMPETITION = "digit-recognizer"
GET_THE_FILES = (
    "with your own Kaggle account (accept the competition's rules on kaggle.com first, and put your API token in "
    f"~/.kaggle/kaggle.json): `kaggle competitions download -c {COMPETITION}` (pip install kaggle), then "
    "`unzip {zip_name} -d {folder}`; or download them from https://www.kaggle.com/c/digit-recognizer/data. "
    "To try the pipeline without an account, `mnist-transfer kaggle-csvs --mnist FOLDER --out {folder}` writes a "
    "Kaggle-format pair made from MNIST (FOLDER: MNIST's four .gz or IDX files)"
)
_PIXEL_STRINGS = np.array([str(value) for value in range(256)])


class KaggleCsvError(DataError):
    """A Kaggle CSV is missing or malformed; the message names the file, line and column."""


@dataclass(frozen=True)
class CsvBlock:
    """Consecutive data rows of a Kaggle CSV."""

    rows: np.ndarray  # (n,) data row numbers from 1 (row r is line r + 1; for test.csv it is the ImageId)
    labels: np.ndarray | None  # (n,) uint8 digits; None for test.csv
    pixels: np.ndarray  # (n, 28, 28) uint8


def kaggle_files(kaggle_dir: Path) -> tuple[Path, Path]:
    """(train.csv, test.csv) of kaggle_dir; if either is absent, an error that says how to get them."""
    train_csv, test_csv = kaggle_dir / TRAIN_FILE, kaggle_dir / TEST_FILE
    missing = [path.name for path in (train_csv, test_csv) if not path.is_file()]
    if missing:
        archives = sorted(path.name for path in kaggle_dir.glob("*.zip")) if kaggle_dir.is_dir() else []
        found = f" It holds {', '.join(archives)}: unzip it there." if archives else ""
        how = GET_THE_FILES.format(zip_name=f"{COMPETITION}.zip", folder=kaggle_dir)
        raise KaggleCsvError(
            f"data.source is kaggle but {kaggle_dir} lacks {' and '.join(missing)}.{found} Put the competition's "
            f"train.csv and test.csv in {kaggle_dir} (or point data.kaggle_dir at their folder); get them {how}."
        )
    return train_csv, test_csv


def describe_header(header: Sequence[str]) -> str:
    return ",".join([*header[:3], "…", header[-1]])


def file_shape(path: Path) -> tuple[int, bool]:
    """(number of the last line, whether the file ends with a newline), in one streaming pass."""
    n_newlines, last_byte = 0, b""
    with open(path, "rb") as handle:
        first = handle.read(4)
        if not first:
            raise KaggleCsvError(f"{path}: the file is empty (0 bytes); expected a header line and one row per image")
        if first == b"PK\x03\x04":
            raise KaggleCsvError(f"{path}: is a zip archive, not a CSV: unzip it and use the CSV inside")
        handle.seek(0)
        while block := handle.read(1 << 20):
            n_newlines += block.count(b"\n")
            last_byte = block[-1:]
    ends_with_newline = last_byte == b"\n"
    return n_newlines + (0 if ends_with_newline else 1), ends_with_newline


def check_header(path: Path, fields: list[str] | None, expected: tuple[str, ...]) -> None:
    """The header must be exactly `expected`; the error names the first column that differs."""
    fields = fields or []
    if tuple(fields) == expected:
        return
    other = TEST_HEADER if expected == TRAIN_HEADER else TRAIN_HEADER
    if tuple(fields) == other:
        raise KaggleCsvError(
            f"{path}: line 1 is the header of {TEST_FILE if other == TEST_HEADER else TRAIN_FILE}, expected "
            f"{describe_header(expected)}: are {TRAIN_FILE} and {TEST_FILE} swapped?"
        )
    if len(fields) != len(expected):
        raise KaggleCsvError(
            f"{path}: line 1 (header) has {len(fields)} columns, expected {len(expected)}: {describe_header(expected)}"
        )
    column = next(i for i, (found, wanted) in enumerate(zip(fields, expected)) if found != wanted)
    raise KaggleCsvError(
        f"{path}: line 1 (header), column {column + 1}: '{fields[column]}', expected '{expected[column]}' "
        f"(the header must be {describe_header(expected)})"
    )


def truncation_hint(line: int, last_line: int, ends_with_newline: bool, wrong_count: bool) -> str:
    """A note for an error on the file's last line, which is what a cut-short download or unzip leaves."""
    if line != last_line or (ends_with_newline and not wrong_count):
        return ""
    return "; it is the last line and incomplete: the file looks truncated (download or unzip it again)"


def field_problem(value: str, upper: int, what: str) -> str | None:
    """Why one CSV field is not an integer in 0..upper, or None."""
    try:
        number = int(value)
    except ValueError:
        return f"{what} '{value}' is not an integer"
    if not 0 <= number <= upper:
        return f"{what} {number} is outside 0..{upper}"
    return None


def first_bad_field(path: Path, header: tuple[str, ...], block: list[list[str]], lines: list[int]) -> tuple[int, str]:
    """(line, message) of the first field of the block, in file order, that is not a valid value."""
    for fields, line in zip(block, lines):
        for column, value in enumerate(fields):
            is_label = header[column] == "label"
            problem = field_problem(value, N_CLASSES - 1 if is_label else 255, "label" if is_label else "pixel value")
            if problem:
                return line, f"{path}: line {line}, column {column + 1} ({header[column]}): {problem}"
    raise AssertionError("first_bad_field called on a valid block")


def parse_block(path: Path, header: tuple[str, ...], block: list[list[str]], lines: list[int]) -> np.ndarray:
    """The block's fields as int64 (n, columns), all checked to be integers in range; else the first bad one."""
    upper = np.array([N_CLASSES - 1 if name == "label" else 255 for name in header])
    try:
        values = np.array(block, dtype=np.int64)
    except (ValueError, OverflowError):
        values = None
    if values is None or ((values < 0) | (values > upper)).any():
        line, message = first_bad_field(path, header, block, lines)
        raise KaggleCsvError(message + truncation_hint(line, *file_shape(path), wrong_count=False))
    return values


def to_block(values: np.ndarray, first_row: int, labelled: bool) -> CsvBlock:
    rows = np.arange(first_row, first_row + len(values))
    pixels = values[:, 1:] if labelled else values
    labels = values[:, 0].astype(np.uint8) if labelled else None
    return CsvBlock(rows, labels, pixels.astype(np.uint8).reshape(-1, IMAGE_SIDE_PX, IMAGE_SIDE_PX))


def read_kaggle_csv(path: Path, labelled: bool, block_rows: int = BLOCK_ROWS) -> Iterator[CsvBlock]:
    """Stream a validated train.csv (labelled) or test.csv in blocks; KaggleCsvError names line and column."""
    header = TRAIN_HEADER if labelled else TEST_HEADER
    last_line, ends_with_newline = file_shape(path)
    n_rows = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            check_header(path, next(reader, None), header)
            block: list[list[str]] = []
            lines: list[int] = []
            for fields in reader:
                if len(fields) != len(header):
                    hint = truncation_hint(reader.line_num, last_line, ends_with_newline, wrong_count=True)
                    raise KaggleCsvError(
                        f"{path}: line {reader.line_num} has {len(fields)} columns, expected {len(header)} "
                        f"({describe_header(header)}){hint}"
                    )
                block.append(fields)
                lines.append(reader.line_num)
                if len(block) == block_rows:
                    yield to_block(parse_block(path, header, block, lines), n_rows + 1, labelled)
                    n_rows += len(block)
                    block, lines = [], []
            if block:
                yield to_block(parse_block(path, header, block, lines), n_rows + 1, labelled)
                n_rows += len(block)
    except (UnicodeDecodeError, csv.Error) as error:
        raise KaggleCsvError(f"{path}: not a readable CSV text file ({error})") from None
    if n_rows == 0:
        raise KaggleCsvError(f"{path}: holds a header but no data rows")


def in_holdout(pixels: np.ndarray, percentage: float) -> bool:
    """Stable share by content: the image's bytes are hashed, so identical images fall on the same side."""
    bucket = int.from_bytes(hashlib.sha256(pixels.tobytes()).digest()[:8], "big") % HOLDOUT_BUCKETS
    return bucket < percentage / 100 * HOLDOUT_BUCKETS


@dataclass(frozen=True)
class KaggleSource:
    kaggle_dir: Path  # holds train.csv and test.csv
    holdout_percentage: float  # share of train.csv's rows that becomes the labelled test set


def first_per_class(labels: np.ndarray, kept: Counter, limit_per_class: int | None) -> np.ndarray:
    """Mask of the labels to keep so that no digit exceeds limit_per_class over all calls (kept counts)."""
    keep = np.ones(labels.size, dtype=bool)
    if limit_per_class is None:
        return keep
    for position, label in enumerate(labels.tolist()):
        keep[position] = kept[label] < limit_per_class
        kept[label] += int(keep[position])
    return keep


def train_chunks(
    train_csv: Path, source: KaggleSource, out_dir: Path, limit_per_class: int | None, quality: int
) -> Iterator[Chunk]:
    """train.csv's rows as chunks of data/jpg/training, and of data/jpg/testing for the holdout share."""
    kept = {"training": Counter(), "testing": Counter()}
    for block in read_kaggle_csv(train_csv, labelled=True):
        holdout = np.array([in_holdout(pixels, source.holdout_percentage) for pixels in block.pixels])
        for split, in_split in (("training", ~holdout), ("testing", holdout)):
            positions = np.flatnonzero(in_split)
            positions = positions[first_per_class(block.labels[positions], kept[split], limit_per_class)]
            if positions.size:
                rows, labels, pixels = block.rows[positions], block.labels[positions], block.pixels[positions]
                yield Chunk(split, out_dir, rows, labels, pixels, quality)


def test_chunks(test_csv: Path, out_dir: Path, quality: int) -> Iterator[Chunk]:
    """Every row of test.csv (a submission needs them all), as chunks of data/jpg/unlabelled."""
    for block in read_kaggle_csv(test_csv, labelled=False):
        yield Chunk(UNLABELLED, out_dir, block.rows, None, block.pixels, quality)


def convert_kaggle(
    source: KaggleSource, out_dir: Path, limit_per_class: int | None, quality: int, workers: int
) -> list[ManifestRow]:
    """Write the JPG folders of a Kaggle pair; they replace the old ones only once both CSVs have gone through."""
    train_csv, test_csv = kaggle_files(source.kaggle_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".kaggle-", dir=out_dir))  # a bad row half-way leaves nothing behind
    try:
        for split in ("training", "testing"):
            for digit in range(N_CLASSES):
                (staging / split / str(digit)).mkdir(parents=True)
        (staging / UNLABELLED).mkdir()
        total = None if limit_per_class else sum(file_shape(path)[0] - 1 for path in (train_csv, test_csv))
        chunks = itertools.chain(
            train_chunks(train_csv, source, staging, limit_per_class, quality), test_chunks(test_csv, staging, quality)
        )
        rows = convert_chunks(chunks, total, workers)
        for split in ("training", "testing"):
            if not any(row.split == split for row in rows):
                raise KaggleCsvError(
                    f"{train_csv}: no row went to data/jpg/{split} (data.kaggle_holdout_percentage = "
                    f"{source.holdout_percentage}): use more rows or another percentage"
                )
        for split in ("training", "testing", UNLABELLED):
            shutil.rmtree(out_dir / split, ignore_errors=True)
            (staging / split).rename(out_dir / split)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rows


def csv_lines(pixels: np.ndarray, labels: np.ndarray | None) -> Iterator[str]:
    """Kaggle CSV data lines of uint8 (n, 28, 28) images, each prefixed by its label when given."""
    flat = pixels.reshape(len(pixels), -1)
    for position, row in enumerate(flat):
        prefix = f"{labels[position]}," if labels is not None else ""
        yield prefix + ",".join(_PIXEL_STRINGS[row]) + "\n"


def write_csv_file(path: Path, header: Sequence[str], lines: Iterator[str]) -> None:
    with atomic_path(path) as tmp_path, open(tmp_path, "w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(header) + "\n")
        handle.writelines(lines)


def write_kaggle_csvs(
    images: np.ndarray, labels: np.ndarray, out_dir: Path, n_train: int, n_test: int
) -> dict[str, Path]:
    """Write train.csv (the first n_train images), test.csv (the next n_test) and solution.csv (their labels).

    Args:
        images: uint8 (n, 28, 28); labels: (n,) digits.
    """
    if n_train < 1 or n_test < 1 or n_train + n_test > len(images):
        raise ValueError(f"need n_train, n_test ≥ 1 and n_train + n_test ≤ {len(images)}; got {n_train}, {n_test}")
    test = slice(n_train, n_train + n_test)
    paths = {name: out_dir / name for name in (TRAIN_FILE, TEST_FILE, SOLUTION_FILE)}
    write_csv_file(paths[TRAIN_FILE], TRAIN_HEADER, csv_lines(images[:n_train], labels[:n_train]))
    write_csv_file(paths[TEST_FILE], TEST_HEADER, csv_lines(images[test], None))
    solution = (f"{image_id},{label}\n" for image_id, label in enumerate(labels[test], start=1))
    write_csv_file(paths[SOLUTION_FILE], SUBMISSION_HEADER, solution)
    return paths
