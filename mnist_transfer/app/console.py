"""What the commands write: result lines kept clear of tqdm's progress bar, and CSV files that appear whole."""

from __future__ import annotations

import contextlib
import csv
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence

from mnist_transfer.outputs import atomic_path


def emit(line: str) -> None:
    """One result line on stdout, above the progress bar if one is shown."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)


@contextlib.contextmanager
def csv_rows(csv_path: Path | None, columns: Sequence[str]) -> Iterator[Callable[[list[str]], None]]:
    """A row writer into csv_path (the header first; the file appears whole, at the end); a no-op without a path."""
    if csv_path is None:
        yield lambda row: None
        return
    with atomic_path(csv_path) as tmp_path, open(tmp_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        yield writer.writerow
