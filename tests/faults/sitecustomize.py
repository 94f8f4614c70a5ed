"""Fault injection for the end-to-end fault tests: put this folder on PYTHONPATH and set a FAULT_* variable.

Python imports `sitecustomize` at start-up, so every process of a `dvc repro` (DVC itself, the stage
scripts, their Dask workers) gets these faults without a single hook in the product's code:

- FAULT_ENOSPC=<glob>: files whose path matches, opened for writing, fail every write with
  OSError(ENOSPC) and no file name, as a full disk does.
- FAULT_SLOW_WRITES=<glob>=<seconds>: opening such a file for writing first sleeps (widens a kill window).
- FAULT_STORE_FULL=<sqlite path>=<pages>: that database may grow by only <pages> pages per connection
  (SQLite's max_page_count), so a write beyond fails with SQLITE_FULL exactly like a full disk.
- FAULT_SLOW_STORE=<sqlite path>=<seconds>: every INSERT into that database first sleeps.
"""

from __future__ import annotations

import builtins
import errno
import fnmatch
import io
import os
import sqlite3
import time
from typing import Any

_real_open = io.open
_real_connect = sqlite3.connect


class _FullDisk:
    """A writable file whose writes fail like a full disk's."""

    def __init__(self, handle: Any):
        self._handle = handle

    def write(self, _data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def writelines(self, _lines: Any) -> None:
        self.write(b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.close()


def _glob_and_value(variable: str) -> tuple[str, str] | None:
    setting = os.environ.get(variable)
    return tuple(setting.rsplit("=", 1)) if setting else None  # type: ignore[return-value]


def _faulty_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    writing = isinstance(file, (str, bytes, os.PathLike)) and any(flag in mode for flag in "wax+")
    path = os.fsdecode(file) if writing else ""
    slow = _glob_and_value("FAULT_SLOW_WRITES")
    if writing and slow and fnmatch.fnmatch(path, slow[0]):
        time.sleep(float(slow[1]))
    handle = _real_open(file, mode, *args, **kwargs)
    full = os.environ.get("FAULT_ENOSPC")
    return _FullDisk(handle) if writing and full and fnmatch.fnmatch(path, full) else handle


def _faulty_connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
    connection = _real_connect(database, *args, **kwargs)
    path = os.path.abspath(os.fsdecode(database))
    full = _glob_and_value("FAULT_STORE_FULL")
    if full and path == os.path.abspath(full[0]):
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {max(1, pages + int(full[1]))}")
    slow = _glob_and_value("FAULT_SLOW_STORE")
    if slow and path == os.path.abspath(slow[0]):
        delay_s = float(slow[1])

        def slow_inserts(sql: str) -> None:
            if sql.lstrip().upper().startswith("INSERT"):
                time.sleep(delay_s)

        connection.set_trace_callback(slow_inserts)
    return connection


if any(os.environ.get(name) for name in ("FAULT_ENOSPC", "FAULT_SLOW_WRITES")):
    builtins.open = io.open = _faulty_open
if any(os.environ.get(name) for name in ("FAULT_STORE_FULL", "FAULT_SLOW_STORE")):
    sqlite3.connect = _faulty_connect
