"""A real Dask cluster: `dask scheduler` and two `dask worker` processes started with the dask CLI on loopback,
the workers unable to see the repository and the feature store; and workers killed mid-run lose nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest

from mnist_transfer.data.convert import convert_all
from mnist_transfer.data.records import list_images
from mnist_transfer.features import embedding
from mnist_transfer.features.embedding import ClusterError, ExecutorSpec, ensure_features
from mnist_transfer.features.feature_store import FeatureStore
from tests.conftest import (
    REPO_ROOT,
    FakeEmbedder,
    assert_same_metrics,
    configure_stand_in_run,
    copy_pipeline,
    run_dvc,
    update_params,
)

DASK_CLI = Path(sys.executable).parent / "dask"
# What README.md tells worker machines to set: no MALLOC_TRIM_THRESHOLD_ (it slows TensorFlow down).
WORKER_ENVIRON = {"DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": '{"MALLOC_TRIM_THRESHOLD_": None}'}
START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class CliCluster:
    address: str
    base: Path  # pipeline copy (repo/), feature stores (stores/), the workers' home and package copy
    hidden: bool  # whether the workers run with the repository, the pipeline copy and the stores hidden

    @property
    def pipeline(self) -> Path:
        return self.base / "repo"

    @property
    def stores(self) -> Path:
        return self.base / "stores"


def mount_namespace_prefix() -> tuple[list[str], str]:
    """(command prefix that gives a process its own mount namespace, "") or ([], why that is impossible here)."""
    if shutil.which("unshare") is None:
        return [], "no unshare(1) on this machine"
    candidates = [["unshare", "--mount", "--propagation", "private"]]
    if os.geteuid() != 0:  # an unprivileged user namespace, where the kernel allows one
        candidates = [["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]]
    for prefix in candidates:
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs probe /mnt"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return prefix, ""
        reason = probe.stderr.strip()
    return [], f"cannot mount in a private mount namespace ({reason}); run as root to hide the repository"


def hiding_script(hidden: list[Path], keep: Path, stash: Path) -> str:
    """Shell commands that mount an empty tmpfs over each hidden folder, keeping `keep` (the Python
    environment, which may live in the repository) visible at its own path."""
    steps = []
    inside = [folder for folder in hidden if folder == keep or folder in keep.parents]
    if inside:
        steps.append(f"mount --bind {shlex.quote(str(keep))} {shlex.quote(str(stash))}")
    steps += [f"mount -t tmpfs -o size=1m hidden {shlex.quote(str(folder))}" for folder in hidden]
    if inside:
        steps += [f"mkdir -p {shlex.quote(str(keep))}", f"mount --move {shlex.quote(str(stash))} {shlex.quote(str(keep))}"]
    return " && ".join(steps)


def start(command: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """A process in its own session, so that the finaliser can end it and every child it spawned."""
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)


def stop_all(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each process group, SIGKILL what is left after 15 s; fail if anything survives."""
    for process in processes:
        signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        signal_group(process.pid, signal.SIGKILL)  # the group's other members too (a nanny's worker process)
        process.wait(timeout=10)
    deadline = time.monotonic() + 15  # killed children of a killed nanny wait for init to reap them
    while (leaked := living_members({process.pid for process in processes})) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leaked, f"processes outlived the cluster: {leaked}"


def signal_group(pgid: int, signal_number: int) -> None:
    try:
        os.killpg(pgid, signal_number)
    except ProcessLookupError:
        pass


def living_members(pgids: set[int]) -> list[str]:
    """'pid command' of every process, zombies aside, in one of these process groups."""
    living = []
    for process in psutil.process_iter(["pid", "status", "cmdline"]):
        try:
            if os.getpgid(process.pid) in pgids and process.info["status"] != psutil.STATUS_ZOMBIE:
                living.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])}")
        except ProcessLookupError:
            continue
    return living


def wait_for_scheduler_file(path: Path, scheduler: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_size:
            return json.loads(path.read_text())["address"]
        if scheduler.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"dask scheduler did not start:\n{log_path.read_text()}")


