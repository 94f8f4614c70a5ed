"""How a stage runs: its wall time by phase (PhaseClock); run_stage's params and errors are in test_params.py."""

from __future__ import annotations

import time

import psutil
import pytest

from mnist_transfer import runner
from mnist_transfer.runner import PhaseClock


def test_phase_clock_splits_wall_time_from_process_start(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([100.0, 100.5, 103.0, 103.25])  # perf_counter: at the clock's creation, then at each lap
    monkeypatch.setattr(runner.time, "perf_counter", lambda: next(ticks))
    monkeypatch.setattr(runner.time, "time", lambda: 1000.0)
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: 996.0)
    clock = PhaseClock()
    clock.lap("load_features")
    clock.lap("fit")
    clock.lap("load_features")  # a phase met twice adds up
    assert clock.seconds == {"startup": 4.0, "load_features": 0.75, "fit": 2.5}
    assert clock.describe() == "startup 4.0 s, load_features 0.8 s, fit 2.5 s; 7.2 s in all"


def test_phase_clock_startup_is_this_process_age() -> None:
    age_s = time.time() - psutil.Process().create_time()
    assert 0 <= PhaseClock().seconds["startup"] <= age_s + 1.0
