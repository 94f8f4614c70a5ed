"""Errors a user can act on: each message names the file or parameter at fault and says what to do."""

from __future__ import annotations

DEBUG_ENV = "MNIST_TRANSFER_DEBUG"  # =1: stages and commands show tracebacks instead of one-line errors


class StageError(Exception):
    """An error the user can act on: its message names the file or parameter and says what to do."""


class ParamsError(StageError, ValueError):
    """A params.yaml value is missing or invalid."""


class DataError(StageError, ValueError):
    """An input file is missing, malformed or inconsistent."""


class OutputWriteError(StageError, OSError):
    """An output could not be written: the disk is full, a quota is exceeded, the filesystem is read-only."""


def failure_message(error: Exception) -> str:
    """One line for a failed run: the message of errors a user can act on, a pointer to the traceback for bugs."""
    if isinstance(error, (StageError, OSError)):
        return str(error)
    return (
        f"unexpected {type(error).__name__}: {error} (likely a bug: rerun with {DEBUG_ENV}=1 "
        "for the traceback and report it)"
    )
