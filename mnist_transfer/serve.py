"""Serve the draw-a-digit page and its JSON API on the exported models.

    mnist-transfer serve [--host 127.0.0.1] [--port 8000] [--model data/model] [--cnn-model data/cnn]

Open http://127.0.0.1:8000/ to draw a digit or upload a photo, see what each model reads, and teach it
your handwriting (saved under data/own/training/<digit>/ for the next `dvc repro`). The models are loaded
once at start-up; a missing model folder stops the command with what to run first.
API: POST /api/predict (multipart `image`), POST /api/own (`image`, `digit`, optional `split`), GET /healthz.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mnist_transfer.common import StageError

log = logging.getLogger("serve")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--model", type=Path, default=Path("data/model"), help="the transfer model (default data/model)")
    parser.add_argument(
        "--cnn-model", type=Path, default=Path("data/cnn"),
        help="the from-scratch CNN (default data/cnn; skipped with a note if it is not there)",
    )
    parser.add_argument("--own-dir", type=Path, default=Path("data/own"), help="where taught digits go (default data/own)")
    parser.add_argument("--max-upload-mb", type=float, default=5.0, help="largest accepted image (default 5 MB)")


def load_models(transfer_dir: Path, cnn_dir: Path | None) -> dict:
    """The transfer model (required) and the CNN (when exported); each loaded once."""
    from mnist_transfer.inference import DigitModel

    models = {"transfer": DigitModel.load(transfer_dir)}
    if cnn_dir is not None and cnn_dir.is_dir():
        models["cnn"] = DigitModel.load(cnn_dir)
    elif cnn_dir is not None:
        log.info("no CNN at %s (its stage has not run): serving the transfer model alone", cnn_dir)
    return models


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        models = load_models(args.model, args.cnn_model)
    except StageError as error:
        print(f"mnist-transfer serve: {error}", file=sys.stderr)
        return 1
    import uvicorn

    from mnist_transfer.webapp import AppConfig, create_app

    app = create_app(AppConfig(models, args.own_dir, int(args.max_upload_mb * 2**20)))
    for name, model in models.items():
        log.info("%s model: %s", name, model.identity)
    log.info("open http://%s:%d/ (Ctrl+C stops)", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
