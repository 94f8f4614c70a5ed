"""Save a benchmark's figures as a stamped JSON record, which the docs' Benchmarks page renders (docs/benchmarks.md).

Each run appends one record to docs/benchmarks/<benchmark>.json (a JSON list, oldest first):

    {"benchmark": "bottlenecks", "commit": "29e8307", "dirty": false, "date": "2026-12-02T04:40:14+00:00",
     "machine": {"cpu": "AMD EPYC 7B13", "cores": 2, "memory_gib": 24.0}, "setup": {...}, "figures": {...}}

A benchmark calls it once, after printing its figures:

    record("bottlenecks", {"raw images/s": raw, "warm images/s": warm}, setup={"image size px": args.image_size})

A benchmark's parser gets --no-record through add_record_flag(parser), and passes enabled=args.record, so that a
trial run prints its figures without writing a record.

The stamp is taken here, never typed in: the commit from git (dirty when the working tree has changes), the
date in UTC, the CPU model from /proc/cpuinfo (platform.processor() elsewhere) and the core count.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mnist_transfer.outputs import atomic_path

REPO_ROOT = Path(__file__).resolve().parent.parent
RECORDS_DIR = REPO_ROOT / "docs" / "benchmarks"
UNKNOWN = "unknown"


def git_commit(repo: Path = REPO_ROOT) -> tuple[str, bool]:
    """(short commit hash, whether the working tree differs from it); ("unknown", False) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return UNKNOWN, False
    return commit, bool(status.strip())


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name ('AMD EPYC 7B13'), or platform.processor() where there is no /proc/cpuinfo."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or UNKNOWN


def memory_gib() -> float | None:
    """Physical memory in GiB (one decimal), or None where sysconf does not say."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def machine() -> dict[str, Any]:
    """The stamp of this machine: CPU model, cores, memory."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": memory_gib()}


def plain(value: Any) -> Any:
    """A figure as JSON: numpy scalars to Python numbers, floats to 4 significant digits, paths to strings."""
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    return str(value)


def make_record(benchmark: str, figures: Mapping[str, Any], setup: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One stamped record: benchmark, commit, dirty, date (UTC), machine, setup, figures."""
    commit, dirty = git_commit()
    return {
        "benchmark": benchmark,
        "commit": commit,
        "dirty": dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "setup": {key: plain(value) for key, value in (setup or {}).items()},
        "figures": {key: plain(value) for key, value in figures.items()},
    }


def add_record_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --no-record to a benchmark's parser: args.record is True unless it is given."""
    parser.add_argument("--no-record", dest="record", action="store_false",
                        help="print the figures only: append no record to docs/benchmarks/<benchmark>.json")
    return parser


def record(benchmark: str, figures: Mapping[str, Any], setup: Mapping[str, Any] | None = None,
           records_dir: Path = RECORDS_DIR, enabled: bool = True) -> Path | None:
    """Append one stamped record of figures to records_dir/<benchmark>.json (written atomically); return the file.

    With enabled=False (a benchmark run with --no-record) write nothing and return None.
    """
    return record_all(benchmark, [(figures, setup)], records_dir, enabled)


def record_all(benchmark: str, entries: Sequence[tuple[Mapping[str, Any], Mapping[str, Any] | None]],
               records_dir: Path = RECORDS_DIR, enabled: bool = True) -> Path | None:
    """record() for several (figures, setup) entries of one run at once: one write, one line printed."""
    if not enabled:
        print("not recorded (--no-record)")
        return None
    path = records_dir / f"{benchmark}.json"
    records = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    records.extend(make_record(benchmark, figures, setup) for figures, setup in entries)
    with atomic_path(path) as tmp_path:
        tmp_path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    print(f"recorded in {shown}" + (f" ({len(entries)} records)" if len(entries) > 1 else ""))
    return path
