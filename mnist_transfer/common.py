"""Helpers shared by several stages: params loading, atomic writes, hashing, logging setup."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

PARAMS_FILE = Path("params.yaml")
DEBUG_ENV = "MNIST_TRANSFER_DEBUG"  # =1: stages show tracebacks instead of one-line errors
# errno of a failed write → what the user can do about it
WRITE_FAILURES = {
    errno.ENOSPC: "free some space on that disk",
    errno.EDQUOT: "free some space within your disk quota",
    errno.EFBIG: "the file outgrew the filesystem's limit: write to another disk",
    errno.EROFS: "the filesystem is read-only: make it writable",
}


UMASK = os.umask(0o022)
os.umask(UMASK)


class StageError(Exception):
    """An error the user can act on: its message names the file or parameter and says what to do."""


class ParamsError(StageError, ValueError):
    """A params.yaml value is missing or invalid."""


class DataError(StageError, ValueError):
    """An input file is missing, malformed or inconsistent."""


class OutputWriteError(StageError, OSError):
    """An output could not be written: the disk is full, a quota is exceeded, the filesystem is read-only."""


def load_params(section: str, params_file: Path = PARAMS_FILE) -> dict[str, Any]:
    """One section of params.yaml as plain values, after validating the whole file against the schema."""
    from mnist_transfer.params import read_params  # imported here: params.py imports this module

    params = read_params(params_file)
    if section not in type(params).model_fields:
        raise ParamsError(f"no section '{section}' in the params schema (mnist_transfer/params.py)")
    return getattr(params, section).model_dump()


@contextlib.contextmanager
def atomic_path(final_path: Path) -> Iterator[Path]:
    """Yield a temporary path beside final_path; rename it into place only if the block succeeds.

    A full disk (or quota, read-only filesystem) while writing becomes an OutputWriteError naming
    final_path; the temporary file is removed and whatever was at final_path stays as it was.
    """
    tmp_path: Path | None = None
    try:
        final_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=".partial", dir=final_path.parent)
        os.close(fd)
        tmp_path = Path(tmp_name)
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~UMASK)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp_path, final_path)
    except OSError as error:
        if error.errno not in WRITE_FAILURES:
            raise
        raise OutputWriteError(
            f"cannot write {final_path}: {error.strerror or error}; nothing partial was left and "
            f"{final_path.name} stays as it was: {WRITE_FAILURES[error.errno]}, then rerun"
        ) from error
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def sha256_bytes(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def write_placeholder(folder: Path, note: str) -> None:
    """Replace folder by one holding only README.txt: a DVC output with nothing to hold for this data source."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "README.txt").write_text(note.rstrip() + "\n", encoding="utf-8")


def run_stage(main: Callable[[], None], params_file: Path = PARAMS_FILE) -> None:
    """Validate the whole params file, then run a stage's main(); any error ends it in one line, exit status 1.

    A bad value anywhere in params.yaml stops every stage before it does any work. Tracebacks are kept
    for debugging: set MNIST_TRANSFER_DEBUG=1.
    """
    from mnist_transfer.params import read_params  # imported here: params.py imports this module

    setup_logging()
    try:
        read_params(params_file)
        main()
    except Exception as error:  # the user gets one line; the traceback is one env var away
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        logging.getLogger(stage_name(main)).error("%s", failure_message(error))
        sys.exit(1)


def stage_name(main: Callable[[], None]) -> str:
    """'train' for stages/train.py's main, also when it runs as `python -m stages.train` (module __main__)."""
    module = main.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec else Path(sys.argv[0]).stem
    return module.rsplit(".", 1)[-1]


def failure_message(error: Exception) -> str:
    """One line for a failed stage: the message of errors a user can act on, a pointer to the traceback for bugs."""
    if isinstance(error, (StageError, OSError)):
        return str(error)
    return (
        f"unexpected {type(error).__name__}: {error} (likely a bug: rerun with {DEBUG_ENV}=1 "
        "for the traceback and report it)"
    )


def setup_logging() -> None:
    """Log milestones as 'stage: message' lines; called from main() only, never at import."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for chatty in ("tornado", "absl"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
