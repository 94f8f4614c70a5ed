"""Nightly runner: history, locking, regression exit code; and experiments that reuse the feature store."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.nightly import EXIT_LOCKED, EXIT_OK, EXIT_REGRESSION, regressions, trend_svg
from tests.conftest import REPO_ROOT, configure_stand_in_run, copy_pipeline, run_dvc, update_params


def nightly(repo: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "scripts" / "nightly.py"), "--repo", str(repo), *args],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=900)
    return process.returncode, output


def history(repo: Path) -> list[dict]:
    path = repo / "reports" / "nightly" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_regressions_known_answer():
    before = {"accuracy": 0.95, "per_digit": {"1": 0.99, "7": 0.96, "8": 0.90}}
    after = {"accuracy": 0.93, "per_digit": {"1": 0.99, "7": 0.90, "8": 0.91}}
    lines = regressions(before, after, threshold=0.005)
    assert lines[0].startswith("transfer accuracy   0.9500 -> 0.9300")
    assert [line.split()[2] for line in lines[1:]] == ["7"]  # only the digit that dropped
    assert regressions(before, after, threshold=0.05) == []


def test_a_cnn_regression_is_caught_too():
    cnn_before = {"accuracy": 0.994, "per_digit": {"4": 0.995, "9": 0.99}}
    cnn_after = {"accuracy": 0.980, "per_digit": {"4": 0.97, "9": 0.99}}
    transfer = {"accuracy": 0.95, "per_digit": {"4": 0.95}}
    lines = regressions(transfer | {"cnn": cnn_before}, transfer | {"cnn": cnn_after}, threshold=0.005)
    assert lines == ["cnn accuracy   0.9940 -> 0.9800   (-0.0140)", "cnn digit 4    0.9950 -> 0.9700   (-0.0250)"]
    assert regressions(transfer | {"cnn": cnn_before}, transfer, threshold=0.005) == []  # no CNN tonight: nothing to compare


def test_trend_svg_has_one_point_per_successful_run():
    runs = [{"timestamp": f"2026-11-0{d}T02:30:00+00:00", "outcome": "success", "accuracy": 0.9 + d / 100} for d in range(1, 4)]
    runs.append({"timestamp": "2026-11-04T02:30:00+00:00", "outcome": "failed"})
    assert trend_svg(runs).count("<circle") == 3


# `python -m dvc` for the lock test: `remote list` lists none; `repro` says it started, waits for the test's go-ahead,
# then writes the metrics a pipeline run would
FAKE_DVC = """
import json, os, sys, time
from pathlib import Path
if sys.argv[1:] == ["repro"]:
    Path(os.environ["FAKE_DVC_STARTED"]).write_text("started")
    deadline = time.monotonic() + 60
    while not Path(os.environ["FAKE_DVC_GO"]).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("Running stage 'report':", flush=True)
    Path("reports").mkdir(exist_ok=True)
    Path("reports/metrics.json").write_text(json.dumps({"accuracy": 0.9, "per_digit": {"0": 0.9}}))
"""


def test_a_run_holds_the_lock_until_it_ends(tmp_path: Path, monkeypatch):
    """A second nightly started while a first is provably inside `dvc repro` backs off at once; one after it runs."""
    (tmp_path / "fake" / "dvc").mkdir(parents=True)
    (tmp_path / "fake" / "dvc" / "__init__.py").write_text("")
    (tmp_path / "fake" / "dvc" / "__main__.py").write_text(FAKE_DVC)
    started, go = tmp_path / "repro-started", tmp_path / "go"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "fake"), os.getenv("PYTHONPATH")])))
    monkeypatch.setenv("FAKE_DVC_STARTED", str(started))
    monkeypatch.setenv("FAKE_DVC_GO", str(go))
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    (repo / "params.yaml").write_text("train: {epochs: 1}\n")

    first = nightly(repo)
    deadline = time.monotonic() + 60
    while not started.exists():  # the first run is inside `dvc repro`, so it holds the lock until go exists
        assert first.poll() is None, finish(first)
        assert time.monotonic() < deadline, "the first run never started `dvc repro`"
        time.sleep(0.01)
    code, output = finish(nightly(repo))
    assert code == EXIT_LOCKED and "another nightly run holds" in output
    go.touch()
    code, output = finish(first)
    assert code == EXIT_OK and "Running stage 'report'" in output, output
    code, output = finish(nightly(repo))  # the lock is free again
    assert code == EXIT_OK, output
    assert [row["outcome"] for row in history(repo)] == ["success", "success"]


@pytest.mark.e2e
def test_nightly_runs_lock_and_regression(tmp_path: Path, mnist_dir: Path, monkeypatch):
    monkeypatch.setenv("MNIST_FEATURE_STORE", str(tmp_path / "store.sqlite"))
    repo = copy_pipeline(tmp_path / "repo")
    configure_stand_in_run(repo, mnist_dir, limit_per_class=20, extra={"label.shards": 2, "label.parity_sample": 20})

    code, output = finish(nightly(repo))
    assert code == EXIT_OK, output
    code, output = finish(nightly(repo))  # nothing changed: DVC runs no stage
    assert code == EXIT_OK and "Running stage" not in output and "didn't change, skipping" in output
    rows = history(repo)
    assert [r["outcome"] for r in rows] == ["success", "success"] and rows[0]["accuracy"] == rows[1]["accuracy"]
    assert set(rows[0]["stage_seconds"]) >= {"bottlenecks", "train", "label", "report"}
    assert (repo / "reports" / "nightly" / "trend.svg").read_text().count("<circle") == 2
    assert list((repo / "logs" / "nightly").glob("*.log"))

    # while the lock is held others exit with 75, here after --wait seconds (a real run holding it: the test below)
    with open(repo / ".dvc" / "tmp" / "nightly.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        code, output = finish(nightly(repo, "--wait", "1"))
        assert code == EXIT_LOCKED and "another nightly run holds" in output
    code, output = finish(nightly(repo))  # released: the next run goes ahead
    assert code == EXIT_OK, output
    assert len(history(repo)) == 3

    update_params(repo, {"train.shuffle_labels": True})  # a params change that ruins accuracy
    code, output = finish(nightly(repo))
    assert code == EXIT_REGRESSION, output
    assert "accuracy dropped by more than" in output and "digit 0" in output
    assert history(repo)[-1]["outcome"] == "success" and history(repo)[-1]["accuracy"] < 0.5


@pytest.mark.e2e
def test_exp_run_on_a_head_param_recomputes_no_bottleneck(pipeline_repo: Path, mnist_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MNIST_FEATURE_STORE", str(tmp_path / "store.sqlite"))
    configure_stand_in_run(pipeline_repo, mnist_dir, limit_per_class=10, extra={"label.shards": 2, "label.parity_sample": 10})
    run_dvc(pipeline_repo, "repro")
    result = run_dvc(pipeline_repo, "exp", "run", "-S", "train.learning_rate=0.003")
    log = result.stdout + result.stderr
    assert "Stage 'bottlenecks' didn't change, skipping" in log
    assert "Running stage 'train'" in log and "0 backbone passes, the rest from the store" in log
    shown = json.loads(run_dvc(pipeline_repo, "exp", "show", "--json").stdout)
    assert "0.003" in json.dumps(shown) and "accuracy" in json.dumps(shown)
