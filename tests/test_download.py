"""Download stage: mirrors over a real HTTP server on 127.0.0.1, file:// URLs and plain folders."""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mnist_transfer.data.download import (
    DownloadError,
    ExpectedFile,
    RetryPolicy,
    download_file,
    expected_files,
    source_for,
)
from mnist_transfer.errors import ParamsError
from mnist_transfer.params import PinnedFile

PAYLOAD = gzip.compress(b"IDX" * 5000)
EXPECTED = ExpectedFile("train-labels-idx1-ubyte.gz", len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest())
FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=5)


class MirrorHandler(BaseHTTPRequestHandler):
    """Serves /<behaviour>/<file>: good, missing (404), html, truncated, wrong (bad checksum), flaky (503 once)."""

    requests_seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.requests_seen.append(self.path)
        behaviour = self.path.split("/")[1]
        if behaviour == "missing":
            return self.send_error(404)
        if behaviour == "flaky" and self.requests_seen.count(self.path) == 1:
            return self.send_error(503)
        body = {
            "good": PAYLOAD,
            "flaky": PAYLOAD,
            "html": b"<!DOCTYPE html><html><body>Access denied</body></html>",
            "truncated": PAYLOAD[: len(PAYLOAD) // 2],
            "wrong": PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF]),
        }[behaviour]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def server_url():
    MirrorHandler.requests_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)  # quick shutdown
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_good_mirror_delivers_verified_file(server_url: str, tmp_path: Path):
    mirror = download_file(EXPECTED, [f"{server_url}/good/"], tmp_path, FAST_RETRY)
    assert mirror == f"{server_url}/good/"
    assert (tmp_path / EXPECTED.name).read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == [EXPECTED.name]  # no temp file left


@pytest.mark.parametrize(
    "behaviour, logged_reason",
    [
        ("missing", "HTTP 404"),
        ("html", "served an HTML page"),
        ("truncated", f"truncated: got {len(PAYLOAD) // 2} of {len(PAYLOAD)} bytes"),
        ("wrong", "sha256 mismatch"),
    ],
)
def test_bad_mirror_is_logged_and_next_one_used(
    server_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, behaviour: str, logged_reason: str
):
    caplog.set_level(logging.WARNING)
    mirrors = [f"{server_url}/{behaviour}/", f"{server_url}/good/"]
    assert download_file(EXPECTED, mirrors, tmp_path, FAST_RETRY) == f"{server_url}/good/"
    assert (tmp_path / EXPECTED.name).read_bytes() == PAYLOAD
    assert logged_reason in caplog.text
    # a permanent failure is not retried: one request to the bad mirror
    assert sum(path.startswith(f"/{behaviour}/") for path in MirrorHandler.requests_seen) == 1


def test_every_mirror_failing_lists_each_reason_and_leaves_nothing(server_url: str, tmp_path: Path):
    mirrors = [f"{server_url}/missing/", f"{server_url}/html/", f"{server_url}/wrong/"]
    with pytest.raises(DownloadError) as raised:
        download_file(EXPECTED, mirrors, tmp_path, FAST_RETRY)
    message = str(raised.value)
    for mirror, reason in zip(mirrors, ["HTTP 404", "HTML page", "sha256 mismatch"]):
        assert f"{mirror}{EXPECTED.name}: " in message and reason in message
    assert "data.mirrors" in message  # says what to do
    assert list(tmp_path.iterdir()) == []  # no partial .gz


def test_transient_error_is_retried(server_url: str, tmp_path: Path):
    download_file(EXPECTED, [f"{server_url}/flaky/"], tmp_path, FAST_RETRY)
    assert MirrorHandler.requests_seen == [f"/flaky/{EXPECTED.name}"] * 2
    assert (tmp_path / EXPECTED.name).read_bytes() == PAYLOAD


def test_refused_connection_retries_a_bounded_number_of_times(
    tmp_path: Path, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING)
    with pytest.raises(DownloadError, match="connection failed") as raised:
        download_file(EXPECTED, [f"http://127.0.0.1:{unused_tcp_port}/"], tmp_path, FAST_RETRY)
    assert "local folder" in str(raised.value)  # the offline way out
    retries = [record.getMessage() for record in caplog.records if "retrying" in record.getMessage()]
    assert len(retries) == FAST_RETRY.attempts - 1  # a transient error: retried, but only up to the attempts
    assert f"(attempt {FAST_RETRY.attempts - 1}/{FAST_RETRY.attempts})" in retries[-1]


@pytest.mark.parametrize("as_url", [True, False])
def test_local_folder_mirror(tmp_path: Path, as_url: bool):
    mirror_dir = tmp_path / "mirror"
    mirror_dir.mkdir()
    (mirror_dir / EXPECTED.name).write_bytes(PAYLOAD)
    out_dir = tmp_path / "out"
    mirror = mirror_dir.as_uri() + "/" if as_url else str(mirror_dir)
    download_file(EXPECTED, [str(tmp_path / "empty"), mirror], out_dir, FAST_RETRY)
    assert (out_dir / EXPECTED.name).read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    "mirror, expected",
    [
        ("https://host/mnist/", "https://host/mnist/a.gz"),
        ("http://host/mnist", "http://host/mnist/a.gz"),
        ("file:///srv/mnist/", "file:///srv/mnist/a.gz"),
        ("/srv/mnist", "/srv/mnist/a.gz"),
    ],
)
def test_source_for(mirror: str, expected: str):
    assert source_for(mirror, "a.gz") == expected


def test_unsupported_scheme_names_the_param():
    with pytest.raises(ParamsError, match="data.mirrors"):
        source_for("ftp://host/mnist/", "a.gz")


def test_expected_files_are_the_pinned_files_with_lowercase_digests():
    pinned = PinnedFile(name="a.gz", bytes=7, sha256="AB" * 32)
    assert expected_files([pinned]) == [ExpectedFile("a.gz", 7, "ab" * 32)]
