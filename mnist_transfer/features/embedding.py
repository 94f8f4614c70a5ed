"""Fill the feature store for a set of images: the one embedding path of every stage.

ensure_features: the client reads and hashes the images, asks the store which hashes it lacks, sends
those images' bytes in chunks to Dask workers (each loads the backbone once) and writes every returned
chunk to the store in one transaction. Workers only turn bytes into features: they need no access to
the repository, the data folder or the store, so any Dask cluster works. Nothing is computed twice; a
killed run resumes from the last stored chunk; no cluster is started when nothing is missing.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from mnist_transfer.data.records import ImageRecord
from mnist_transfer.errors import StageError
from mnist_transfer.features.backbone import Backbone, BackboneSpec, load_backbone
from mnist_transfer.features.decode import UndecodableImage, first_undecodable
from mnist_transfer.features.feature_store import FeatureStore
from mnist_transfer.params import BackboneParams

log = logging.getLogger("embedding")

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
PROGRESS_LOG_S = 30.0  # without a terminal, a progress line this often
CONNECT_TIMEOUT_S = 30.0  # to reach a separately started scheduler (executor.scheduler)
WORKER_WAIT_S = 300.0  # for the first worker of a cluster that has none yet (still scaling up, say)
MAX_RESUBMITS = 1  # per chunk that Dask gave up on after its workers died allowed-failures + 1 times

_LOADED: dict[BackboneSpec, Backbone] = {}  # per worker process: each backbone is loaded once


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
    tf_threads: int  # intra-op threads per worker, so that workers × threads ≤ cores; 0: TensorFlow's (all cores)

    def __call__(self, encoded: list[bytes]) -> np.ndarray | UndecodableImage:
        backbone = worker_backbone(self.spec, self.tf_threads)
        try:
            return backbone.embed_encoded(encoded, self.batch_size)
        except Exception:  # find the image at fault, so that the error can name its file
            culprit = first_undecodable(encoded)
            if culprit is None:
                raise
            # returned, not raised: a task that raises makes its Dask worker log a traceback
            return UndecodableImage(*culprit)


class ClusterError(StageError, RuntimeError):
    """The Dask cluster named by executor.scheduler cannot do the work."""


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


def tf_threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def embedding_setup(
    backbone: BackboneParams, batch_size: int, chunk_images: int, scheduler: str, workers: int
) -> tuple[BackboneSpec, BackboneEmbedder, ExecutorSpec]:
    """The backbone, embedder and executor of a stage that embeds images with `workers` processes."""
    spec = BackboneSpec.from_params(backbone)
    embedder = BackboneEmbedder(spec, batch_size, tf_threads_per_worker(workers))
    return spec, embedder, ExecutorSpec(scheduler, workers, chunk_images)


@contextlib.contextmanager
def dask_client(executor: ExecutorSpec) -> Iterator:
    """A Client on a LocalCluster of single-threaded worker processes, or on the given scheduler."""
    import dask
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)  # dask's own config sets INFO on import
    if executor.scheduler != "local":
        with remote_client(executor.scheduler) as client:
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


@contextlib.contextmanager
def remote_client(address: str) -> Iterator:
    """A Client on a separately started cluster, once it has a worker; errors that say what to start."""
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as error:
        raise ClusterError(
            f"cannot reach the Dask scheduler at executor.scheduler={address} ({error}); start it "
            f"(`dask scheduler`, see docs/dask.md) or set executor.scheduler: local"
        ) from error
    with client:
        if not client.scheduler_info()["workers"]:
            log.info("waiting up to %.0fs for a worker to join the Dask scheduler at %s", WORKER_WAIT_S, address)
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError as error:
            raise ClusterError(
                f"the Dask scheduler at executor.scheduler={address} has had no worker for {WORKER_WAIT_S:.0f}s; "
                f"start some with `dask worker {address}` (see docs/dask.md)"
            ) from error
        yield client


def for_executor(embedder: Embedder, executor: ExecutorSpec) -> Embedder:
    """On a separately started cluster, TensorFlow threads follow each worker machine's own cores (0), not the
    cores of the machine that runs the stage."""
    if executor.scheduler != "local" and isinstance(embedder, BackboneEmbedder):
        return replace(embedder, tf_threads=0)
    return embedder


def cluster_threads(client: Any) -> int:
    """Task threads of every worker the client's scheduler knows now (at least 1)."""
    return max(1, sum(client.nthreads().values()))


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


