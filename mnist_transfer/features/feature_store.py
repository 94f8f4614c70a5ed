"""A persistent, crash-safe, content-addressed store of backbone features (SQLite).

Key: (backbone identity — source, weights/handle, image size, preprocessing version — , sha256 of the
image bytes). Each batch is written in one transaction, so a killed run loses at most the batch in
flight and a rerun resumes; SQLite's WAL journal keeps the file consistent through crashes.
Location: $MNIST_FEATURE_STORE, else ~/.cache/mnist-transfer/features.sqlite, outside DVC's outputs
so that every stage, experiment and queued run (which works in a temporary copy) shares it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from mnist_transfer.errors import StageError
from mnist_transfer.features.backbone import FEATURE_DIM

STORE_ENV = "MNIST_FEATURE_STORE"
DEFAULT_STORE = Path.home() / ".cache" / "mnist-transfer" / "features.sqlite"
LOOKUP_BATCH = 500  # keys per SELECT, below SQLite's variable limit
BUSY_TIMEOUT_S = 60.0  # a writer waits this long for another run's transaction (queued experiments share the store)

SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    backbone TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (backbone, image_sha256)
) WITHOUT ROWID;
"""


def default_store_path() -> Path:
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE).expanduser()


class FeatureStoreError(StageError, RuntimeError):
    """The feature store cannot be read or written: damaged, locked too long, or its disk is full."""


def store_failure(path: Path, error: sqlite3.DatabaseError | str) -> FeatureStoreError:
    """A message that names the store file and what to do, for an SQLite error (or a damaged row)."""
    reason = str(error)
    if "full" in reason:  # SQLITE_FULL: "database or disk is full"
        return FeatureStoreError(
            f"no space left on device writing the feature store {path} ({reason}); the chunk in flight was rolled "
            f"back, every stored feature is intact: free some space (or point {STORE_ENV} at a bigger disk) and rerun"
        )
    if "locked" in reason or "busy" in reason:
        return FeatureStoreError(
            f"feature store {path} stayed locked by another run for {BUSY_TIMEOUT_S:.0f}s ({reason}); "
            "rerun when that run ends"
        )
    return FeatureStoreError(
        f"feature store {path} is damaged ({reason}). It is only a cache: move it aside (mv {path} {path}.damaged) "
        f"or delete it together with its -wal and -shm files, and rerun: the features are then computed again"
    )


class FeatureStore:
    """Features by (backbone identity, image sha256); float32 vectors of FEATURE_DIM."""

    def __init__(self, path: Path, feature_dim: int = FEATURE_DIM):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.feature_dim = feature_dim
        self.written = 0  # vectors written through this handle (the "backbone passes" of a run)
        # BEGIN IMMEDIATE: a writer takes the write lock up front, waiting up to the busy timeout for another
        # run's transaction, instead of failing with "database is locked" when upgrading a read transaction
        self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level="IMMEDIATE")
        with self._guard():
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at checkpoints, never corrupt
            self._db.executescript(SCHEMA)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite errors (damaged file, full disk, lock timeout) become one message naming the store."""
        try:
            yield
        except sqlite3.DatabaseError as error:
            raise store_failure(self.path, error) from error

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def _select(self, columns: str, backbone: str, unique_hashes: list[str]) -> Iterator[tuple]:
        """Rows of `columns` for these hashes, LOOKUP_BATCH keys per query."""
        for start in range(0, len(unique_hashes), LOOKUP_BATCH):
            part = unique_hashes[start : start + LOOKUP_BATCH]
            placeholders = ",".join("?" * len(part))
            with self._guard():
                rows = self._db.execute(
                    f"SELECT {columns} FROM features WHERE backbone = ? AND image_sha256 IN ({placeholders})",
                    [backbone, *part],
                ).fetchall()
            yield from rows

    def missing(self, backbone: str, hashes: Iterable[str]) -> list[str]:
        """The hashes (deduplicated, in first-seen order) that have no vector for this backbone yet."""
        unique = list(dict.fromkeys(hashes))
        present = {row[0] for row in self._select("image_sha256", backbone, unique)}
        return [image_hash for image_hash in unique if image_hash not in present]

    def put(self, backbone: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Store one batch atomically: all of its vectors or none."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(hashes), self.feature_dim):
            raise ValueError(f"expected vectors of shape ({len(hashes)}, {self.feature_dim}), got {vectors.shape}")
        with self._guard(), self._db:  # one transaction; rolled back on any exception
            self._db.executemany(
                "INSERT OR REPLACE INTO features (backbone, image_sha256, vector) VALUES (?, ?, ?)",
                [(backbone, image_hash, vector.tobytes()) for image_hash, vector in zip(hashes, vectors)],
            )
        self.written += len(hashes)

    def get(self, backbone: str, hashes: Sequence[str]) -> np.ndarray:
        """Vectors float32 (len(hashes), feature_dim) in the order asked; KeyError names a missing hash."""
        found = dict(self._select("image_sha256, vector", backbone, list(dict.fromkeys(hashes))))
        vectors = np.empty((len(hashes), self.feature_dim), dtype=np.float32)
        for position, image_hash in enumerate(hashes):
            if image_hash not in found:
                raise KeyError(f"feature store {self.path} has no vector for image {image_hash} ({backbone})")
            blob = found[image_hash]
            if len(blob) != self.feature_dim * 4:  # float32
                damage = f"the vector of image {image_hash} has {len(blob)} bytes, not {self.feature_dim * 4}"
                raise store_failure(self.path, damage)
            vectors[position] = np.frombuffer(blob, dtype=np.float32)
        return vectors

    def count(self, backbone: str | None = None) -> int:
        with self._guard():
            if backbone is None:
                return self._db.execute("SELECT COUNT(*) FROM features").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM features WHERE backbone = ?", [backbone]).fetchone()[0]
