"""Fault injection, end to end through the real `dvc repro` on a tiny subset: nothing is lost, every error is one line.

Faults are injected from outside the product (tests/faults/sitecustomize.py, enabled through PYTHONPATH):
kill -9 of the whole `dvc repro` process group, a full disk for a stage output and for the feature store,
a damaged feature store, two queued experiments writing one store, a garbage JPG among the test images.
One uninterrupted run (the module's baseline) gives the metrics every recovered run must reproduce.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mnist_transfer.features.backbone import BackboneSpec
from mnist_transfer.params import load_params
from tests.conftest import (
    REPO_ROOT,
    assert_same_metrics,
    commit_all,
    configure_stand_in_run,
    copy_pipeline,
    dvc_result,
    run_dvc,
)

pytestmark = pytest.mark.e2e  # every test here runs the real `dvc repro`

FAULTS_DIR = REPO_ROOT / "tests" / "faults"
CHUNK_IMAGES = 10  # images per Dask task and per store transaction: several chunks even on this subset
PARAMS = {
    "label.shards": 2, "label.workers": 1, "label.parity_sample": 5, "train.epochs": 3,
    "bottlenecks.chunk_images": CHUNK_IMAGES,
    # a head trained 3 epochs on 90 random-backbone features has near-ties that int8 weights flip: the tflite
    # parity check is not under test here (tests/test_label.py), the whole pipeline's metrics are
    "label.tflite_min_agreement": 0.01,
}
PER_CLASS = 10  # 100 training and 100 test images
ALREADY = re.compile(r"embedding: (\d+) images, (\d+) distinct, (\d+) already in the feature store")
KILL_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class Pipeline:
    repo: Path
    store: Path

    def env(self, **faults: str) -> dict[str, str]:
        """The environment of a run: this pipeline's feature store, plus FAULT_* settings if any."""
        python_path = os.pathsep.join(filter(None, [str(FAULTS_DIR), os.environ.get("PYTHONPATH")]))
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # stages run `python`: this one
        env = dict(os.environ, MNIST_FEATURE_STORE=str(self.store), PYTHONPATH=python_path, PATH=path, **faults)
        env.pop("MNIST_TRANSFER_DEBUG", None)  # the user's view: one-line errors
        return env

    def repro(self, *args: str, **faults: str) -> subprocess.CompletedProcess:
        """`dvc repro` with the stages' logs (stderr) interleaved in stdout, as a terminal shows them."""
        command = [sys.executable, "-m", "dvc", "repro", *args]
        return subprocess.run(
            command, cwd=self.repo, env=self.env(**faults), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, check=False,
        )

    def metrics(self) -> dict:
        return json.loads((self.repo / "reports" / "metrics.json").read_text())

    def backbone_id(self) -> str:
        return BackboneSpec.from_params(load_params("backbone", self.repo / "params.yaml")).identity()


def new_pipeline(root: Path, mnist_dir: Path) -> Pipeline:
    pipeline = Pipeline(copy_pipeline(root / "repo"), root / "store.sqlite")
    configure_stand_in_run(pipeline.repo, mnist_dir, limit_per_class=PER_CLASS, extra=PARAMS)
    commit_all(pipeline.repo, "stand-in params")
    return pipeline


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Pipeline:
    """One uninterrupted run, committed: the reference metrics, and a repository the cheap faults start from."""
    pipeline = new_pipeline(tmp_path_factory.mktemp("faults-baseline"), mnist_dir)
    result = pipeline.repro()
    assert result.returncode == 0, result.stdout
    commit_all(pipeline.repo, "good baseline")
    return pipeline


@pytest.fixture
def restored(baseline: Pipeline) -> Iterator[Pipeline]:
    """The baseline repository; put back as committed after the test (DVC removes a failed stage's outputs)."""
    yield baseline
    subprocess.run(["git", "checkout", "--", "."], cwd=baseline.repo, check=True)
    run_dvc(baseline.repo, "checkout", "--force")
    assert "up to date" in run_dvc(baseline.repo, "status").stdout


# -- helpers ---------------------------------------------------------------------------------------------------


