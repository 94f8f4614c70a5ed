"""Benchmark: how a model reads synthetic phone photos of MNIST test digits (mnist_transfer.data.photos) after
mnist_transfer.data.normalise.normalise_digit, against the same digits as they are.

For the first N test digits: the plain accuracy (each 28×28 digit through normalise_digit and the model), then
for a clean photo (evenly lit paper) and each case of PHOTO_CASES (lighting gradient, shadow, page edge, …) the
accuracy of the photos through normalise_digit and the model, the difference in points from plain, and how many
photos the normaliser refused ("no digit found": counted as wrong). Then the mean and the worst difference over
the lighting, shadow and edge cases (marked *; the issue asks for them within 3 points of plain). Several
--model folders print one column each. Figures only: nothing is asserted.

    python -m benchmarks.photos --model data/cnn
    python -m benchmarks.photos --model data/cnn data/model --n-images 500
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.numbers import load_test_digits
from benchmarks.record import add_record_flag, record
from mnist_transfer.data.normalise import NoInkError, normalise_digit
from mnist_transfer.data.photos import LIGHTING_SHADOW_EDGE, PAGE_PX, PHOTO_CASES, clean_photo
from mnist_transfer.errors import StageError

DEFAULT_MNIST = Path(__file__).resolve().parents[2] / "shared" / "mnist"
PLAIN, CLEAN = "plain (28×28 as stored)", "clean photo, evenly lit"
TARGET_POINTS = 3.0  # the bar: the lighting, shadow and edge set within this many points of plain


@dataclass(frozen=True)
class Normalised:
    """One row's images after the normaliser: black where it found no digit."""

    pixels: np.ndarray  # uint8 (n, 28, 28)
    accepted: np.ndarray  # bool (n,)
    seconds: float  # normalise only, all images


def normalise_each(images: list[np.ndarray]) -> Normalised:
    """normalise_digit on each image, one by one; a refusal ("no digit found") leaves a black 28×28."""
    started = time.perf_counter()
    pixels, accepted = np.zeros((len(images), 28, 28), np.uint8), np.zeros(len(images), bool)
    for i, image in enumerate(images):
        try:
            pixels[i] = normalise_digit(Image.fromarray(image))
            accepted[i] = True
        except NoInkError:
            pass
    return Normalised(pixels, accepted, time.perf_counter() - started)


def normalised_rows(digits: np.ndarray, seed: int) -> dict[str, Normalised]:
    """Row name → the digits (plain) or their photos (clean, each case) normalised; each photo row draws its
    camera noise from its own stream of `seed`."""
    rows = {PLAIN: normalise_each(list(digits))}
    for number, (name, make) in enumerate({CLEAN: clean_photo, **PHOTO_CASES}.items()):
        rng = np.random.default_rng([seed, number])
        rows[name] = normalise_each([make(digit, rng) for digit in digits])
    return rows


def accuracies(model, rows: dict[str, Normalised], labels: np.ndarray) -> dict[str, float]:
    """Row name → accuracy in % (a refused image counts as wrong)."""
    result, truth = {}, labels.astype(str)
    for name, row in rows.items():
        predicted = np.asarray(model.labels)[model.predict(row.pixels).argmax(axis=1)]
        result[name] = 100.0 * float(((predicted == truth) & row.accepted).mean())
    return result


def print_table(rows: dict[str, Normalised], columns: list[tuple[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Print one line per row (refused, then accuracy and points from plain for each model) and the
    lighting/shadow/edge summary; return, per model, {"mean": points, "worst": points} over that set."""
    name_width = max(len(name) for name in rows) + 2
    header = f"{'case':{name_width}s}{'refused':>8s}" + "".join(f" | {title[:14]:>14s} %  Δ pts" for title, _ in columns)
    print(header)
    print("-" * len(header))
    for name, row in rows.items():
        marked = f"{name} *" if name in LIGHTING_SHADOW_EDGE else name
        line = f"{marked:{name_width}s}{int((~row.accepted).sum()):8d}"
        for _, accuracy in columns:
            points = "" if name == PLAIN else f"{accuracy[name] - accuracy[PLAIN]:+5.1f}"
            line += f" | {accuracy[name]:16.1f}  {points:>5s}"
        print(line)
    print("-" * len(header))
    summary = {}
    for title, accuracy in columns:
        gaps = [accuracy[name] - accuracy[PLAIN] for name in LIGHTING_SHADOW_EDGE]
        summary[title] = {"mean": float(np.mean(gaps)), "worst": float(min(gaps))}
    for key, label in (("mean", "mean Δ of * cases"), ("worst", "worst Δ of * cases")):
        line = f"{label:{name_width}s}{'':8s}"
        for title, _ in columns:
            line += f" | {'':16s}  {summary[title][key]:+5.1f}"
        print(line)
    print(f"* lighting, shadow and edge cases; target: within {TARGET_POINTS:g} points of plain; "
          "refused photos count as wrong")
    return summary


def load_model(model_dir: Path):
    from mnist_transfer.models.inference import DigitModel

    try:
        return DigitModel.load(model_dir)
    except StageError as error:  # no exported model there
        raise SystemExit(f"benchmarks.photos: error: {error}") from error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, nargs="+", action="extend", required=True, metavar="DIR",
                        help="exported model folder(s) (data/cnn, data/model): one column each")
    parser.add_argument("--n-images", type=int, default=1000, metavar="N", help="first N MNIST test digits (default: 1000)")
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, metavar="DIR",
                        help=f"folder with t10k-images/labels-idx*-ubyte(.gz) (default: {DEFAULT_MNIST})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the photos' camera noise (default: 0)")
    add_record_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.n_images < 1:
        parser.error("--n-images must be at least 1")

    models = [load_model(model_dir) for model_dir in args.model]  # fail before the slow part
    images, labels = load_test_digits(args.mnist)
    digits, labels = images[: args.n_images], labels[: args.n_images].astype(int)
    rows = normalised_rows(digits, args.seed)
    n_photos = len(digits) * (len(rows) - 1)
    photo_seconds = sum(row.seconds for name, row in rows.items() if name != PLAIN)

    names = [model.name for model in models]
    titles = [name if names.count(name) == 1 else f"{name} {i + 1}" for i, name in enumerate(names)]
    print(f"{len(digits)} MNIST test digits from {args.mnist}; photos {PAGE_PX}×{PAGE_PX} px, seed {args.seed}")
    for title, model in zip(titles, models):
        print(f"  {title}: {model.identity}")
    print(f"normaliser: {1000 * photo_seconds / n_photos:.1f} ms/photo (one process)")
    columns = [(title, accuracies(model, rows, labels)) for title, model in zip(titles, models)]
    print("accuracy %, and Δ pts: the difference from plain in percentage points")
    summary = print_table(rows, columns)

    for (title, accuracy), model in zip(columns, models):
        figures: dict[str, float | int] = {"plain accuracy %": accuracy[PLAIN]}
        for name, row in rows.items():
            if name != PLAIN:
                figures[f"{name}: accuracy %"] = accuracy[name]
                figures[f"{name}: points vs plain"] = accuracy[name] - accuracy[PLAIN]
            figures[f"{name}: refused"] = int((~row.accepted).sum())
        figures["lighting/shadow/edge mean points vs plain"] = summary[title]["mean"]
        figures["lighting/shadow/edge worst points vs plain"] = summary[title]["worst"]
        figures["normaliser ms per photo"] = 1000 * photo_seconds / n_photos
        record("photos", figures, setup={"images": len(digits), "seed": args.seed, "model": model.identity},
               enabled=args.record)


if __name__ == "__main__":
    main()