def worker_command(address: str, name: str, cluster: Path, hide: list[str], hidden: list[Path]) -> list[str]:
    """`dask worker` as README.md says, inside its own mount namespace with `hidden` covered when `hide`."""
    worker = [str(DASK_CLI), "worker", address, "--name", name, "--nworkers", "1", "--nthreads", "1",
              "--host", "127.0.0.1", "--no-dashboard", "--local-directory", str(cluster / "home" / "dask-scratch")]
    if not hide:
        return worker
    (cluster / f"stash-{name}").mkdir()
    script = hiding_script(hidden, Path(sys.prefix), cluster / f"stash-{name}")
    return [*hide, "sh", "-c", f"{script} && exec {shlex.join(worker)}"]


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliCluster]:
    """A scheduler and two workers started with the dask CLI; the workers' cwd and HOME are outside the repository,
    they import the package from a copy of mnist_transfer/ (what a worker machine has installed) and, where a
    private mount namespace is possible, see neither the repository, nor the pipeline copy, nor the stores."""
    base = tmp_path_factory.mktemp("cluster")
    for folder in ("repo", "stores", "home", "site"):
        (base / folder).mkdir()
    shutil.copytree(REPO_ROOT / "mnist_transfer", base / "site" / "mnist_transfer", ignore=shutil.ignore_patterns("__pycache__"))
    hide, why_not = mount_namespace_prefix()
    if REPO_ROOT in base.parents:
        hide, why_not = [], f"the test's temporary folder {base} lies inside the repository"
    hidden = [REPO_ROOT, base / "repo", base / "stores"]
    env = {"PATH": f"{DASK_CLI.parent}{os.pathsep}/usr/bin:/bin", "HOME": str(base / "home"), "PYTHONPATH": str(base / "site"),
           "TF_CPP_MIN_LOG_LEVEL": "2", **WORKER_ENVIRON}
    processes: list[subprocess.Popen] = []
    try:
        scheduler_file = base / "scheduler.json"
        processes.append(start([str(DASK_CLI), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                "--scheduler-file", str(scheduler_file)], base / "home", env, base / "scheduler.log"))
        address = wait_for_scheduler_file(scheduler_file, processes[0], base / "scheduler.log")
        for name in ("w0", "w1"):
            command = worker_command(address, name, base, hide, hidden)
            processes.append(start(command, base / "home", env, base / f"{name}.log"))
        wait_for_workers(address, 2, base)
        yield CliCluster(address, base, hidden=bool(hide))
    finally:
        stop_all(processes)
    if why_not:
        print(f"workers ran without hiding the repository: {why_not}")


def wait_for_workers(address: str, n_workers: int, base: Path) -> None:
    from distributed import Client

    with Client(address, timeout=START_TIMEOUT_S) as client:
        try:
            client.wait_for_workers(n_workers, timeout=START_TIMEOUT_S)
        except TimeoutError:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(base.glob("w*.log")))
            pytest.fail(f"{n_workers} dask workers did not join {address}:\n{logs}")


def on_workers(address: str, function, *args) -> dict:
    """{worker address: function(*args)} run in every worker process."""
    from distributed import Client

    with Client(address, timeout=START_TIMEOUT_S) as client:
        return client.run(function, *args)


@pytest.mark.cluster
def test_workers_cannot_see_the_repository_or_the_store(cli_cluster: CliCluster):
    if not cli_cluster.hidden:
        pytest.skip(mount_namespace_prefix()[1] or "the temporary folder lies inside the repository")
    paths = [str(REPO_ROOT / "dvc.yaml"), str(REPO_ROOT / "mnist_transfer"), str(cli_cluster.pipeline),
             str(cli_cluster.stores)]

    def look_around(paths: list[str]) -> dict:
        import mnist_transfer

        return {"visible": [p for p in paths if os.path.exists(p) and (os.path.isfile(p) or os.listdir(p))],
                "cwd": os.getcwd(), "home": os.environ["HOME"], "package": mnist_transfer.__file__,
                "malloc_trim": os.environ.get("MALLOC_TRIM_THRESHOLD_")}

    seen = on_workers(cli_cluster.address, look_around, paths)
    assert len(seen) == 2
    for worker in seen.values():
        assert worker["visible"] == []
        assert worker["cwd"] == worker["home"] == str(cli_cluster.base / "home")
        assert worker["package"] == str(cli_cluster.base / "site" / "mnist_transfer" / "__init__.py")
        assert worker["malloc_trim"] is None


