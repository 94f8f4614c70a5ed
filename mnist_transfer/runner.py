"""How a stage script runs: params.yaml read and validated once, one log line per milestone, one-line errors."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

from mnist_transfer.errors import DEBUG_ENV, failure_message
from mnist_transfer.params import PARAMS_FILE, Params, read_params


def run_stage(main: Callable[[Params], None], params_file: Path = PARAMS_FILE) -> None:
    """Read and validate the whole params file once, then run a stage's main(params); any error ends it in one
    line, exit status 1.

    A bad value anywhere in params.yaml stops every stage before it does any work. Tracebacks are kept
    for debugging: set MNIST_TRANSFER_DEBUG=1.
    """
    setup_logging()
    try:
        main(read_params(params_file))
    except Exception as error:  # the user gets one line; the traceback is one env var away
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        logging.getLogger(stage_name(main)).error("%s", failure_message(error))
        sys.exit(1)


def stage_name(main: Callable[..., None]) -> str:
    """'train' for stages/train.py's main, also when it runs as `python -m stages.train` (module __main__)."""
    module = main.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec else Path(sys.argv[0]).stem
    return module.rsplit(".", 1)[-1]


def setup_logging() -> None:
    """Log milestones as 'stage: message' lines; called when a stage or command starts, never at import."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for chatty in ("tornado", "absl"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


class PhaseClock:
    """A stage's wall time by phase: "startup" from the process's creation to this clock's (python + imports,
    when made first thing in main), then each lap(phase) from the previous one. seconds: phase → s."""

    def __init__(self) -> None:
        import psutil

        self.seconds: dict[str, float] = {"startup": max(0.0, time.time() - psutil.Process().create_time())}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now

    def describe(self) -> str:
        """'startup 4.1 s, fit 30.2 s, …; 35.0 s in all'"""
        parts = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.seconds.items())
        return f"{parts}; {sum(self.seconds.values()):.1f} s in all"