def stored_hashes(store: Path, backbone_id: str) -> set[str]:
    with sqlite3.connect(store, timeout=60) as db:
        return {row[0] for row in db.execute("SELECT image_sha256 FROM features WHERE backbone = ?", [backbone_id])}


def integrity(store: Path) -> str:
    with sqlite3.connect(store, timeout=60) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def file_hashes(folder: Path) -> set[str]:
    return {hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.rglob("*.jpg")}


def stage_output(output: str, stage: str) -> str:
    """What one stage printed in a `dvc repro` output."""
    sections = re.split(r"^Running stage '([\w-]+)':$", output, flags=re.MULTILINE)
    return next((text for name, text in zip(sections[1::2], sections[2::2]) if name == stage), "")


def already_stored(output: str, stage: str) -> tuple[int, int]:
    """(distinct images, already in the store) as the stage logged them."""
    found = ALREADY.search(stage_output(output, stage))
    assert found, output
    return int(found[2]), int(found[3])


def kill_repro_when(pipeline: Pipeline, condition: Callable[[], bool], **faults: str) -> str:
    """Start `dvc repro` in its own process group and kill -9 the whole group once condition() holds."""
    log_path = pipeline.repo.parent / "killed-run.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro"], cwd=pipeline.repo, env=pipeline.env(**faults),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + KILL_TIMEOUT_S
    try:
        while not condition():
            assert proc.poll() is None, f"the run ended before the fault:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no fault after {KILL_TIMEOUT_S}s:\n{log_path.read_text()}"
            time.sleep(0.02)
    finally:
        with_group_killed(proc)
    return log_path.read_text()


