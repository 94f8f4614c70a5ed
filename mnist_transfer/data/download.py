"""Download the four MNIST .gz files from the first mirror that serves them intact.

Reads params `data.mirrors`, `data.files` (name, bytes, sha256), `data.download` → writes data/raw/*.gz.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

from tqdm import tqdm

from mnist_transfer.errors import ParamsError, StageError
from mnist_transfer.outputs import atomic_path
from mnist_transfer.params import PinnedFile

log = logging.getLogger("download")

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 16
OFFLINE_HINT = (
    "If this machine has no network, point data.mirrors at a local folder (or file:// URL) that holds "
    "the four .gz files, e.g. `dvc exp run -S 'data.mirrors=[\"/path/to/mnist\"]'` or edit params.yaml."
)


@dataclass(frozen=True)
class ExpectedFile:
    name: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # per mirror, for transient errors only
    backoff_s: float = 1.0  # doubled after each failed attempt
    timeout_s: float = 60.0


class MirrorFailure(Exception):
    """One mirror could not deliver one file; `transient` failures are worth retrying."""

    def __init__(self, reason: str, transient: bool = False):
        super().__init__(reason)
        self.transient = transient


class DownloadError(StageError, RuntimeError):
    """Every mirror failed for a file."""


Opener = Callable[[str, float], BinaryIO]


def open_source(source: str, timeout_s: float) -> BinaryIO:
    """Open an http(s)/file URL or a plain local path for reading."""
    if "://" in source:
        return urllib.request.urlopen(source, timeout=timeout_s)  # noqa: S310 (schemes checked in source_for)
    return open(source, "rb")


def source_for(mirror: str, name: str) -> str:
    """Where `name` lives on `mirror`: a URL for http(s)/file mirrors, else a local path."""
    scheme = urllib.parse.urlsplit(mirror).scheme
    if scheme in ("http", "https", "file"):
        return mirror.rstrip("/") + "/" + urllib.parse.quote(name)
    if "://" in mirror:
        raise ParamsError(f"data.mirrors: unsupported scheme in {mirror!r} (use https://, http://, file:// or a folder)")
    return str(Path(mirror).expanduser() / name)


def classify_error(error: Exception) -> MirrorFailure:
    """Turn a network/file error into a MirrorFailure that says whether retrying can help."""
    if isinstance(error, urllib.error.HTTPError):
        transient = error.code >= 500 or error.code == 429
        return MirrorFailure(f"HTTP {error.code} {error.reason}", transient=transient)
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        if isinstance(reason, socket.gaierror):
            return MirrorFailure(f"cannot resolve host ({reason}); no network?")
        if isinstance(reason, (FileNotFoundError, IsADirectoryError)):
            return MirrorFailure(f"no such file ({reason})")
        return MirrorFailure(f"connection failed ({reason})", transient=True)
    if isinstance(error, (FileNotFoundError, IsADirectoryError)):
        return MirrorFailure(f"no such file ({error})")
    if isinstance(error, (TimeoutError, ConnectionError, http.client.HTTPException)):
        return MirrorFailure(f"{type(error).__name__}: {error}", transient=True)
    return MirrorFailure(f"{type(error).__name__}: {error}")


def copy_verified(stream: BinaryIO, dest: BinaryIO, expected: ExpectedFile, progress: tqdm) -> None:
    """Stream into dest, checking gzip magic, size and sha256; raise MirrorFailure on any mismatch."""
    digest = hashlib.sha256()
    size_bytes = 0
    while chunk := stream.read(CHUNK_BYTES):
        if size_bytes == 0 and not chunk.startswith(GZIP_MAGIC):
            preview = chunk[:40].decode("latin-1").replace("\n", " ")
            kind = "an HTML page" if b"<html" in chunk[:512].lower() else "not a gzip file"
            raise MirrorFailure(f"served {kind} (starts with {preview!r})")
        size_bytes += len(chunk)
        if size_bytes > expected.size_bytes:
            raise MirrorFailure(f"larger than the expected {expected.size_bytes} bytes")
        digest.update(chunk)
        dest.write(chunk)
        progress.update(len(chunk))
    if size_bytes != expected.size_bytes:
        raise MirrorFailure(f"truncated: got {size_bytes} of {expected.size_bytes} bytes")
    if digest.hexdigest() != expected.sha256:
        raise MirrorFailure(f"sha256 mismatch: got {digest.hexdigest()}, expected {expected.sha256}")


def fetch_once(source: str, dest_path: Path, expected: ExpectedFile, retry: RetryPolicy, opener: Opener) -> None:
    """One attempt: download source into dest_path and verify it."""
    with tqdm(total=expected.size_bytes, unit="B", unit_scale=True, desc=expected.name, disable=None) as progress:
        try:
            with opener(source, retry.timeout_s) as stream, open(dest_path, "wb") as dest:
                copy_verified(stream, dest, expected, progress)
        except MirrorFailure:
            raise
        except Exception as error:  # network and file errors are classified, not swallowed
            raise classify_error(error) from error


def fetch_with_retries(
    source: str, dest_path: Path, expected: ExpectedFile, retry: RetryPolicy, opener: Opener
) -> None:
    """Retry transient failures with exponential backoff; re-raise the last failure."""
    for attempt in range(1, retry.attempts + 1):
        try:
            return fetch_once(source, dest_path, expected, retry, opener)
        except MirrorFailure as failure:
            if not failure.transient or attempt == retry.attempts:
                raise
            delay_s = retry.backoff_s * 2 ** (attempt - 1)
            log.warning("%s: %s (attempt %d/%d), retrying in %.1fs", source, failure, attempt, retry.attempts, delay_s)
            time.sleep(delay_s)


def download_file(
    expected: ExpectedFile, mirrors: list[str], out_dir: Path, retry: RetryPolicy, opener: Opener = open_source
) -> str:
    """Fetch one file from the first mirror that delivers it intact; return that mirror.

    The file appears in out_dir only once verified (temp file + rename), so no partial .gz is left.
    """
    failures = []
    for mirror in mirrors:
        source = source_for(mirror, expected.name)
        try:
            with atomic_path(out_dir / expected.name) as tmp_path:
                fetch_with_retries(source, tmp_path, expected, retry, opener)
            return mirror
        except MirrorFailure as failure:
            log.warning("%s: %s; trying the next mirror", source, failure)
            failures.append(f"  - {source}: {failure}")
    raise DownloadError(
        f"could not download {expected.name} from any of {len(mirrors)} mirror(s):\n"
        + "\n".join(failures)
        + f"\n{OFFLINE_HINT}"
    )


def expected_files(files: Sequence[PinnedFile]) -> list[ExpectedFile]:
    """The pinned files of `data.files` (validated by the schema) as the records the download checks against."""
    return [ExpectedFile(pinned.name, pinned.bytes, pinned.sha256.lower()) for pinned in files]


def download_all(files: list[ExpectedFile], mirrors: list[str], out_dir: Path, retry: RetryPolicy) -> dict[str, str]:
    """Download every file; return {file name: mirror it came from}."""
    if not mirrors:
        raise ParamsError(f"data.mirrors is empty. {OFFLINE_HINT}")
    return {expected.name: download_file(expected, mirrors, out_dir, retry) for expected in files}
