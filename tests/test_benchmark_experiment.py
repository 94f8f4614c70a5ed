"""benchmarks/experiment.py's arithmetic: a head-only experiment's wall time in parts that add up, the fitting share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.experiment import TRAIN_METRICS, experiment_split, split_lines, train_phase_seconds

WALL_S = 100.0
PROCESS_S = {"train": 60.0, "label": 20.0, "report": 5.0}  # stage → seconds its process ran
TRAIN_S = {"startup": 4.0, "load_features": 1.0, "import_tensorflow": 2.0, "fit": 40.0, "calibrate": 0.5, "export": 10.0}


def test_the_parts_add_up_to_the_wall_time() -> None:
    parts = experiment_split(WALL_S, PROCESS_S, TRAIN_S)
    assert parts == {
        "DVC and params": 15.0,  # 100 − (60 + 20 + 5)
        "start-up (python, imports, TensorFlow)": 6.0,
        "loading features": 1.0,
        "fitting": 40.0,
        "calibration": 0.5,
        "SavedModel export": 10.0,
        "other": 27.5,  # the rest of train (2.5) + label (20) + report (5)
    }
    assert sum(parts.values()) == pytest.approx(WALL_S)


def test_split_lines_show_shares_and_the_goal() -> None:
    lines = split_lines(experiment_split(WALL_S, PROCESS_S, TRAIN_S), WALL_S, ["label", "report"])
    assert lines[0].split() == ["DVC", "and", "params", "15.0", "s", "15.0%"]
    assert "other (rest of train; stages label, report)" in lines[-2] and "27.5 s" in lines[-2]
    assert lines[-1].strip() == "fitting share 40.0% (goal ≥ 70% on full data: not met)"


def test_train_phase_seconds_come_from_the_train_metrics(tmp_path: Path) -> None:
    (tmp_path / TRAIN_METRICS).parent.mkdir(parents=True)
    (tmp_path / TRAIN_METRICS).write_text(json.dumps({"best": {}, "seconds": TRAIN_S}))
    assert train_phase_seconds(tmp_path) == TRAIN_S
    (tmp_path / TRAIN_METRICS).write_text(json.dumps({"best": {}}))
    with pytest.raises(SystemExit, match="has no 'seconds'"):
        train_phase_seconds(tmp_path)
