"""Benchmark: the peak memory of every process of each stage, and a head-only experiment's wall time by stage.

For each stage, `dvc repro -s <stage> -f` in a pipeline copy whose data stages have run, sampling the RSS of
every descendant process (psutil, every 50 ms); then a head-only `dvc exp run -S train.learning_rate=…` with
a value that is not in DVC's run-cache, timed per stage from DVC's output and the stage processes' lifetimes.
Make the copy with tests.conftest.copy_pipeline, stand-in params and data.mirrors=[/work/shared/mnist], and
run `dvc repro` there once (it changes that copy: outputs, dvc.lock, an experiment):

    MNIST_FEATURE_STORE=/tmp/store.sqlite python -m benchmarks.memory --repo /tmp/pipeline
    python -m benchmarks.memory --repo /tmp/pipeline --stages bottlenecks label --cold --no-experiment

--cold forces the stages with an empty temporary feature store, so that the embedding stages run the backbone.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from benchmarks.record import add_record_flag, record
from mnist_transfer.features.feature_store import STORE_ENV, default_store_path

SAMPLE_S = 0.05
GIB = 1024**3
GOAL_BYTES = 2 * GIB  # per process (issue 12)
STAGE_LINE = re.compile(r"Running stage '([\w-]+)'")
SHELL_LABEL = "bash "  # process_label of the shell DVC starts a stage's cmd in


@dataclass
class ProcessTrace:
    """One process seen under the benchmarked command: what it is, its peak RSS, when it was seen."""

    label: str
    peak_rss: int
    first_s: float
    last_s: float


def process_label(cmdline: list[str]) -> str:
    """A short name: 'python -m stages.label', 'dvc repro', 'Dask worker / pool process', …"""
    joined = " ".join(cmdline)
    if "multiprocessing.spawn" in joined or "multiprocessing-fork" in joined:
        return "spawned child (Dask worker or process pool)"
    if "resource_tracker" in joined:
        return "multiprocessing resource tracker"
    if "-m" in cmdline[:-1]:
        module = cmdline[cmdline.index("-m") + 1]
        return f"dvc {cmdline[cmdline.index('-m') + 2]}" if module == "dvc" else f"python -m {module}"
    return " ".join(Path(part).name if i == 0 else part for i, part in enumerate(cmdline[:2]))


class TreeSampler(threading.Thread):
    """Samples the RSS of a process and all of its descendants every SAMPLE_S until stop()."""

    def __init__(self, root_pid: int):
        super().__init__(daemon=True)
        self.root = psutil.Process(root_pid)
        self.started = time.perf_counter()
        self.traces: dict[int, ProcessTrace] = {}
        self.peak_total = 0  # the largest sum of RSS over the tree at one instant
        self.totals: list[tuple[float, int]] = []  # (seconds since start, RSS summed over the tree) per sample
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            now = time.perf_counter() - self.started
            self.totals.append((now, sum(self._sample(process, now) for process in processes)))
            self.peak_total = max(self.peak_total, self.totals[-1][1])
            self._stop_event.wait(SAMPLE_S)

    def _sample(self, process: psutil.Process, now: float) -> int:
        try:
            rss = process.memory_info().rss
            if process.pid not in self.traces:
                self.traces[process.pid] = ProcessTrace(process_label(process.cmdline()), rss, now, now)
            elif self.traces[process.pid].label.startswith(SHELL_LABEL):  # DVC's shell execs the stage: same pid
                self.traces[process.pid].label = process_label(process.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return 0
        trace = self.traces[process.pid]
        trace.peak_rss, trace.last_s = max(trace.peak_rss, rss), now
        return rss

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def run_sampled(command: list[str], repo: Path, env_updates: dict[str, str]) -> tuple[list[tuple[float, str]], TreeSampler, float]:
    """Run command in repo; return its output lines with arrival times (s), the sampler, and the wall time (s)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **env_updates)
    process = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeSampler(process.pid)
    sampler.start()
    lines = [(time.perf_counter() - sampler.started, line.rstrip()) for line in process.stdout]
    status = process.wait()
    wall_s = time.perf_counter() - sampler.started
    sampler.stop()
    if status != 0:
        sys.exit(f"{' '.join(command)} failed ({status}):\n" + "\n".join(line for _, line in lines[-40:]))
    return lines, sampler, wall_s


