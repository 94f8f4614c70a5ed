"""Benchmark: what normalising already MNIST-like images costs — accuracy with and without
mnist_transfer.normalise.normalise_digit on the official test JPGs, and the normaliser's speed.

Needs an exported model and the test JPGs (<folder>/<digit>/<file>), e.g. after `dvc repro`:

    python -m benchmarks.normalise --model data/model --images data/jpg/testing
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.record import add_record_flag, record
from mnist_transfer.data.normalise import NoInkError, normalise_digit, read_image
from mnist_transfer.data.records import list_images
from mnist_transfer.models.inference import DigitModel


def load_test_images(images_dir: Path, n_images: int | None) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(paths, decoded uint8 (n, 28, 28), labels (n,)) of the first n_images of a <digit>/<file> folder."""
    records = list_images(images_dir, images_dir)[:n_images]
    paths = [images_dir / record.rel_path for record in records]
    pixels = np.stack([np.asarray(read_image(path).convert("L")) for path in paths])
    return paths, pixels, np.array([record.label for record in records])


def normalise_all(paths: list[Path]) -> tuple[np.ndarray, int, float]:
    """(normalised uint8 (n, 28, 28), images without ink (left black), seconds): read + normalise, one by one."""
    started = time.perf_counter()
    normalised, n_no_ink = [], 0
    for path in paths:
        try:
            normalised.append(normalise_digit(read_image(path)))
        except NoInkError:
            normalised.append(np.zeros((28, 28), np.uint8))
            n_no_ink += 1
    return np.stack(normalised), n_no_ink, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("data/model"))
    parser.add_argument("--images", type=Path, default=Path("data/jpg/testing"))
    parser.add_argument("--n-images", type=int, default=None, help="first N test images (default: all)")
    add_record_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    paths, plain, labels = load_test_images(args.images, args.n_images)
    normalised, n_no_ink, seconds = normalise_all(paths)
    model = DigitModel.load(args.model)
    plain_accuracy = float((model.predict(plain).argmax(axis=1) == labels).mean())
    normalised_accuracy = float((model.predict(normalised).argmax(axis=1) == labels).mean())
    changed = np.abs(normalised.astype(int) - plain.astype(int))
    n = len(paths)
    print(f"{n} test JPGs from {args.images}, model {model.identity}")
    print(f"accuracy as stored      : {100 * plain_accuracy:6.2f} %")
    print(f"accuracy normalised     : {100 * normalised_accuracy:6.2f} %  "
          f"({100 * (normalised_accuracy - plain_accuracy):+.2f} points; {n_no_ink} images found without ink)")
    print(f"pixels changed          : mean {changed.mean():.2f} grey levels, "
          f"{(changed.max(axis=(1, 2)) > 64).mean() * 100:.1f} % of images moved or reshaped (a pixel off by > 64)")
    print(f"normaliser              : {n / seconds:8.1f} images/s (read + normalise, one process)")
    record("normalise", {"accuracy as stored %": 100 * plain_accuracy,
                         "accuracy normalised %": 100 * normalised_accuracy, "images without ink": n_no_ink,
                         "mean pixel change grey levels": changed.mean(),
                         "images moved or reshaped %": (changed.max(axis=(1, 2)) > 64).mean() * 100,
                         "normaliser images/s": n / seconds},
           setup={"images": n, "model": model.identity}, enabled=args.record)


if __name__ == "__main__":
    main()
