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

from mnist_transfer.feature_store import FeatureStore
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
from mnist_transfer.feature_store import FeatureStore
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
