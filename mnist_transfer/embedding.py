"""Fill the feature store for a set of images: shared by the bottleneck and label stages.

ensure_features (bottlenecks): the client reads and hashes the JPGs, asks the store which hashes it
lacks, sends those images' bytes in chunks to Dask workers (each loads the backbone once) and writes
every returned chunk to the store in one transaction. embed_missing (label): the same, inside one
worker that reads and writes the store itself. Nothing is computed twice; a killed run resumes from
the last stored chunk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from mnist_transfer.backbone import Backbone, BackboneSpec, load_backbone
from mnist_transfer.common import DataError, sha256_bytes
from mnist_transfer.feature_store import FeatureStore

log = logging.getLogger("embedding")

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
PROGRESS_LOG_S = 30.0  # without a terminal, a progress line this often

_LOADED: dict[BackboneSpec, Backbone] = {}  # per worker process: each backbone is loaded once


@dataclass(frozen=True)
class ImageRecord:
    rel_path: str  # relative to the data root (data/jpg), e.g. training/3/00013.jpg
    label: int
    sha256: str  # of the encoded file: the feature store's content address


@dataclass(frozen=True)
class ExecutorSpec:
    scheduler: str  # "local" → a LocalCluster started here; else a Dask scheduler address
    workers: int  # worker processes of the LocalCluster
    chunk_images: int  # images per Dask task; a crash loses at most the chunks in flight


@dataclass(frozen=True)
class BackboneEmbedder:
    """The work a Dask task does: encoded images → features, with the backbone loaded once per process."""

    spec: BackboneSpec
    batch_size: int
    tf_threads: int  # intra-op threads per worker, so that workers × threads ≤ cores

    def __call__(self, encoded: list[bytes]) -> np.ndarray:
        backbone = worker_backbone(self.spec, self.tf_threads)
        try:
            return backbone.embed_encoded(encoded, self.batch_size)
        except Exception as error:  # find the image at fault, so that the error can name its file
            culprit = first_undecodable(encoded)
            if culprit is None:
                raise
            raise UndecodableImage(*culprit) from error


class UndecodableImage(ValueError):
    """Image number `index` of a chunk cannot be decoded."""

    def __init__(self, index: int, reason: str):
        super().__init__(index, reason)
        self.index = index
        self.reason = reason

    def naming(self, path: Path) -> DataError:
        return DataError(f"{path}: cannot be decoded ({self.reason})")


def first_undecodable(encoded: Sequence[bytes]) -> tuple[int, str] | None:
    """(position, reason) of the first image that does not decode as JPEG/PNG/GIF/BMP, else None."""
    import tensorflow as tf

    for index, blob in enumerate(encoded):
        try:
            tf.io.decode_image(blob, channels=1, expand_animations=False)
        except (tf.errors.InvalidArgumentError, ValueError) as error:
            return index, getattr(error, "message", str(error)).splitlines()[0]
    return None


class Embedder(Protocol):
    """Encoded images → float32 (n, 2048) features; `spec` names the backbone in the store."""

    spec: BackboneSpec

    def __call__(self, encoded: list[bytes]) -> np.ndarray: ...


def worker_backbone(spec: BackboneSpec, tf_threads: int) -> Backbone:
    if spec not in _LOADED:
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # already initialised (in-process cluster): keep its threads
            tf.config.threading.set_intra_op_parallelism_threads(tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(tf_threads)
        _LOADED[spec] = load_backbone(spec)
    return _LOADED[spec]


def list_images(split_dir: Path, data_root: Path) -> list[ImageRecord]:
    """Every image of a split folder (<split>/<digit>/<file>), sorted by path, with label and content hash."""
    records = []
    for path in sorted(split_dir.glob("*/*")):
        if not path.is_file():
            continue
        if not path.parent.name.isdigit():
            raise DataError(f"{path}: the folder name must be the digit (0-9) it holds")
        records.append(ImageRecord(path.relative_to(data_root).as_posix(), int(path.parent.name), sha256_bytes(path.read_bytes())))
    if not records:
        raise FileNotFoundError(f"{split_dir} holds no images (<digit>/<file>); run the convert stage first")
    return records


def tf_threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


@contextlib.contextmanager
def dask_client(executor: ExecutorSpec) -> Iterator:
    """A Client on a LocalCluster of single-threaded worker processes, or on the given scheduler."""
    import dask
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)  # dask's own config sets INFO on import
    if executor.scheduler != "local":
        with Client(executor.scheduler) as client:
            yield client
        return
    # Dask's default worker environment pins OMP/MKL to 1 thread and sets MALLOC_TRIM_THRESHOLD_=65536,
    # which made glibc return TensorFlow's buffers to the kernel after every op: measured here, 40 % of
    # the backbone's throughput lost. Workers get cores/workers threads and glibc's default malloc.
    threads = tf_threads_per_worker(executor.workers)
    worker_environ = {name: threads for name in BLAS_THREAD_VARIABLES}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ}), LocalCluster(
        n_workers=executor.workers, threads_per_worker=1, processes=True,
        dashboard_address=":0",  # any free port: runs side by side never clash
        silence_logs=logging.WARNING,
    ) as cluster, Client(cluster) as client:
        yield client


def chunked(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class EmbedRun:
    """How missing features get computed: by `embedder` in Dask tasks of `chunk_images` images."""

    embedder: Embedder
    client: Any  # a distributed.Client
    chunk_images: int
    max_in_flight: int  # chunks submitted ahead, so that no worker waits for the client


def fill_store(
    missing_paths: dict[str, str], data_root: Path, store: FeatureStore, backbone_id: str, run: EmbedRun
) -> None:
    """Compute and store the features of {image hash: path relative to data_root}, chunk by chunk."""
    from distributed import as_completed

    chunks = iter(chunked(list(missing_paths), run.chunk_images))
    in_flight = as_completed()
    hashes_of: dict[str, Sequence[str]] = {}

    def submit_next() -> None:
        hashes = next(chunks, None)
        if hashes is not None:
            encoded = [(data_root / missing_paths[image_hash]).read_bytes() for image_hash in hashes]
            future = run.client.submit(run.embedder, encoded, pure=False)
            hashes_of[future.key] = hashes
            in_flight.add(future)

    for _ in range(run.max_in_flight):
        submit_next()
    started = last_report = time.perf_counter()
    done = 0
    with tqdm(total=len(missing_paths), unit="img", desc="backbone", disable=None) as progress:
        for future in in_flight:
            hashes = hashes_of.pop(future.key)
            try:
                vectors = future.result()
            except UndecodableImage as bad:
                raise bad.naming(data_root / missing_paths[hashes[bad.index]]) from bad
            except Exception as error:
                first = missing_paths[hashes[0]]
                raise RuntimeError(f"embedding the chunk that starts with {first} failed: {error}") from error
            store.put(backbone_id, hashes, vectors)  # one transaction per chunk: a crash loses only chunks in flight
            progress.update(len(hashes))
            done += len(hashes)
            submit_next()
            if progress.disable and time.perf_counter() - last_report > PROGRESS_LOG_S:  # no tty: log lines instead
                last_report = time.perf_counter()
                log.info("%d/%d images (%.1f images/s)", done, len(missing_paths), done / (last_report - started))


def ensure_features(
    records: Sequence[ImageRecord], data_root: Path, store: FeatureStore, embedder: Embedder, executor: ExecutorSpec
) -> int:
    """Make the store hold features of every record for embedder.spec; return how many were computed."""
    backbone_id = embedder.spec.identity()
    first_path: dict[str, str] = {}
    for record in records:
        first_path.setdefault(record.sha256, record.rel_path)
    missing = store.missing(backbone_id, first_path)
    log.info("%d images, %d distinct, %d already in the feature store", len(records), len(first_path), len(first_path) - len(missing))
    if not missing:
        return 0
    started = time.perf_counter()
    with dask_client(executor) as client:
        run = EmbedRun(embedder, client, executor.chunk_images, max_in_flight=2 * executor.workers)
        fill_store({image_hash: first_path[image_hash] for image_hash in missing}, data_root, store, backbone_id, run)
    elapsed_s = time.perf_counter() - started
    log.info("computed %d features in %.1fs (%.1f images/s)", len(missing), elapsed_s, len(missing) / elapsed_s)
    return len(missing)


def embed_missing(
    records: Sequence[ImageRecord], data_root: Path, store: FeatureStore, embedder: Embedder, chunk_images: int
) -> int:
    """In this process: embed the records the store lacks, one transaction per chunk; return how many."""
    backbone_id = embedder.spec.identity()
    paths = {record.sha256: record.rel_path for record in records}
    missing = store.missing(backbone_id, paths)
    for hashes in chunked(missing, chunk_images):
        try:
            vectors = embedder([(data_root / paths[image_hash]).read_bytes() for image_hash in hashes])
        except UndecodableImage as bad:
            raise bad.naming(data_root / paths[hashes[bad.index]]) from bad
        store.put(backbone_id, hashes, vectors)
    return len(missing)
