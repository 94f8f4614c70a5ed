"""Read the digit in each image: photos, scans or drawings in PNG, JPEG, GIF, BMP, TIFF, WebP or HEIC.

Each image is normalised to MNIST's look first (polarity, paper texture, crop, 20 px box, centre of
mass), then labelled by the exported model. One line per image on stdout: `path  digit  confidence  model`,
plus `  unsure (7 0.48, 1 0.41)` (the two likeliest digits) when the confidence is below --min-confidence;
an image that cannot be read or holds no digit gets `path  error: reason` and the others go on.
Confidences are calibrated (the temperature in the model folder's model.json). Without --model, the model
the pipeline measured as better answers: the higher validation accuracy in data/model/model.json and
data/cnn/model.json (a tie, or no model.json at all: data/model); stderr says which and why. With --number,
the number reader data/reader answers (stage train_reader: the CNN with a "not one digit" class), else that rule.

PATH may be a file, a folder (searched recursively for image files) or a quoted glob ('photos/**/*.jpg').
Exit status: 0 all labelled, 1 some images failed, 2 usage error (no PATH, or nothing matched).

examples:
  mnist-transfer predict photo.png
  mnist-transfer predict my_digits/ --csv predictions.csv --save-normalised seen/
  mnist-transfer predict photo.png --model data/cnn --min-confidence 0.9
  mnist-transfer predict --number cheque.jpg --csv digits.csv
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnist_transfer.app.console import csv_rows, emit
from mnist_transfer.data.idx import N_CLASSES
from mnist_transfer.errors import DataError, StageError
from mnist_transfer.models.calibration import DEFAULT_MIN_CONFIDENCE, top_two
from mnist_transfer.outputs import atomic_path

if TYPE_CHECKING:
    from mnist_transfer.models.inference import DigitModel

DEFAULT_MODEL_DIR = Path("data/model")
DEFAULT_MODEL_DIRS = (DEFAULT_MODEL_DIR, Path("data/cnn"))  # without --model: the better of these (ties: the first)
DEFAULT_READER_DIR = Path("data/reader")  # without --model, --number reads with it when it is there
CSV_COLUMNS = ("path", "digit", "confidence", *(f"p{digit}" for digit in range(10)), "model", "unsure")
GLOB_CHARACTERS = frozenset("*?[")
PROGRESS_MIN_IMAGES = 100  # a progress bar (on a terminal) from this many images on
EXIT_FAILED, EXIT_USAGE = 1, 2


@dataclass(frozen=True)
class Outcome:
    """One input image: its normalised 28×28 pixels, or why there are none."""

    path: Path  # as the user named it (or as found in a named folder)
    pixels: np.ndarray | None  # uint8 (28, 28)
    error: str | None = None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (recursive) or globs")
    parser.add_argument("--model", type=Path, metavar="DIR",
                        help="folder of an exported model (default: the better by validation accuracy of "
                             f"{' and '.join(map(str, DEFAULT_MODEL_DIRS))})")
    parser.add_argument("--csv", type=Path, metavar="FILE",
                        help=f"also write {','.join(CSV_COLUMNS[:4])}..p9,model,unsure rows (unsure: 1 or 0)")
    parser.add_argument("--min-confidence", type=min_confidence, default=DEFAULT_MIN_CONFIDENCE, metavar="P",
                        help="mark answers whose calibrated confidence is below P (0 ≤ P < 1) as unsure, with the "
                             f"two likeliest digits (default {DEFAULT_MIN_CONFIDENCE}: below it, the model is more "
                             "likely wrong than right; 0 marks none)")
    parser.add_argument("--save-normalised", type=Path, metavar="DIR",
                        help="write the 28×28 image the model saw, as <DIR>/<input path>.png")
    parser.add_argument("--tflite", action="store_true",
                        help="run the folder's model.tflite (TFLite interpreter) instead of its SavedModel; without "
                             "--model, of the default folders those that have one (the CNN's always does, the "
                             "transfer model's with train.tflite: true)")
    parser.add_argument("--number", action="store_true",
                        help="each image holds a number (one line of 1-12 digits): print `path  2026  0.912  model` "
                             "(the confidence: the digits' product); --csv then writes one row per digit, "
                             "path,number,confidence,model,position,digit,digit_confidence,x0,y0,x1,y1,unsure, and "
                             "--save-normalised digit k's 28×28 as <DIR>/<input path>.<k>.png")


def min_confidence(text: str) -> float:
    """--min-confidence's value: a number with 0 ≤ P < 1 (argparse turns the error into a usage error, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number with 0 ≤ P < 1 (a calibrated confidence), got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    paths, unmatched = expand_inputs(args.paths)
    if not paths:
        print(f"mnist-transfer predict: error: no image file matches {' '.join(args.paths)}", file=sys.stderr)
        return EXIT_USAGE
    from mnist_transfer.models.export import TFLITE_FILE
    from mnist_transfer.models.inference import DigitModel, default_model_dir

    # --tflite: the default folders that have one (if none has, DigitModel.load says why)
    candidates = [folder for folder in DEFAULT_MODEL_DIRS if not args.tflite or (folder / TFLITE_FILE).is_file()]
    candidates = candidates or list(DEFAULT_MODEL_DIRS)
    try:
        model_dir, reason = (args.model, None) if args.model is not None else default_model_dir(candidates)
        if args.number and args.model is None:
            model_dir, reason = number_model_dir(model_dir, reason, args.tflite)
        model = DigitModel.load(model_dir, tflite=args.tflite)
    except StageError as error:
        print(f"mnist-transfer predict: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    if len(model.labels) != N_CLASSES and not args.number:
        print(f"mnist-transfer predict: error: {model_dir} is a number reader ({len(model.labels)} classes, one "
              "of them 'not one digit'): read numbers with it (--number), or digits with data/model or data/cnn",
              file=sys.stderr)
        return EXIT_USAGE
    if reason:
        print(f"mnist-transfer predict: {reason}", file=sys.stderr)
    for argument in unmatched:
        emit(f"{argument}  error: no such file or folder, or no match")
    if args.number:  # mnist_transfer.app.numbers: segmentation, then the same model on each digit
        from mnist_transfer.app.numbers import read_numbers

        n_failed = read_numbers(paths, model, args.csv, args.save_normalised, args.min_confidence)
    else:
        n_failed = label_all(paths, model, args.csv, args.save_normalised, args.min_confidence)
    print(f"labelled {len(paths) - n_failed} of {len(paths)} images with {model.name} ({model.identity})"
          + (f"; {n_failed} failed" if n_failed else "")
          + (f"; {len(unmatched)} PATH arguments matched nothing" if unmatched else ""), file=sys.stderr)
    return EXIT_FAILED if n_failed or unmatched else 0


def number_model_dir(digit_model_dir: Path, reason: str | None, tflite: bool) -> tuple[Path, str]:
    """--number without --model: the number reader when it is there (with --tflite, when it has one), else the
    digit model chosen by the default rule, saying so."""
    from mnist_transfer.models.export import LABELS_FILE, TFLITE_FILE

    if (DEFAULT_READER_DIR / (TFLITE_FILE if tflite else LABELS_FILE)).is_file():
        return DEFAULT_READER_DIR, f"reading numbers with the number reader {DEFAULT_READER_DIR}"
    return digit_model_dir, (f"no number reader in {DEFAULT_READER_DIR} (`dvc repro train_reader` writes it): "
                             f"reading numbers with {digit_model_dir}; {reason}")


def expand_inputs(arguments: Sequence[str]) -> tuple[list[Path], list[str]]:
    """(image files, each once, in argument order; the arguments that matched nothing)."""
    found: dict[Path, Path] = {}  # resolved → as named
    unmatched = []
    for argument in arguments:
        matches = paths_for(argument)
        if not matches:
            unmatched.append(argument)
        for path in matches:
            found.setdefault(path.resolve(), path)
    return list(found.values()), unmatched


def paths_for(argument: str) -> list[Path]:
    """A file as is, a folder's image files (recursive, sorted), a glob's matches; [] if none."""
    path = Path(argument)
    if path.is_file():
        return [path]
    if path.is_dir():
        return folder_images(path)
    if GLOB_CHARACTERS.isdisjoint(argument):
        return []
    matches = [Path(match) for match in sorted(glob.glob(argument, recursive=True))]
    return [image for match in matches for image in ([match] if match.is_file() else folder_images(match))]


def folder_images(folder: Path) -> list[Path]:
    """Files under folder with an image extension read here (.png, .jpg, .heic, …), sorted, hidden ones skipped."""
    from mnist_transfer.data.images import image_extensions

    extensions = image_extensions()
    return sorted(
        path for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in extensions
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def label_all(
    paths: Sequence[Path], model: DigitModel, csv_path: Path | None, save_dir: Path | None, min_confidence: float = 0.0
) -> int:
    """Normalise, label and report every image, a batch at a time (unsure below min_confidence); return how many
    failed."""
    from tqdm import tqdm

    save = normalised_saver(paths, save_dir)
    show_progress = sys.stderr.isatty() and len(paths) >= PROGRESS_MIN_IMAGES
    n_failed = 0
    with csv_rows(csv_path, CSV_COLUMNS) as write_row, tqdm(total=len(paths), unit="image", disable=not show_progress) as progress:
        for start in range(0, len(paths), model.batch_size):
            outcomes = [normalised(path) for path in paths[start : start + model.batch_size]]
            good = [outcome for outcome in outcomes if outcome.error is None]
            probabilities = iter(model.predict(np.stack([o.pixels for o in good])) if good else [])
            for outcome in outcomes:
                if outcome.error is not None:
                    emit(f"{outcome.path}  error: {outcome.error}")
                    n_failed += 1
                    continue
                image_probabilities = next(probabilities)
                row = result_row(outcome.path, image_probabilities, model.labels, model.name, min_confidence)
                emit(result_line(row, image_probabilities, model.labels))
                write_row(row)
                save(outcome)
            progress.update(len(outcomes))
    return n_failed


def normalised(path: Path) -> Outcome:
    from mnist_transfer.data.normalise import ImageReadError, normalise_digit, read_image

    try:
        return Outcome(path, normalise_digit(read_image(path)))
    except ImageReadError as error:
        return Outcome(path, None, error.reason)
    except DataError as error:
        return Outcome(path, None, str(error))


def result_row(
    path: Path, probabilities: np.ndarray, labels: Sequence[str], model_name: str = "", min_confidence: float = 0.0
) -> list[str]:
    """path, digit, confidence, p0..p9, model, unsure (as CSV_COLUMNS; digit is the top digit even when unsure)."""
    best = int(np.argmax(probabilities))
    unsure = bool(probabilities[best] < min_confidence)
    return [str(path), labels[best], f"{probabilities[best]:.3f}", *(f"{p:.6f}" for p in probabilities), model_name,
            str(int(unsure))]


def result_line(row: Sequence[str], probabilities: np.ndarray, labels: Sequence[str]) -> str:
    """`path  digit  confidence  model`, then `  unsure (7 0.48, 1 0.41)` (the two likeliest digits) if unsure."""
    line = "  ".join([*row[:3], row[CSV_COLUMNS.index("model")]])
    if row[CSV_COLUMNS.index("unsure")] != "1":
        return line
    likeliest = ", ".join(f"{labels[k]} {p:.2f}" for k, p in top_two(probabilities))
    return f"{line}  unsure ({likeliest})"


def normalised_saver(paths: Sequence[Path], save_dir: Path | None) -> Callable[[Outcome], None]:
    """Writes an outcome's 28×28 as save_dir/<path relative to the inputs' common folder>.png (unique per input)."""
    if save_dir is None:
        return lambda outcome: None
    from PIL import Image

    base = Path(os.path.commonpath([path.resolve().parent for path in paths]))

    def save(outcome: Outcome) -> None:
        relative = outcome.path.resolve().relative_to(base)
        target = save_dir / relative.with_name(relative.name + ".png")  # 3.jpg and 3.png stay apart
        with atomic_path(target) as tmp_path:
            Image.fromarray(outcome.pixels, mode="L").save(tmp_path, format="PNG")

    return save
