"""What the commands print: one result line at a time, kept clear of tqdm's progress bar."""

from __future__ import annotations

import sys


def emit(line: str) -> None:
    """One result line on stdout, above the progress bar if one is shown."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
