"""Validate params.yaml against the pipeline's schema without running anything.

Prints OK (exit status 0) or one line naming every bad key, its value and what is allowed (exit status 1).
Every stage runs the same check before it does any work, so this tells in a second whether
`dvc repro` / `dvc exp run` would stop on a params error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_transfer.errors import ParamsError
from mnist_transfer.params import PARAMS_FILE, read_params


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", type=Path, default=PARAMS_FILE, metavar="FILE",
        help="the params file to check (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        read_params(args.params)
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.params}: OK")
    return 0