@pytest.mark.cluster
def test_dvc_repro_on_the_cluster_gives_the_local_cluster_metrics(cli_cluster: CliCluster, mnist_dir: Path, monkeypatch):
    repo = copy_pipeline(cli_cluster.pipeline)
    configure_stand_in_run(repo, mnist_dir, limit_per_class=5, extra={"bottlenecks.chunk_images": 8, "label.parity_sample": 0})
    monkeypatch.setenv("MNIST_FEATURE_STORE", str(cli_cluster.stores / "local.sqlite"))
    run_dvc(repo, "repro")
    local_metrics = json.loads((repo / "reports" / "metrics.json").read_text())

    update_params(repo, {"executor.scheduler": cli_cluster.address})
    monkeypatch.setenv("MNIST_FEATURE_STORE", str(cli_cluster.stores / "cluster.sqlite"))  # empty: everything is computed
    result = run_dvc(repo, "repro")
    log = result.stdout + result.stderr
    assert "50 backbone passes now" in log  # the bottleneck stage: every training image on the cluster
    assert log.count("computed 50 features") == 2  # and the label stage: every test image
    assert_same_metrics(json.loads((repo / "reports" / "metrics.json").read_text()), local_metrics)
    executed = on_workers(cli_cluster.address, lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and all(count > 0 for count in executed.values())  # both workers did chunks
    with FeatureStore(cli_cluster.stores / "cluster.sqlite") as store:
        assert store.count() == 100


# --- a worker killed mid-run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlowEmbedder(FakeEmbedder):
    """FakeEmbedder that takes `delay_s` per chunk and appends the hashes it embedded to `calls_log`."""

    delay_s: float = 0.4
    calls_log: str = ""

    def __call__(self, encoded: list[bytes]) -> np.ndarray:
        time.sleep(self.delay_s)
        vectors = super().__call__(encoded)
        with open(self.calls_log, "a", encoding="utf-8") as log_file:
            log_file.write("".join(hashlib.sha256(blob).hexdigest() + "\n" for blob in encoded))
        return vectors


def kill_a_worker_after_first_chunk(store_path: Path, chunk_images: int, worker_pid: int, stored_then: set) -> None:
    """Wait until the store holds one chunk, note which hashes it holds, then kill -9 the worker."""
    deadline = time.monotonic() + 60
    with sqlite3.connect(store_path, timeout=60) as db:
        while time.monotonic() < deadline:
            if db.execute("SELECT COUNT(*) FROM features").fetchone()[0] >= chunk_images:
                stored_then.update(row[0] for row in db.execute("SELECT image_sha256 FROM features"))
                os.kill(worker_pid, signal.SIGKILL)
                return
            time.sleep(0.01)


@pytest.mark.parametrize("allowed_failures", [3, 0], ids=["dask-reschedules", "client-resubmits"])
@pytest.mark.cluster
def test_worker_killed_mid_run_loses_nothing_and_recomputes_no_stored_chunk(
    tiny_idx_dir: Path, tmp_path: Path, allowed_failures: int, caplog: pytest.LogCaptureFixture
):
    import dask
    from distributed import Client, LocalCluster

    convert_all(tiny_idx_dir, tmp_path / "jpg", limit_per_class=None, quality=95, workers=1)
    data_root = tmp_path / "jpg"
    records = list_images(data_root / "training", data_root)  # 50 images: 13 chunks of 4
    embedder = SlowEmbedder(calls_log=str(tmp_path / "calls.log"))
    stored_then: set[str] = set()
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}), LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, Client(cluster) as client, FeatureStore(tmp_path / "store.sqlite") as store:
        victim = min(client.run(os.getpid).values())
        killer = threading.Thread(target=kill_a_worker_after_first_chunk, args=(store.path, 4, victim, stored_then))
        killer.start()
        with caplog.at_level("WARNING", logger="embedding"):
            computed = ensure_features(records, data_root, store, embedder, ExecutorSpec(cluster.scheduler_address, 2, 4))
        killer.join()
        assert stored_then and victim not in client.run(os.getpid).values()  # the kill happened mid-run
        assert sum(prefix.suspicious for prefix in cluster.scheduler.task_prefixes.values()) > 0  # amid a chunk
        assert computed == 50 and store.written == 50  # every chunk stored exactly once
        features = store.get(embedder.spec.identity(), [r.sha256 for r in records])
    uninterrupted = FakeEmbedder()([(data_root / r.rel_path).read_bytes() for r in records])
    np.testing.assert_array_equal(features, uninterrupted)
    embedded = (tmp_path / "calls.log").read_text().split()
    assert all(embedded.count(image_hash) == 1 for image_hash in stored_then)  # no stored chunk computed again
    resubmitted = "resubmitting it" in caplog.text
    assert resubmitted == (allowed_failures == 0)  # allowed-failures=0: Dask gives up at once, the client retries


def test_unreachable_scheduler_is_a_clear_error(unused_tcp_port: int, monkeypatch):
    monkeypatch.setattr(embedding, "CONNECT_TIMEOUT_S", 2.0)
    address = f"tcp://127.0.0.1:{unused_tcp_port}"
    with pytest.raises(ClusterError, match=f"executor.scheduler={address}.*dask scheduler"), embedding.dask_client(
        ExecutorSpec(address, 2, 8)
    ):
        pass


def test_scheduler_without_workers_is_a_clear_error(monkeypatch):
    from distributed import LocalCluster

    monkeypatch.setattr(embedding, "WORKER_WAIT_S", 1.0)
    with LocalCluster(n_workers=0, processes=True, dashboard_address=":0") as cluster:  # a tcp:// scheduler
        expected = "no worker for 1s; start some with `dask worker tcp://127.0.0.1:"
        with pytest.raises(ClusterError, match=expected), embedding.dask_client(ExecutorSpec(cluster.scheduler_address, 2, 8)):
            pass