@dataclass
class ChunkTasks:
    """The chunks on the cluster: the client reads each chunk's files and submits their bytes as one task."""

    missing_paths: dict[str, str]  # image hash → path relative to data_root
    data_root: Path
    run: EmbedRun
    in_flight: Any  # a distributed.as_completed of the submitted futures
    chunk_of: dict[str, tuple[Sequence[str], int]] = field(default_factory=dict)  # task key → (hashes, resubmits)

    def submit(self, hashes: Sequence[str], resubmits: int = 0) -> None:
        encoded = [(self.data_root / self.missing_paths[image_hash]).read_bytes() for image_hash in hashes]
        future = self.run.client.submit(self.run.embedder, encoded, pure=False)
        self.chunk_of[future.key] = (hashes, resubmits)
        self.in_flight.add(future)

    def collect(self, future: Any) -> tuple[Sequence[str], np.ndarray | None]:
        """(hashes, vectors) of a finished task; vectors is None when the chunk had to be resubmitted."""
        from distributed import KilledWorker

        hashes, resubmits = self.chunk_of.pop(future.key)
        first = self.missing_paths[hashes[0]]
        try:
            result = future.result()
        except KilledWorker as error:  # its workers died more often than distributed.scheduler.allowed-failures
            if resubmits >= MAX_RESUBMITS:
                raise ClusterError(
                    f"the chunk that starts with {first} killed its Dask workers again after {resubmits} resubmit(s) "
                    f"({error}); out of memory? lower bottlenecks.batch_size, and see the workers' logs"
                ) from error
            log.warning("the workers computing the chunk that starts with %s died (%s); resubmitting it", first, error)
            self.submit(hashes, resubmits + 1)
            return hashes, None
        except Exception as error:
            raise RuntimeError(f"embedding the chunk that starts with {first} failed: {error}") from error
        finally:
            future.release()  # its result is here now: a worker that dies later costs no recomputation
        if isinstance(result, UndecodableImage):
            raise result.naming(self.data_root / self.missing_paths[hashes[result.index]]) from result
        return hashes, result


class ProgressLog:
    """Images done: a tqdm bar on a terminal, else a log line every PROGRESS_LOG_S."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.started = self.last_report = time.perf_counter()
        self.bar = tqdm(total=total, unit="img", desc="backbone", disable=None)

    def __enter__(self) -> ProgressLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.close()

    def update(self, n_images: int) -> None:
        self.bar.update(n_images)
        self.done += n_images
        now = time.perf_counter()
        if self.bar.disable and now - self.last_report > PROGRESS_LOG_S:
            self.last_report = now
            log.info("%d/%d images (%.1f images/s)", self.done, self.total, self.done / (now - self.started))


def fill_store(
    missing_paths: dict[str, str], data_root: Path, store: FeatureStore, backbone_id: str, run: EmbedRun
) -> None:
    """Compute and store the features of {image hash: path relative to data_root}, chunk by chunk.

    A worker that dies (kill -9, out of memory) loses nothing: Dask reruns its chunks elsewhere, and a
    chunk Dask gives up on (KilledWorker) is resubmitted up to MAX_RESUBMITS times. A stored chunk's
    task is released at once, so no stored chunk is ever computed again.
    """
    from distributed import as_completed

    chunks = iter(chunked(list(missing_paths), run.chunk_images))
    tasks = ChunkTasks(missing_paths, data_root, run, as_completed())
    for hashes in itertools.islice(chunks, run.max_in_flight):
        tasks.submit(hashes)
    with ProgressLog(len(missing_paths)) as progress:
        for future in tasks.in_flight:
            hashes, vectors = tasks.collect(future)
            if vectors is None:
                continue
            store.put(backbone_id, hashes, vectors)  # one transaction per chunk: a crash loses only chunks in flight
            progress.update(len(hashes))
            next_hashes = next(chunks, None)
            if next_hashes is not None:
                tasks.submit(next_hashes)


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
        log.info("nothing to compute: no cluster started, no backbone loaded")
        return 0
    started = time.perf_counter()
    with dask_client(executor) as client:
        run = EmbedRun(for_executor(embedder, executor), client, executor.chunk_images, 2 * cluster_threads(client))
        fill_store({image_hash: first_path[image_hash] for image_hash in missing}, data_root, store, backbone_id, run)
    elapsed_s = time.perf_counter() - started
    log.info("computed %d features in %.1fs (%.1f images/s)", len(missing), elapsed_s, len(missing) / elapsed_s)
    return len(missing)
