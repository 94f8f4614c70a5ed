"""Benchmark: where a head-only experiment's wall time goes, and the share spent fitting (goal ≥ 70 % on full data).

One `dvc exp run -S train.learning_rate=… train` (a head sweep's step; --targets for more stages) with a value
that is not in DVC's run-cache, in a pipeline copy whose stages have run (make it as benchmarks.memory says), timed as benchmarks.memory times it (per stage, from DVC's
output and the stage processes' lifetimes). The train stage's own split comes from its metrics
(reports/train/metrics.json "seconds": stages/train.py's PhaseClock). The parts sum to the wall time:

- DVC and params: the wall time of `dvc exp run` minus the lifetimes of the stage processes;
- the train stage's start-up (python, imports, TensorFlow), loading features, fitting, calibration, export;
- other: the rest of the train process and the other stages' processes (label, report, …).

    python -m benchmarks.experiment --repo /tmp/pipeline [--targets train]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.memory import fresh_learning_rate, print_experiment, run_sampled, stage_times
from benchmarks.record import add_record_flag, record

TRAIN_METRICS = Path("reports/train/metrics.json")  # dvc.yaml's metrics file of the train stage
TRAIN_PARTS = {  # a part of the split → the train stage's phases it sums (stages/train.py)
    "start-up (python, imports, TensorFlow)": ("startup", "import_tensorflow"),
    "loading features": ("load_features",),
    "fitting": ("fit",),
    "calibration": ("calibrate",),
    "SavedModel export": ("export",),
}
DVC_PART, OTHER_PART = "DVC and params", "other"
GOAL_FIT_SHARE = 0.70  # of a head-only experiment's wall time, on full data (issue 20)


def experiment_split(wall_s: float, process_s: dict[str, float], train_s: dict[str, float]) -> dict[str, float]:
    """The experiment's wall time in parts that sum to wall_s (DVC_PART, TRAIN_PARTS, OTHER_PART).

    Args:
        process_s: stage name → seconds its process ran.
        train_s: the train stage's phase → seconds (its metrics' "seconds").
    """
    parts = {DVC_PART: wall_s - sum(process_s.values())}
    parts |= {part: sum(train_s.get(phase, 0.0) for phase in phases) for part, phases in TRAIN_PARTS.items()}
    parts[OTHER_PART] = wall_s - sum(parts.values())
    return parts


def train_phase_seconds(repo: Path) -> dict[str, float]:
    """The train stage's phase → seconds, from the metrics it wrote in repo."""
    seconds = json.loads((repo / TRAIN_METRICS).read_text(encoding="utf-8")).get("seconds")
    if not seconds:
        sys.exit(f"{repo / TRAIN_METRICS} has no 'seconds': the train stage did not run, or predates its phase timing")
    return seconds


def split_lines(parts: dict[str, float], wall_s: float, other_stages: list[str]) -> list[str]:
    """One line per part (seconds and share of wall_s), then the share spent fitting against the goal."""
    names = {OTHER_PART: f"{OTHER_PART} (rest of train; stages {', '.join(other_stages) or '—'})"}
    lines = [f"    {names.get(part, part):<52} {seconds:6.1f} s  {seconds / wall_s:6.1%}"
             for part, seconds in parts.items()]
    fit_share = parts["fitting"] / wall_s
    verdict = "met" if fit_share >= GOAL_FIT_SHARE else "not met"
    return [*lines, f"    fitting share {fit_share:.1%} (goal ≥ {GOAL_FIT_SHARE:.0%} on full data: {verdict})"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, required=True, help="a pipeline copy whose stages have run once")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="train.learning_rate (default: a fresh value, not in the run-cache)")
    parser.add_argument("--targets", nargs="*", default=["train"],
                        help="the stages to run (default: train, as a head sweep does; none: the whole pipeline)")
    add_record_flag(parser)
    args = parser.parse_args()
    learning_rate = args.learning_rate or fresh_learning_rate()
    command = [sys.executable, "-m", "dvc", "exp", "run", "-S", f"train.learning_rate={learning_rate}", *args.targets]
    lines, sampler, wall_s = run_sampled(command, args.repo, {})
    print_experiment(learning_rate, lines, sampler, wall_s, enabled=args.record)
    process_s = {name: own_s for name, _, own_s in stage_times(lines, sampler, wall_s)}
    if "train" not in process_s:
        sys.exit("the train stage did not run: DVC took it from the run-cache (pass a fresh --learning-rate)")
    parts = experiment_split(wall_s, process_s, train_phase_seconds(args.repo))
    print(f"\nhead-only experiment, {wall_s:.1f} s by part:")
    print("\n".join(split_lines(parts, wall_s, [name for name in process_s if name != "train"])))
    record("experiment", {**{f"{part} s": seconds for part, seconds in parts.items()}, "wall s": wall_s,
                          "fitting share": parts["fitting"] / wall_s},
           setup={"learning rate": learning_rate, "targets": " ".join(args.targets) or "all"}, enabled=args.record)


if __name__ == "__main__":
    main()
