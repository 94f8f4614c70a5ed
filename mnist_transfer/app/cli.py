"""The `mnist-transfer` command: everything a person runs by hand, as subcommands over the package.

Each subcommand lives in its own module, which provides `configure_parser(parser)` and `run(args) -> int`
(the exit status); this file only wires them together, importing nothing heavy until a subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# subcommand → (module, one-line help); the module's docstring is the subcommand's --help description
SUBCOMMANDS = {
    "serve": ("mnist_transfer.app.serve", "serve the draw-a-digit page and its JSON API on the exported models"),
    "check-params": ("mnist_transfer.app.check_params", "validate params.yaml without running anything"),
    "predict": ("mnist_transfer.app.predict",
                "read the digit (--number: the number) in image files: photos, scans, drawings (normalised first)"),
    "kaggle-csvs": ("mnist_transfer.app.kaggle_csvs", "write a Kaggle Digit Recognizer train.csv/test.csv pair made from MNIST"),
}

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-transfer",
        description="Read handwritten digits with the pipeline's exported models, and check its params.",
        epilog="The pipeline itself runs with `dvc repro`; see README.md and docs/.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(
            name, help=summary, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.configure_parser(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)  # usage errors exit with 2 (argparse)
    sys.exit(args.run(args))
