"""Serve the draw-a-digit page and its JSON API on the exported models.

    mnist-transfer serve [--host 127.0.0.1] [--port 8000] [--model data/model] [--cnn-model data/cnn]
                         [--reader-model data/reader] [--min-confidence 0.5]

Open http://127.0.0.1:8000/ to draw a digit or upload a photo, see what each model reads, and teach it
your handwriting (saved under data/own/training/<digit>/ for the next `dvc repro`). The models are loaded
once at start-up; a missing model folder stops the command with what to run first. The answer on top is
the model's the pipeline measured as better (the higher validation accuracy in the folders' model.json;
ties and folders without one: the transfer model); every answer names its model, and one whose calibrated
confidence is below --min-confidence is marked unsure, with its two likeliest digits.
API: POST /api/predict (multipart `image`), POST /api/read-number (multipart `image`: a handwritten number, read
by the number reader data/reader when it is there), POST /api/own (`image`, `digit`, optional `split`), GET /healthz.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_transfer.app.predict import min_confidence
from mnist_transfer.errors import StageError
from mnist_transfer.models.calibration import DEFAULT_MIN_CONFIDENCE

if TYPE_CHECKING:
    from mnist_transfer.models.inference import DigitModel

log = logging.getLogger("serve")

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20  # allocations from 1 MiB on (decoded images, their copies) get their own pages


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--model", type=Path, default=Path("data/model"), help="the transfer model (default data/model)")
    parser.add_argument(
        "--cnn-model", type=Path, default=Path("data/cnn"),
        help="the from-scratch CNN (default data/cnn; skipped with a note if it is not there)",
    )
    parser.add_argument(
        "--reader-model", type=Path, default=Path("data/reader"),
        help="the number reader for POST /api/read-number (default data/reader; without it, the first model reads "
             "numbers)",
    )
    parser.add_argument("--own-dir", type=Path, default=Path("data/own"), help="where taught digits go (default data/own)")
    parser.add_argument("--max-upload-mb", type=float, default=5.0, help="largest accepted image (default 5 MB)")
    parser.add_argument("--min-confidence", type=min_confidence, default=DEFAULT_MIN_CONFIDENCE, metavar="P",
                        help=f"mark answers below this calibrated confidence as unsure (0 ≤ P < 1; default "
                             f"{DEFAULT_MIN_CONFIDENCE})")


def load_models(transfer_dir: Path, cnn_dir: Path | None) -> dict:
    """The transfer model (required) and the CNN (when exported), each loaded once; the one with the higher
    validation accuracy first (it gives the top-level answer; mnist_transfer.models.metadata.choose_model)."""
    from mnist_transfer.models.inference import DigitModel
    from mnist_transfer.models.metadata import choose_model

    models = {"transfer": DigitModel.load(transfer_dir)}
    if cnn_dir is not None and cnn_dir.is_dir():
        models["cnn"] = DigitModel.load(cnn_dir)
    elif cnn_dir is not None:
        log.info("no CNN at %s (its stage has not run): serving the transfer model alone", cnn_dir)
    names = list(models)
    choice = choose_model([(str(models[name].model_dir), models[name].metadata) for name in names])
    log.info("%s", choice.reason)
    first = names[choice.index]
    return {first: models[first], **{name: model for name, model in models.items() if name != first}}


def load_reader(reader_dir: Path) -> DigitModel | None:
    """The number reader (stage train_reader) when it is there; None (with a note) when not."""
    from mnist_transfer.models.inference import DigitModel

    if reader_dir.is_dir():
        return DigitModel.load(reader_dir)
    log.info("no number reader at %s (`dvc repro train_reader` writes it): numbers are read by the first model",
             reader_dir)
    return None


def return_freed_memory_to_the_os() -> bool:
    """Have glibc give large allocations their own pages, so that freeing a decoded upload returns its memory.

    Otherwise glibc raises that threshold as large blocks are freed, and each request thread's arena keeps the
    memory of the largest image it decoded (measured: 8 uploads of 50 Mpx kept +3 GiB, +0.45 GiB with this).
    False where the C library has no mallopt (not glibc).
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    return_freed_memory_to_the_os()
    try:
        models, reader = load_models(args.model, args.cnn_model), load_reader(args.reader_model)
    except StageError as error:
        print(f"mnist-transfer serve: {error}", file=sys.stderr)
        return 1
    import uvicorn

    from mnist_transfer.app.webapp import AppConfig, create_app

    app = create_app(AppConfig(models, args.own_dir, int(args.max_upload_mb * 2**20), args.min_confidence, reader))
    for name, model in {**models, **({"reader": reader} if reader else {})}.items():
        log.info("%s model: %s", name, model.identity)
    log.info("open http://%s:%d/ (Ctrl+C stops)", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