def with_group_killed(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # DVC, the stage, its Dask scheduler, nannies and workers
    except ProcessLookupError:
        pass
    proc.wait()


# -- kill -9 and a full store in the middle of runs ---------------------------------------------------------------


def test_kill_9_and_a_full_store_mid_run_lose_nothing(baseline: Pipeline, tmp_path: Path, mnist_dir: Path):
    """convert killed → bottlenecks killed after a stored chunk → store full → label killed → a clean rerun."""
    pipeline = new_pipeline(tmp_path, mnist_dir)
    backbone_id = pipeline.backbone_id()
    jpg_training = pipeline.repo / "data" / "jpg" / "training"
    slow_store = {"FAULT_SLOW_STORE": f"{pipeline.store}=0.05"}  # each stored vector takes 50 ms: time to kill

    # 1. kill -9 while convert writes JPGs (each write slowed down)
    slow_jpgs = {"FAULT_SLOW_WRITES": "*data/jpg/*=0.02"}
    kill_repro_when(pipeline, lambda: len(list(jpg_training.rglob("*.jpg"))) >= 30, **slow_jpgs)
    assert 30 <= len(list(jpg_training.rglob("*.jpg"))) < 100  # killed midway

    # 2. kill -9 in bottlenecks once at least one chunk is in the store
    killed = kill_repro_when(pipeline, lambda: len(stored_now(pipeline, backbone_id)) >= CHUNK_IMAGES, **slow_store)
    assert "Running stage 'convert'" in killed and "Running stage 'bottlenecks'" in killed  # convert rerun whole
    after_kill = stored_hashes(pipeline.store, backbone_id)
    assert CHUNK_IMAGES <= len(after_kill) < 100 and len(after_kill) % CHUNK_IMAGES == 0  # whole chunks only

    # 3. the store's disk fills up after two more chunks: one clear line, the stored chunks intact
    full = pipeline.repro(FAULT_STORE_FULL=f"{pipeline.store}=50")
    output = full.stdout
    assert full.returncode != 0 and "Traceback" not in output
    assert already_stored(output, "bottlenecks")[1] == len(after_kill)  # nothing stored was computed again
    assert f"no space left on device writing the feature store {pipeline.store}" in stage_output(output, "bottlenecks")
    after_full = stored_hashes(pipeline.store, backbone_id)
    assert after_kill < after_full and len(after_full) < 100 and len(after_full) % CHUNK_IMAGES == 0
    assert integrity(pipeline.store) == "ok"

    # 4. bottlenecks resumes and completes; kill -9 in label once it has stored a chunk of test features
    test_hashes = file_hashes(pipeline.repo / "data" / "jpg" / "testing")
    killed = kill_repro_when(
        pipeline, lambda: len(stored_now(pipeline, backbone_id) & test_hashes) >= CHUNK_IMAGES, **slow_store
    )
    assert already_stored(killed, "bottlenecks")[1] == len(after_full)
    assert "Running stage 'label'" in killed
    test_after_kill = stored_hashes(pipeline.store, backbone_id) & test_hashes
    assert len(test_after_kill) < len(test_hashes)

    # 5. a clean rerun completes, recomputes no stored feature and reproduces the uninterrupted run's metrics
    final = pipeline.repro()
    output = final.stdout
    assert final.returncode == 0, output
    distinct, already = already_stored(output, "label")
    assert already == len(test_after_kill) and f"{distinct - already} backbone passes" in stage_output(output, "label")
    assert_same_metrics(pipeline.metrics(), baseline.metrics())
    assert integrity(pipeline.store) == "ok"


def stored_now(pipeline: Pipeline, backbone_id: str) -> set[str]:
    """The store's hashes while a run writes it (no table yet before the first stage that opens it)."""
    try:
        return stored_hashes(pipeline.store, backbone_id)
    except sqlite3.OperationalError:
        return set()


# -- a full disk while writing a stage output ----------------------------------------------------------------------


def test_full_disk_while_the_label_stage_writes_a_shard(restored: Pipeline):
    pipeline = restored
    lock_before = (pipeline.repo / "dvc.lock").read_text()
    stored_before = stored_hashes(pipeline.store, pipeline.backbone_id())
    result = pipeline.repro("--force", "--single-item", "label", FAULT_ENOSPC="*shard-1.csv*")
    output = result.stdout
    assert result.returncode != 0 and "Traceback" not in output
    assert "label: cannot write data/predictions/shard-1.csv: No space left on device" in output
    assert not list((pipeline.repo / "data" / "predictions").glob(".*partial"))  # nothing partial left behind
    assert (pipeline.repo / "dvc.lock").read_text() == lock_before
    assert stored_hashes(pipeline.store, pipeline.backbone_id()) == stored_before and integrity(pipeline.store) == "ok"
    # the previous output is intact in DVC's cache: the fixture's `dvc checkout` must bring it back unchanged


def test_full_disk_leaves_the_previous_report_as_it_was(restored: Pipeline):
    """The report stage's own command (from dvc.yaml) on the baseline's outputs, outside DVC: atomic writes."""
    pipeline = restored
    metrics_path = pipeline.repo / "reports" / "metrics.json"
    before = metrics_path.read_bytes()
    command = shlex.split(yaml.safe_load((pipeline.repo / "dvc.yaml").read_text())["stages"]["report"]["cmd"])
    command[0] = sys.executable
    result = subprocess.run(
        command, cwd=pipeline.repo, env=pipeline.env(FAULT_ENOSPC="*metrics.json*"),
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot write reports/metrics.json: No space left on device" in result.stderr
    assert "metrics.json stays as it was" in result.stderr
    assert metrics_path.read_bytes() == before and not list(metrics_path.parent.glob(".metrics.json*"))


# -- a damaged feature store ---------------------------------------------------------------------------------------


def truncate(store: Path, _training_hash: str) -> None:
    store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])


def overwrite_header(store: Path, _training_hash: str) -> None:
    payload = bytearray(store.read_bytes())
    payload[:100] = os.urandom(100)
    store.write_bytes(bytes(payload))


def shorten_a_row(store: Path, training_hash: str) -> None:
    with sqlite3.connect(store) as db:
        changed = db.execute(
            "UPDATE features SET vector = substr(vector, 1, 4000) WHERE image_sha256 = ?", [training_hash]
        ).rowcount
    assert changed == 1


@pytest.mark.parametrize("damage", [truncate, overwrite_header, shorten_a_row], ids=lambda f: f.__name__)
def test_a_damaged_store_is_named_with_how_to_rebuild_it(restored: Pipeline, tmp_path: Path, damage):
    damaged = Pipeline(restored.repo, tmp_path / "damaged.sqlite")
    damaged.store.write_bytes(restored.store.read_bytes())  # the baseline's store stays as it is
    first_training_jpg = min((restored.repo / "data" / "jpg" / "training").rglob("*.jpg"))
    damage(damaged.store, hashlib.sha256(first_training_jpg.read_bytes()).hexdigest())
    result = damaged.repro("--force", "--single-item", "bottlenecks")
    output = result.stdout
    assert result.returncode != 0 and "Traceback" not in output
    line = next(line for line in output.splitlines() if line.startswith("bottlenecks: "))
    assert f"feature store {damaged.store} is damaged" in line
    assert f"mv {damaged.store} {damaged.store}.damaged" in line and "computed again" in line


