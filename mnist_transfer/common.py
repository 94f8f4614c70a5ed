"""Helpers shared by several stages: params loading, atomic writes, hashing, logging setup."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

PARAMS_FILE = Path("params.yaml")


class StageError(Exception):
    """An error the user can act on: its message names the file or parameter and says what to do."""


class ParamsError(StageError, ValueError):
    """A params.yaml value is missing or invalid."""


class DataError(StageError, ValueError):
    """An input file is missing, malformed or inconsistent."""


def load_params(section: str, params_file: Path = PARAMS_FILE) -> dict[str, Any]:
    """Return one top-level section of params.yaml, failing with a clear message if absent."""
    with open(params_file, encoding="utf-8") as handle:
        params = yaml.safe_load(handle) or {}
    if section not in params:
        raise ParamsError(f"{params_file}: section '{section}' is missing")
    return params[section]


@contextlib.contextmanager
def atomic_path(final_path: Path) -> Iterator[Path]:
    """Yield a temporary path beside final_path; rename it into place only if the block succeeds."""
    final_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=".partial", dir=final_path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        os.replace(tmp_path, final_path)
    finally:
        tmp_path.unlink(missing_ok=True)


def sha256_bytes(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(): a StageError (or missing input) ends it with its message, without a traceback."""
    try:
        main()
    except (StageError, FileNotFoundError) as error:
        logging.getLogger(main.__module__.rsplit(".", 1)[-1]).error("%s", error)
        sys.exit(1)


def setup_logging() -> None:
    """Log milestones as 'stage: message' lines; called from main() only, never at import."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for chatty in ("tornado", "absl"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
