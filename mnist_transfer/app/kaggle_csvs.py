"""Write a pair of Kaggle "Digit Recognizer" CSVs made from MNIST: the competition's format, without an account.

train.csv (`label,pixel0,…,pixel783`) holds the first --train-rows of MNIST's 70,000 images (training, then
testing; shuffled first with --seed), test.csv (`pixel0,…,pixel783`) the next --test-rows, and solution.csv
(`ImageId,Label`) their labels, to score a submission. The defaults give Kaggle's sizes, 42,000 and 28,000.
Put the pair in data.kaggle_dir and run the pipeline with data.source kaggle (docs/kaggle.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from mnist_transfer.data.extract import extract_all
from mnist_transfer.data.idx import SPLITS, read_images, read_labels
from mnist_transfer.data.kaggle import SOLUTION_FILE, TEST_FILE, TRAIN_FILE, write_kaggle_csvs
from mnist_transfer.errors import DataError, StageError


def load_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's 70,000 images (n, 28, 28) and labels, training then testing, from IDX files or their .gz."""
    first_file = SPLITS["training"][0]
    if not (folder / first_file).is_file():
        if not (folder / f"{first_file}.gz").is_file():
            raise DataError(f"{folder}: holds neither MNIST's IDX files ({first_file}, …) nor their .gz")
        with tempfile.TemporaryDirectory() as idx_dir:
            extract_all(folder, Path(idx_dir), {})
            return load_mnist(Path(idx_dir))
    splits = [(read_images(folder / images), read_labels(folder / labels)) for images, labels in SPLITS.values()]
    return np.concatenate([images for images, _ in splits]), np.concatenate([labels for _, labels in splits])


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mnist", type=Path, required=True, help="folder of MNIST's IDX files (data/idx) or .gz files")
    parser.add_argument("--out", type=Path, required=True, help="folder for train.csv, test.csv and solution.csv")
    parser.add_argument("--train-rows", type=int, default=42000, help="rows of train.csv (default: %(default)s)")
    parser.add_argument("--test-rows", type=int, default=28000, help="rows of test.csv (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="shuffle MNIST with this seed first (default: in order)")


def run(args: argparse.Namespace) -> int:
    try:
        images, labels = load_mnist(args.mnist)
        if args.seed is not None:
            order = np.random.default_rng(args.seed).permutation(len(labels))
            images, labels = images[order], labels[order]
        paths = write_kaggle_csvs(images, labels, args.out, args.train_rows, args.test_rows)
    except (StageError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {paths[TRAIN_FILE]} ({args.train_rows} rows), {paths[TEST_FILE]} ({args.test_rows} rows), "
          f"{paths[SOLUTION_FILE]}")
    return 0