def print_memory(stage: str, sampler: TreeSampler, wall_s: float, setup: dict | None = None,
                 enabled: bool = True) -> None:
    """One line per kind of process: how many, the largest peak RSS; flags those over GOAL_BYTES. Then records
    the stage's wall time and peaks (setup: the run's settings besides the stage; enabled=False: no record)."""
    kinds: dict[str, list[int]] = {}
    for trace in sampler.traces.values():
        kinds.setdefault(trace.label, []).append(trace.peak_rss)
    print(f"{stage}: {wall_s:.1f} s, peak of the whole process tree {sampler.peak_total / GIB:.2f} GiB")
    for label, peaks in sorted(kinds.items(), key=lambda item: -max(item[1])):
        flag = "  OVER 2 GiB" if max(peaks) > GOAL_BYTES else ""
        print(f"    {len(peaks)} × {label:<45} peak RSS {max(peaks) / GIB:6.2f} GiB{flag}")
    largest = max((trace.peak_rss for trace in sampler.traces.values()), default=0)
    record("memory", {"wall s": wall_s, "whole tree peak GiB": sampler.peak_total / GIB,
                      "largest process peak GiB": largest / GIB},
           setup={"stage": stage, **(setup or {})}, enabled=enabled)


def stage_windows(lines: list[tuple[float, str]], wall_s: float) -> list[tuple[str, float, float]]:
    """(stage, start s, end s): from DVC's 'Running stage' line to the next one or the end (wall_s)."""
    starts = [(seconds, match.group(1)) for seconds, line in lines if (match := STAGE_LINE.search(line))]
    ends = [start_s for start_s, _ in starts[1:]] + [wall_s]
    return [(name, start_s, end_s) for (start_s, name), end_s in zip(starts, ends)]


def stage_times(lines: list[tuple[float, str]], sampler: TreeSampler, wall_s: float) -> list[tuple[str, float, float]]:
    """(name, seconds from DVC's 'Running stage' to the next stage or the end, seconds its own process ran)."""
    rows = []
    for name, start_s, end_s in stage_windows(lines, wall_s):
        own = [t.last_s - t.first_s for t in sampler.traces.values() if t.label == f"python -m stages.{name}"]
        rows.append((name, end_s - start_s, max(own, default=0.0)))
    return rows


def print_experiment(learning_rate: float, lines: list[tuple[float, str]], sampler: TreeSampler, wall_s: float,
                     enabled: bool = True) -> None:
    rows = stage_times(lines, sampler, wall_s)
    print(f"\nhead-only experiment: dvc exp run -S train.learning_rate={learning_rate}: {wall_s:.1f} s in all")
    first_stage_s = next((seconds for seconds, line in lines if STAGE_LINE.search(line)), wall_s)
    print(f"    {'before the first stage (DVC: collect, hash deps)':<52} {first_stage_s:6.1f} s")
    for name, dvc_s, own_s in rows:
        print(f"    {'stage ' + name:<52} {dvc_s:6.1f} s   (its process: {own_s:.1f} s; DVC around it: {dvc_s - own_s:.1f} s)")
    print_memory("head-only experiment", sampler, wall_s, {"empty feature store": False}, enabled)


def fresh_learning_rate() -> float:
    """A train.learning_rate near 0.003 that is not in DVC's run-cache (so a head-only experiment runs train)."""
    return round(0.003 + random.randrange(1, 10**6) * 1e-9, 9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, required=True, help="a pipeline copy whose stages have run once")
    parser.add_argument("--stages", nargs="*", default=None, help="stages to force (default: every stage in dvc.yaml)")
    parser.add_argument("--learning-rate", type=float, default=None, help="head-only experiment (default: a fresh value)")
    parser.add_argument("--no-experiment", action="store_true")
    parser.add_argument("--cold", action="store_true", help="force the stages with an empty feature store (a temporary one)")
    add_record_flag(parser)
    args = parser.parse_args()
    stages = args.stages if args.stages is not None else list(yaml.safe_load((args.repo / "dvc.yaml").read_text())["stages"])
    print(f"peak RSS per process, {os.cpu_count()} cores, {psutil.virtual_memory().total / GIB:.0f} GiB, repo {args.repo}")
    with tempfile.TemporaryDirectory() as scratch:
        store = {STORE_ENV: str(Path(scratch) / "features.sqlite")} if args.cold else {}
        print(f"feature store: {store.get(STORE_ENV, 'as set (' + str(default_store_path()) + ')')}")
        for stage in stages:
            _, sampler, wall_s = run_sampled([sys.executable, "-m", "dvc", "repro", "-s", stage, "-f"], args.repo, store)
            print_memory(stage, sampler, wall_s, {"empty feature store": args.cold}, args.record)
    if not args.no_experiment:
        learning_rate = args.learning_rate or fresh_learning_rate()
        command = [sys.executable, "-m", "dvc", "exp", "run", "-S", f"train.learning_rate={learning_rate}"]
        print_experiment(learning_rate, *run_sampled(command, args.repo, {}), args.record)


if __name__ == "__main__":
    main()
