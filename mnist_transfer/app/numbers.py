"""`mnist-transfer predict --number`: read a handwritten number (one line of 1–12 digits) in each image.

Each image is split into its digits (mnist_transfer.data.segment: connected components, merged pieces,
touching digits cut where the model is surest), each digit normalised as a single digit is, and read by the
model. One line per image: `path  2026  0.912  model` (the confidence is the product of the digits'), plus
`  unsure (digit 3: 7 0.48, 1 0.41)` for each digit below --min-confidence (its two likeliest digits);
`path  error: reason` for an image that cannot be read, has no ink or more than 12 digit-like parts.

--csv writes one row per digit (a number of n digits gives n rows), CSV_COLUMNS:
  path,number,confidence,model,position,digit,digit_confidence,x0,y0,x1,y1,unsure
with position 0 for the leftmost digit, its box in the image's pixels (x1, y1 exclusive) and unsure 1 or 0.
--save-normalised DIR writes digit k's 28×28 as <DIR>/<input path>.<k>.png.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_transfer.app.console import csv_rows, emit
from mnist_transfer.errors import DataError
from mnist_transfer.outputs import atomic_path

if TYPE_CHECKING:
    from mnist_transfer.data.segment import NumberRead
    from mnist_transfer.models.inference import DigitModel

CSV_COLUMNS = ("path", "number", "confidence", "model", "position", "digit", "digit_confidence",
               "x0", "y0", "x1", "y1", "unsure")


def read_numbers(
    paths: Sequence[Path], model: DigitModel, csv_path: Path | None, save_dir: Path | None, min_confidence: float = 0.0
) -> int:
    """Read and report the number in every image (unsure digits below min_confidence); return how many failed."""
    save = digits_saver(paths, save_dir)
    n_failed = 0
    with csv_rows(csv_path, CSV_COLUMNS) as write_row:
        for path in paths:
            reading, error = read_one(path, model)
            if reading is None:
                emit(f"{path}  error: {error}")
                n_failed += 1
                continue
            emit(number_line(path, reading, model, min_confidence))
            for row in number_rows(path, reading, model, min_confidence):
                write_row(row)
            save(path, reading)
    return n_failed


def read_one(path: Path, model: DigitModel) -> tuple[NumberRead | None, str | None]:
    """(the reading, None), or (None, why not)."""
    from mnist_transfer.data.images import ImageReadError, read_image
    from mnist_transfer.data.segment import read_number

    try:
        return read_number(read_image(path), model.predict, classify_pairs=model.pair_classifier), None
    except ImageReadError as error:
        return None, error.reason
    except DataError as error:  # no ink, too many digits
        return None, str(error)


def number_string(reading: NumberRead, labels: Sequence[str]) -> str:
    return "".join(labels[d.digit] for d in reading.digits)


def number_line(path: Path, reading: NumberRead, model: DigitModel, min_confidence: float) -> str:
    """`path  number  confidence  model`, then `  unsure (digit 3: 7 0.48, 1 0.41; …)` if some digits are."""
    from mnist_transfer.models.calibration import top_two

    line = f"{path}  {number_string(reading, model.labels)}  {reading.confidence:.3f}  {model.name}"
    unsure = [
        f"digit {position + 1}: " + ", ".join(f"{model.labels[k]} {p:.2f}" for k, p in top_two(d.probabilities))
        for position, d in enumerate(reading.digits) if d.confidence < min_confidence
    ]
    return f"{line}  unsure ({'; '.join(unsure)})" if unsure else line


def number_rows(path: Path, reading: NumberRead, model: DigitModel, min_confidence: float) -> list[list[str]]:
    """One CSV row per digit (CSV_COLUMNS)."""
    number = number_string(reading, model.labels)
    return [
        [str(path), number, f"{reading.confidence:.3f}", model.name, str(position), model.labels[d.digit],
         f"{d.confidence:.3f}", *(str(v) for v in d.box), str(int(d.confidence < min_confidence))]
        for position, d in enumerate(reading.digits)
    ]


def digits_saver(paths: Sequence[Path], save_dir: Path | None) -> Callable[[Path, NumberRead], None]:
    """Writes digit k's 28×28 as save_dir/<path relative to the inputs' common folder>.<k>.png."""
    if save_dir is None or not paths:
        return lambda path, reading: None
    from PIL import Image

    base = Path(os.path.commonpath([path.resolve().parent for path in paths]))

    def save(path: Path, reading: NumberRead) -> None:
        relative = path.resolve().relative_to(base)
        for position, digit in enumerate(reading.digits):
            with atomic_path(save_dir / relative.with_name(f"{relative.name}.{position}.png")) as tmp_path:
                Image.fromarray(digit.normalised, mode="L").save(tmp_path, format="PNG")

    return save
