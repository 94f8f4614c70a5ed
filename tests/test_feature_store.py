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

from mnist_transfer.feature_store import FeatureStore, FeatureStoreError
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
from mnist_transfer.feature_store import FeatureStore, FeatureStoreError
store = FeatureStore(Path(sys.argv[1]), feature_dim=2048)
for batch in range(10**6):
    store.put("bb", [f"{batch}-{i}" for i in range(100)], np.full((100, 2048), batch, np.float32))
"""


def test_hard_kill_mid_write_leaves_a_consistent_store(tmp_path: Path):
    path = tmp_path / "store.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.3)
            if path.exists() and sqlite3.connect(path, timeout=30).execute("SELECT COUNT(*) FROM features").fetchone()[0] >= 500:
                break
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


def test_a_writer_waits_for_another_runs_transaction(tmp_path: Path):
    """Queued experiments share the store: a second writer waits (busy timeout), then commits."""
    path = tmp_path / "store.sqlite"
    _store_with_rows(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another run in the middle of storing a chunk
    waiter = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, numpy as np; from pathlib import Path; from mnist_transfer.feature_store import FeatureStore;"
            "s = FeatureStore(Path(sys.argv[1]), feature_dim=8); s.put('bb', ['c'], np.ones((1, 8))); print('stored')"
        ), str(path)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )
    time.sleep(1.5)
    assert waiter.poll() is None  # still waiting for the lock, not failed with "database is locked"
    holder.execute("COMMIT")
    assert waiter.communicate(timeout=60)[0].strip() == "stored" and waiter.returncode == 0
    with FeatureStore(path, feature_dim=8) as store:
        assert store.count("bb") == 3