# -- two queued experiments, one store --------------------------------------------------------------------------


def test_two_queued_experiments_at_once_share_one_store(baseline: Pipeline, tmp_path: Path):
    """Both label stages compute the test set's features into one empty store at the same time."""
    shared = Pipeline(baseline.repo, tmp_path / "shared.sqlite")
    env = shared.env(FAULT_SLOW_STORE=f"{shared.store}=0.02")  # long write transactions: they must overlap
    names = []
    for shards in (3, 4):  # shards change nothing in the results
        name = f"shards-{shards}"
        queued = dvc_result(shared.repo, "exp", "run", "--queue", "-n", name, "-S", f"label.shards={shards}", env=env)
        assert queued.returncode == 0, queued.stderr
        names.append(name)
    try:
        started = dvc_result(shared.repo, "queue", "start", "-j", "2", env=env)
        assert started.returncode == 0, started.stderr
        wait_for_queue(shared, names)
    finally:
        dvc_result(shared.repo, "queue", "stop", "--kill", env=env)
    experiments = json.loads(run_dvc(shared.repo, "exp", "show", "--json").stdout)
    for name in names:
        metrics = experiment_metrics(experiments, name)
        assert_same_metrics(metrics, baseline.metrics())
    test_hashes = file_hashes(shared.repo / "data" / "jpg" / "testing")
    assert stored_hashes(shared.store, shared.backbone_id()) == test_hashes and integrity(shared.store) == "ok"


def wait_for_queue(pipeline: Pipeline, names: list[str], timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = dvc_result(pipeline.repo, "queue", "status", env=pipeline.env()).stdout
        rows = [line for line in status.splitlines() if any(name in line for name in names)]
        if len(rows) == len(names) and not any(word in status for word in ("Queued", "Running")):
            assert all("Success" in row for row in rows), status + queue_logs(pipeline, names)
            return
        time.sleep(2)
    pytest.fail(f"queued experiments did not finish in {timeout_s}s:\n{status}{queue_logs(pipeline, names)}")


def queue_logs(pipeline: Pipeline, names: list[str]) -> str:
    return "".join(dvc_result(pipeline.repo, "queue", "logs", name, env=pipeline.env()).stdout for name in names)


def experiment_metrics(shown: list, name: str) -> dict:
    """reports/metrics.json of the named experiment in `dvc exp show --json`."""
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            for revision in experiment.get("revs", []):
                if revision.get("name") == name:
                    return revision["data"]["metrics"]["reports/metrics.json"]["data"]
    raise AssertionError(f"experiment {name} not in dvc exp show:\n{json.dumps(shown)[:2000]}")


# -- a hand-edited JPG ------------------------------------------------------------------------------------------


def test_a_garbage_test_jpg_is_restored_by_repro_or_named_by_label(restored: Pipeline):
    pipeline = restored
    victim = min((pipeline.repo / "data" / "jpg" / "testing" / "3").glob("*.jpg"))
    good = victim.read_bytes()
    victim.write_bytes(b"this is not a JPEG" * 20)

    # `dvc repro`: convert's output changed, so DVC checks out the recorded version; nothing reruns
    result = pipeline.repro()
    assert result.returncode == 0 and "Running stage" not in result.stdout, result.stdout
    assert victim.read_bytes() == good

    # a label stage that does run on the edited folder fails, naming the file (never a skipped image)
    victim.write_bytes(b"this is not a JPEG" * 20)
    result = pipeline.repro("--single-item", "label")
    output = result.stdout
    assert result.returncode != 0 and "Traceback" not in output
    relative = victim.relative_to(pipeline.repo).as_posix()
    assert f"label: {relative}: cannot be decoded (Unknown image file format" in output
