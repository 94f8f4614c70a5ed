"""Benchmark: mnist_transfer.data.normalise.normalise_digit on real handwritten digits — how many images it
refuses and why, how fast it is, and with an exported model the accuracy per writer and overall.

File names are <writer>__<repo>__<name>_<label>.<ext> (label = the stem's last character), as in the
development set ../shared/real_digits (see its SOURCES.md). Figures only: nothing is asserted.

    python -m benchmarks.real_digits
    python -m benchmarks.real_digits --model data/model
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.record import add_record_flag, record
from mnist_transfer.app.predict import folder_images
from mnist_transfer.data.normalise import normalise_digit, read_image
from mnist_transfer.errors import DataError, StageError

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "real_digits"


@dataclass(frozen=True)
class Normalised:
    """The images the normaliser accepted, with their 28×28 pixels, and why it refused the others."""

    paths: list[Path]
    pixels: np.ndarray  # uint8 (n_accepted, 28, 28)
    refusals: dict[str, list[str]]  # reason → file names
    seconds: float  # read + normalise, all images


def writer_of(path: Path) -> str:
    return path.name.split("__")[0]


def label_of(path: Path) -> str:
    return path.stem[-1]


def normalise_all(paths: list[Path]) -> Normalised:
    """Read and normalise each image, one by one; a refusal (no digit, unreadable) is kept with its reason."""
    started = time.perf_counter()
    accepted, pixels, refusals = [], [], defaultdict(list)
    for path in paths:
        try:
            pixels.append(normalise_digit(read_image(path)))
            accepted.append(path)
        except DataError as error:
            refusals[str(getattr(error, "reason", error))].append(path.name)
    stacked = np.stack(pixels) if pixels else np.zeros((0, 28, 28), np.uint8)
    return Normalised(accepted, stacked, dict(refusals), time.perf_counter() - started)


def predicted_labels(model_dir: Path, pixels: np.ndarray) -> tuple[list[str], str]:
    """(the model's label for each image, the model's identity)."""
    from mnist_transfer.models.inference import DigitModel

    model = DigitModel.load(model_dir)
    probabilities = model.predict(pixels) if len(pixels) else np.zeros((0, len(model.labels)))
    return [model.labels[int(best)] for best in probabilities.argmax(axis=1)], model.identity


def accuracy_by_writer(all_paths: list[Path], predictions: dict[Path, str]) -> dict[str, tuple[int, int]]:
    """writer → (correct, images); a refused image (absent from predictions) counts as wrong."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path in all_paths:
        tally[writer_of(path)][0] += int(predictions.get(path) == label_of(path))
        tally[writer_of(path)][1] += 1
    return {writer: (correct, n) for writer, (correct, n) in sorted(tally.items())}


def print_refusals(result: Normalised, n_images: int) -> int:
    """Print how many images were refused and why; return how many."""
    n_refused = sum(len(names) for names in result.refusals.values())
    print(f"refused                 : {n_refused} of {n_images}")
    for reason, names in sorted(result.refusals.items(), key=lambda item: -len(item[1])):
        print(f"  {len(names):3d} × {reason}: {', '.join(names)}")
    return n_refused


def print_accuracy(by_writer: dict[str, tuple[int, int]]) -> float:
    """Print the accuracy per writer and overall; return the overall accuracy in %."""
    for writer, (correct, n) in by_writer.items():
        print(f"  {writer:28s}: {correct:3d} / {n:3d}  ({100 * correct / n:5.1f} %)")
    correct, n = (sum(column) for column in zip(*by_writer.values()))
    print(f"overall                 : {correct} / {n}  ({100 * correct / n:.1f} %; refused images count as wrong)")
    return 100 * correct / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_FOLDER, help=f"folder (default: {DEFAULT_FOLDER})")
    parser.add_argument("--model", type=Path, default=None, metavar="DIR",
                        help="an exported model folder (data/model, data/cnn): adds accuracy per writer")
    add_record_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not args.images.is_dir():
        parser.error(f"--images {args.images}: no such folder")

    paths = folder_images(args.images)
    result = normalise_all(paths)
    print(f"{len(paths)} images from {args.images} by {len({writer_of(path) for path in paths})} writers")
    print(f"normaliser              : {1000 * result.seconds / max(1, len(paths)):.1f} ms/image (read + normalise, one process)")
    n_refused = print_refusals(result, len(paths))
    figures = {"images": len(paths), "writers": len({writer_of(path) for path in paths}), "refused": n_refused,
               "ms per image": 1000 * result.seconds / max(1, len(paths))}
    setup = {"folder": args.images.name, "model": None}
    if args.model is not None:
        try:
            labels, identity = predicted_labels(args.model, result.pixels)
        except StageError as error:  # no exported model there
            raise SystemExit(f"benchmarks.real_digits: error: {error}") from error
        print(f"accuracy per writer, model {identity}:")
        figures["accuracy overall %"] = print_accuracy(accuracy_by_writer(paths, dict(zip(result.paths, labels))))
        setup["model"] = identity
    record("real_digits", figures, setup=setup, enabled=args.record)


if __name__ == "__main__":
    main()
