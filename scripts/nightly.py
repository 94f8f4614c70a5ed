"""Nightly rerun of the pipeline: lock, (pull), `dvc repro`, history row, trend plot, (push), regression check.

    python scripts/nightly.py [--wait SECONDS] [--threshold 0.005] [--no-pull] [--no-push]

Exit codes: 0 success · 1 the pipeline failed (outputs restored to the last good state) ·
3 accuracy dropped by more than --threshold against the last successful run · 75 another run holds the lock.
History: reports/nightly/history.jsonl (one JSON object per run) and reports/nightly/trend.svg.
Logs: logs/nightly/<date>.log (appended).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

EXIT_OK, EXIT_FAILED, EXIT_REGRESSION, EXIT_LOCKED = 0, 1, 3, 75
STAGE_LINE = re.compile(r"^(?:Running stage '(?P<ran>[\w-]+)'|Stage '(?P<skipped>[\w-]+)' didn't change)")

log = logging.getLogger("nightly")


@contextlib.contextmanager
def exclusive_lock(path: Path, wait_s: float) -> Iterator[bool]:
    """Hold an flock on path; yield False if another process holds it for longer than wait_s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.5)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_logged(command: list[str], repo: Path) -> tuple[int, dict[str, float]]:
    """Run command in repo, logging its output; return (exit code, seconds per DVC stage it ran)."""
    durations: dict[str, float] = {}
    current, started = None, time.monotonic()
    process = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        log.info("  %s", line.rstrip())
        match = STAGE_LINE.match(line)
        if match:
            if current:
                durations[current] = round(time.monotonic() - started, 1)
            current, started = match["ran"], time.monotonic()
            if match["skipped"]:
                durations[match["skipped"]] = 0.0
    code = process.wait()
    if current:
        durations[current] = round(time.monotonic() - started, 1)
    return code, durations


def dvc_remote_configured(repo: Path) -> bool:
    listed = subprocess.run([sys.executable, "-m", "dvc", "remote", "list"], cwd=repo, capture_output=True, text=True)
    return listed.returncode == 0 and bool(listed.stdout.strip())


def read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def append_history(path: Path, row: dict) -> None:
    """Append one JSON line; a single write of a complete line, flushed and synced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, sort_keys=True) + "\n")
        handle.flush()


def model_drops(name: str, previous: dict, current: dict, threshold: float) -> list[str]:
    """Lines in `dvc metrics diff` style for one model's overall accuracy and every digit that dropped."""
    drop = previous["accuracy"] - current["accuracy"]
    if drop <= threshold:
        return []
    lines = [f"{name} accuracy   {previous['accuracy']:.4f} -> {current['accuracy']:.4f}   ({-drop:+.4f})"]
    for digit, before in sorted(previous["per_digit"].items()):
        after = current["per_digit"].get(digit)
        if before is not None and after is not None and after < before:
            lines.append(f"{name} digit {digit}    {before:.4f} -> {after:.4f}   ({after - before:+.4f})")
    return lines


def regressions(previous: dict, current: dict, threshold: float) -> list[str]:
    """Drops of the transfer model (top-level figures) and, when both runs have it, of the CNN ("cnn")."""
    lines = model_drops("transfer", previous, current, threshold)
    if previous.get("cnn") and current.get("cnn"):
        lines += model_drops("cnn", previous["cnn"], current["cnn"], threshold)
    return lines


def trend_svg(history: list[dict]) -> str:
    """Accuracy per successful run as a small self-contained SVG line chart."""
    successes = [row for row in history if row["outcome"] == "success"]
    points = [(row["timestamp"][:10], row["accuracy"]) for row in successes]
    cnn_points = [(i, row["cnn"]["accuracy"]) for i, row in enumerate(successes) if row.get("cnn")]
    width, height, pad = 640, 240, 40
    if not points:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"><text x="20" y="40">no successful run yet</text></svg>'
    every = [a for _, a in points] + [a for _, a in cnn_points]
    low = min(every) - 0.01
    high = max(max(every) + 0.01, low + 0.02)
    step = (width - 2 * pad) / max(1, len(points) - 1)
    coords = [(pad + i * step, height - pad - (a - low) / (high - low) * (height - 2 * pad)) for i, (_, a) in enumerate(points)]
    polyline = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#3b7dd8"><title>{d}: {a:.4f}</title></circle>' for (x, y), (d, a) in zip(coords, points))
    cnn_line = " ".join(f"{pad + i * step:.1f},{height - pad - (a - low) / (high - low) * (height - 2 * pad):.1f}" for i, a in cnn_points)
    if cnn_points:
        dots += f'<polyline points="{cnn_line}" fill="none" stroke="#e08a1e" stroke-width="2"/>'
        dots += f'<text x="{width - pad - 150}" y="20" fill="#e08a1e">orange: CNN</text>'

    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">'
        f'<text x="{pad}" y="20">test accuracy per nightly run ({points[0][0]} … {points[-1][0]})</text>'
        f'<text x="4" y="{pad + 4}">{high:.3f}</text><text x="4" y="{height - pad}">{low:.3f}</text>'
        f'<polyline points="{polyline}" fill="none" stroke="#3b7dd8" stroke-width="2"/>{dots}</svg>'
    )


