"""Feature store: round trip, missing keys, and survival of a hard kill mid-write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnist_transfer.features.feature_store import FeatureStore, FeatureStoreError
from tests.conftest import REPO_ROOT


def vectors(n: int, seed: int = 0, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_round_trip_and_missing(tmp_path: Path):
    with FeatureStore(tmp_path / "store.sqlite", feature_dim=8) as store:
        stored = vectors(3)
        store.put("bb", ["a", "b", "c"], stored)
        np.testing.assert_array_equal(store.get("bb", ["c", "a", "c"]), stored[[2, 0, 2]])
        assert store.missing("bb", ["a", "x", "b", "x", "y"]) == ["x", "y"]
        assert store.missing("other-backbone", ["a"]) == ["a"]  # keys are per backbone
        assert store.count("bb") == 3 and store.written == 3
    with FeatureStore(tmp_path / "store.sqlite", feature_dim=8) as reopened:  # persistent
        np.testing.assert_array_equal(reopened.get("bb", ["b"]), stored[[1]])


def test_get_names_a_missing_hash(tmp_path: Path):
    with FeatureStore(tmp_path / "store.sqlite", feature_dim=8) as store:
        with pytest.raises(KeyError, match="no vector for image nope"):
            store.get("bb", ["nope"])


def test_wrong_shape_is_refused_and_nothing_written(tmp_path: Path):
    with FeatureStore(tmp_path / "store.sqlite", feature_dim=8) as store:
        with pytest.raises(ValueError, match=r"shape \(2, 8\)"):
            store.put("bb", ["a", "b"], vectors(3))
        assert store.count() == 0


def test_many_keys_beyond_one_query(tmp_path: Path):
    hashes = [f"h{i}" for i in range(1234)]
    with FeatureStore(tmp_path / "store.sqlite", feature_dim=8) as store:
        store.put("bb", hashes, vectors(1234))
        assert store.missing("bb", hashes + ["new"]) == ["new"]
        assert store.get("bb", hashes).shape == (1234, 8)


WRITER = """
import sys, numpy as np
from pathlib import Path
from mnist_transfer.features.feature_store import FeatureStore, FeatureStoreError
store = FeatureStore(Path(sys.argv[1]), feature_dim=2048)
for batch in range(10**6):
    store.put("bb", [f"{batch}-{i}" for i in range(100)], np.full((100, 2048), batch, np.float32))
"""


def test_hard_kill_mid_write_leaves_a_consistent_store(tmp_path: Path):
    path = tmp_path / "store.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 300  # generous: a loaded 2-core machine writes slowly
        while time.monotonic() < deadline and writer.poll() is None:
            time.sleep(0.3)
            if path.exists() and sqlite3.connect(path, timeout=30).execute("SELECT COUNT(*) FROM features").fetchone()[0] >= 500:
                break
        assert writer.poll() is None, "the writer ended before it was killed: nothing was interrupted"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    database = sqlite3.connect(path)
    assert database.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    database.close()
    with FeatureStore(path) as store:
        count = store.count()
        assert count >= 500 and count % 100 == 0  # whole batches only
        last_batch = count // 100 - 1
        np.testing.assert_array_equal(store.get("bb", [f"{last_batch}-99"]), np.full((1, 2048), last_batch))
        store.put("bb", ["after-crash"], np.zeros((1, 2048)))  # still writable
        assert store.missing("bb", ["after-crash"]) == []


def _store_with_rows(path: Path) -> None:
    with FeatureStore(path, feature_dim=8) as store:
        store.put("bb", ["a", "b"], vectors(2))


def test_garbage_bytes_name_the_file_and_how_to_rebuild_it(tmp_path: Path):
    path = tmp_path / "store.sqlite"
    _store_with_rows(path)
    path.write_bytes(os.urandom(100) + path.read_bytes()[100:])
    with pytest.raises(FeatureStoreError, match="is damaged") as caught:
        FeatureStore(path, feature_dim=8)
    assert f"feature store {path} is damaged (file is not a database)" in str(caught.value)
    assert f"mv {path} {path}.damaged" in str(caught.value)


def test_a_row_of_the_wrong_length_is_named(tmp_path: Path):
    path = tmp_path / "store.sqlite"
    _store_with_rows(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE features SET vector = substr(vector, 1, 12) WHERE image_sha256 = 'b'")
    with FeatureStore(path, feature_dim=8) as store:
        np.testing.assert_array_equal(store.get("bb", ["a"]), vectors(2)[[0]])  # the intact row still reads
        with pytest.raises(FeatureStoreError, match="the vector of image b has 12 bytes, not 32"):
            store.get("bb", ["a", "b"])


def test_a_full_disk_rolls_back_the_chunk_and_keeps_the_rest(tmp_path: Path):
    path = tmp_path / "store.sqlite"
    _store_with_rows(path)
    with FeatureStore(path, feature_dim=2048) as store:
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own way to say the disk is full
        with pytest.raises(FeatureStoreError, match="no space left on device writing the feature store"):
            store.put("big", ["x", "y"], np.zeros((2, 2048)))
        assert store.count("big") == 0 and store.count("bb") == 2


WAITER = """
import sys, time, numpy as np
from pathlib import Path
from mnist_transfer.features.feature_store import FeatureStore
store, marker = FeatureStore(Path(sys.argv[1]), feature_dim=8), Path(sys.argv[2])

def on_statement(sql):
    if sql.startswith("BEGIN IMMEDIATE") and not marker.exists():  # put() asks for the write lock now
        marker.write_text(repr(time.monotonic()))

store._db.set_trace_callback(on_statement)
store.put("bb", ["c"], np.ones((1, 8)))
print(repr(time.monotonic()))
"""


def wait_for_file(path: Path, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, f"the process ended before writing {path.name}: {process.communicate()}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout_s}s"
        time.sleep(0.01)


def test_a_writer_waits_for_another_runs_transaction(tmp_path: Path):
    """Queued experiments share the store: a second writer waits (busy timeout) for the lock, then commits."""
    path, marker = tmp_path / "store.sqlite", tmp_path / "asked-for-the-lock"
    _store_with_rows(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another run in the middle of storing a chunk
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, str(path), str(marker)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        wait_for_file(marker, waiter)  # the waiter's put() has begun its BEGIN IMMEDIATE while the lock is held
    finally:
        released_at = time.monotonic()
        holder.execute("COMMIT")
    output, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, output  # it waited: no "database is locked"
    asked_at, stored_at = float(marker.read_text()), float(output)
    assert asked_at < released_at < stored_at  # it asked while the lock was held and got it only after the release
    with FeatureStore(path, feature_dim=8) as store:
        assert store.count("bb") == 3
        np.testing.assert_array_equal(store.get("bb", ["c"]), np.ones((1, 8)))
