"""Benchmark: /api/predict latency (p50, p95) and requests/s on loopback, against `mnist-transfer serve`
started by this script on the exported models.

    python -m benchmarks.serve [--model data/model] [--cnn-model data/cnn] [--requests 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.record import add_record_flag, record


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def drawn_digit() -> bytes:
    """A 280×280 drawing like the page's canvas sends: a black '7' on white, as PNG."""
    pixels = np.full((280, 280), 255, np.uint8)
    pixels[60:80, 70:210] = 0
    for row in range(80, 230):
        col = 210 - (row - 80) * 0.6
        pixels[row, int(col) - 10 : int(col) + 10] = 0
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def post_image(url: str, payload: bytes) -> float:
    """Seconds for one multipart POST of `payload` as the field `image`."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"d.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return time.perf_counter() - started


def model_names(healthz: str) -> str:
    """'transfer: <identity>, cnn: <identity>' from /healthz's answer (the answer itself if it is not that JSON)."""
    try:
        return ", ".join(f"{name}: {identity}" for name, identity in json.loads(healthz)["models"].items())
    except (ValueError, KeyError, TypeError, AttributeError):
        return healthz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("data/model"))
    parser.add_argument("--cnn-model", type=Path, default=Path("data/cnn"))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    add_record_flag(parser)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mnist_transfer", "serve", "--port", str(port), "--model", str(args.model),
         "--cnn-model", str(args.cnn_model)],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                models = urllib.request.urlopen(base + "/healthz", timeout=2).read().decode()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the server did not start (run `dvc repro` first so that the models exist)")
                time.sleep(0.5)
        payload = drawn_digit()
        for _ in range(5):  # warm-up: first calls trace the models' functions
            post_image(base + "/api/predict", payload)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            latencies = np.array(list(pool.map(lambda _: post_image(base + "/api/predict", payload), range(args.requests))))
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"/api/predict on loopback, {args.requests} requests, {args.concurrency} at a time; models: {models}")
    print(f"latency p50 {1000 * np.percentile(latencies, 50):.1f} ms, p95 {1000 * np.percentile(latencies, 95):.1f} ms")
    print(f"throughput {args.requests / elapsed:.1f} requests/s")
    record("serve", {"p50 ms": 1000 * np.percentile(latencies, 50), "p95 ms": 1000 * np.percentile(latencies, 95),
                     "requests/s": args.requests / elapsed},
           setup={"requests": args.requests, "concurrency": args.concurrency, "models": model_names(models)},
           enabled=args.record)


if __name__ == "__main__":
    main()