def setup_logging(log_dir: Path) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(message)s")
    for handler in (logging.FileHandler(log_dir / f"{dt.date.today():%Y-%m-%d}.log"), logging.StreamHandler()):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def nightly(repo: Path, args: argparse.Namespace) -> int:
    """One run, under the lock. Returns the exit code."""
    dvc = [sys.executable, "-m", "dvc"]
    history_path = repo / args.history
    remote = dvc_remote_configured(repo)
    if remote and not args.no_pull:
        run_logged([*dvc, "pull", "--allow-missing"], repo)  # a miss only means more to recompute
    started = time.monotonic()
    code, durations = run_logged([*dvc, "repro"], repo)
    row = {
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_rev": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip(),
        "params_hash": hashlib.sha256((repo / "params.yaml").read_bytes()).hexdigest()[:12],
        "stage_seconds": durations,
        "total_seconds": round(time.monotonic() - started, 1),
    }
    if code != 0:
        log.error("dvc repro failed (exit %d); restoring the outputs recorded in dvc.lock", code)
        run_logged([*dvc, "checkout", "--force"], repo)  # the workspace stays at the last good state
        append_history(history_path, row | {"outcome": "failed"})
        return EXIT_FAILED
    metrics = json.loads((repo / args.metrics).read_text(encoding="utf-8"))
    previous = next((r for r in reversed(read_history(history_path)) if r["outcome"] == "success"), None)
    row |= {"outcome": "success", "accuracy": metrics["accuracy"], "per_digit": metrics["per_digit"]}
    if "cnn" in metrics:
        row["cnn"] = {"accuracy": metrics["cnn"]["accuracy"], "per_digit": metrics["cnn"]["per_digit"]}
    append_history(history_path, row)
    (history_path.parent / "trend.svg").write_text(trend_svg(read_history(history_path)), encoding="utf-8")
    if remote and not args.no_push:
        run_logged([*dvc, "push"], repo)
    log.info("test accuracy %.4f%s; stage seconds %s", row["accuracy"],
             f", CNN {row['cnn']['accuracy']:.4f}" if "cnn" in row else "", durations)
    dropped = regressions(previous, row, args.threshold) if previous else []
    if dropped:
        log.error("accuracy dropped by more than %.4f since the last successful run (%s):", args.threshold, previous["timestamp"])
        for line in dropped:
            log.error("  %s", line)
        return EXIT_REGRESSION
    return EXIT_OK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path("."), help="the pipeline's repository")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a running nightly to finish")
    parser.add_argument("--threshold", type=float, default=0.005, help="largest tolerated accuracy drop (fraction)")
    parser.add_argument("--history", type=Path, default=Path("reports/nightly/history.jsonl"))
    parser.add_argument("--metrics", type=Path, default=Path("reports/metrics.json"))
    parser.add_argument("--log-dir", type=Path, default=Path("logs/nightly"))
    parser.add_argument("--no-pull", action="store_true", help="skip `dvc pull` even when a remote is configured")
    parser.add_argument("--no-push", action="store_true", help="skip `dvc push` even when a remote is configured")
    args = parser.parse_args()
    repo = args.repo.resolve()
    setup_logging(repo / args.log_dir)
    with exclusive_lock(repo / ".dvc" / "tmp" / "nightly.lock", args.wait) as acquired:
        if not acquired:
            log.error("another nightly run holds %s (waited %.0fs); exiting", repo / ".dvc/tmp/nightly.lock", args.wait)
            sys.exit(EXIT_LOCKED)
        sys.exit(nightly(repo, args))


if __name__ == "__main__":
    main()
