"""Benchmark: SavedModel vs model.tflite of one exported model folder — size on disk and per-image latency
(batch 1 and batched) on MNIST-like 28×28 digits, each through mnist_transfer.inference.DigitModel.

    python -m benchmarks.tflite [--model data/model] [--batch 64] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.record import add_record_flag, record
from mnist_transfer.models.export import SAVED_MODEL_DIR, TFLITE_FILE


def size_mb(path: Path) -> float:
    files = path.rglob("*") if path.is_dir() else [path]
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def ms_per_image(predict, images: np.ndarray, repeats: int) -> float:
    """Median over repeats of one predict(images) call, per image, after one warm-up call."""
    predict(images)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict(images)
        timings.append(time.perf_counter() - started)
    return 1000 * float(np.median(timings)) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("data/model"), help="exported model folder")
    parser.add_argument("--batch", type=int, default=64, help="images per batched call")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per figure (median)")
    add_record_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mnist_transfer.models.inference import DigitModel

    images = np.random.default_rng(0).integers(0, 256, (args.batch, 28, 28), dtype=np.uint8)
    print(f"{'format':<12}{'size MB':>10}{'ms/image b=1':>15}{f'ms/image b={args.batch}':>16}")
    for label, tflite, path in (("SavedModel", False, args.model / SAVED_MODEL_DIR), ("TFLite", True, args.model / TFLITE_FILE)):
        model = DigitModel.load(args.model, tflite=tflite)
        single = ms_per_image(model.predict, images[:1], args.repeats)
        batched = ms_per_image(model.predict, images, args.repeats)
        print(f"{label:<12}{size_mb(path):>10.1f}{single:>15.2f}{batched:>16.2f}")
        record("tflite", {"size MB": size_mb(path), "ms/image b=1": single, "ms/image batched": batched},
               setup={"format": label, "model": model.identity, "batch": args.batch, "repeats": args.repeats},
               enabled=args.record)


if __name__ == "__main__":
    main()
