"""Benchmark: the web server's memory under bursts of huge uploads — idle and peak RSS of the server process
(psutil, sampled every 10 ms) while 8 uploads are sent at once, for the largest image it accepts and for one
it must refuse (12,000 × 12,000 px). Goal: peak ≤ idle + 1 GiB. A fresh server per burst, on 127.0.0.1.

    python -m benchmarks.uploads [--model data/model] [--concurrency 8]

Without --model, the server runs the real app on a stand-in model (no TensorFlow): the decoding and
normalising that uploads cost are the same, the idle RSS is smaller.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from benchmarks.record import add_record_flag, record
from benchmarks.serve import free_port
from mnist_transfer.data.images import MAX_PIXELS

GIB = 1024**3
GOAL_BYTES = 1 * GIB
SAMPLE_S = 0.01
UPLOAD_LIMIT_MB = 5.0  # `mnist-transfer serve`'s default --max-upload-mb


@dataclass(frozen=True)
class StandInModel:
    """Answers without TensorFlow: digit = ink pixels // 40, capped at 9."""

    identity: str = "stand-in@ink-mass"
    labels: tuple[str, ...] = tuple(str(digit) for digit in range(10))

    def predict(self, images: np.ndarray) -> np.ndarray:
        digits = np.minimum((images > 127).sum(axis=(1, 2)) // 40, 9)
        return np.eye(10, dtype=np.float32)[digits] * 0.91 + 0.01


@dataclass(frozen=True)
class Burst:
    """One benchmarked upload: its name, format and bytes."""

    name: str
    filename: str
    payload: bytes


def digit_on_paper(side_px: int, mode: str) -> Image.Image:
    """A dark '1' on white paper, side_px square, in `mode` (RGBA: opaque paper, the stroke semi-transparent)."""
    grey = np.full((side_px, side_px), 255, np.uint8)
    grey[side_px // 5 : side_px - side_px // 5, side_px // 2 - side_px // 20 : side_px // 2 + side_px // 20] = 30
    image = Image.fromarray(grey)
    if mode == "RGBA":
        alpha = Image.fromarray(np.where(grey < 128, 200, 255).astype(np.uint8))
        return Image.merge("RGBA", [*image.convert("RGB").split(), alpha])
    return image.convert(mode)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def bursts() -> list[Burst]:
    """The largest accepted image (an RGBA PNG: the most memory per pixel; a JPEG), and a refused one."""
    side = int(MAX_PIXELS**0.5)  # side² ≤ MAX_PIXELS
    return [
        Burst(f"{side}×{side} RGBA PNG (accepted)", "max.png", encode(digit_on_paper(side, "RGBA"), "PNG")),
        Burst(f"{side}×{side} RGB JPEG (accepted)", "max.jpg", encode(digit_on_paper(side, "RGB"), "JPEG", quality=90)),
        Burst("12000×12000 grey PNG (refused)", "huge.png", encode(digit_on_paper(12_000, "L"), "PNG")),
    ]


def post_image(url: str, burst: Burst) -> tuple[int, str]:
    """(status, first 100 characters of the answer) for one multipart POST of the image."""
    boundary = "benchmark-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{burst.filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + burst.payload + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read(100).decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read(100).decode(errors="replace")


def server_command(port: int, model: Path | None) -> list[str]:
    if model is not None:
        return [sys.executable, "-m", "mnist_transfer", "serve", "--port", str(port), "--model", str(model),
                "--max-upload-mb", str(UPLOAD_LIMIT_MB)]
    return [sys.executable, "-m", "benchmarks.uploads", "--stand-in-server", str(port)]


def run_stand_in_server(port: int) -> None:
    """The real app on a stand-in model, on 127.0.0.1:port (what --stand-in-server runs in a child process)."""
    import tempfile

    import uvicorn

    from mnist_transfer.app.serve import return_freed_memory_to_the_os
    from mnist_transfer.app.webapp import AppConfig, create_app

    return_freed_memory_to_the_os()  # as `mnist-transfer serve` does
    own_dir = Path(tempfile.mkdtemp(prefix="benchmark-own-"))
    app = create_app(AppConfig({"transfer": StandInModel()}, own_dir, int(UPLOAD_LIMIT_MB * 2**20)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def wait_until_up(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).read()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit("the server did not start (with --model: run `dvc repro` first so that the model exists)")
            time.sleep(0.3)


def peak_rss_during(pid: int, action: Callable[[], object]) -> tuple[int, object]:
    """(the process's peak RSS in bytes while action runs, action's result), sampling every SAMPLE_S."""
    process, peak, done = psutil.Process(pid), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = action()
    finally:
        done.set()
        sampler.join()
    return peak[0], result


def measure(burst: Burst, model: Path | None, concurrency: int, warm_up: Burst, enabled: bool = True) -> None:
    """Start a fresh server, warm it up, send `concurrency` copies of the burst at once, print and record RSS figures
    (enabled=False: no record)."""
    port = free_port()
    server = subprocess.Popen(server_command(port, model), env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, server)
        for _ in range(3):  # first requests import and trace what they need
            post_image(base + "/api/predict", warm_up)
        time.sleep(0.5)
        idle = psutil.Process(server.pid).memory_info().rss
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            peak, answers = peak_rss_during(server.pid, lambda: list(pool.map(
                lambda _: post_image(base + "/api/predict", burst), range(concurrency))))
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    statuses = Counter(status for status, _ in answers)
    increase = peak - idle
    print(f"{burst.name}, {len(burst.payload) / 1e6:.2f} MB ×{concurrency} at once: "
          f"status {dict(statuses)} in {elapsed:.1f} s; e.g. {answers[0][1][:90]!r}")
    print(f"  server RSS idle {idle / GIB:.2f} GiB, peak {peak / GIB:.2f} GiB, increase {increase / GIB:.2f} GiB "
          f"({increase / GOAL_BYTES:.0%} of the 1 GiB goal)")
    record("uploads", {"upload MB": len(burst.payload) / 1e6, "answers 200": statuses.get(200, 0), "s": elapsed,
                       "idle GiB": idle / GIB, "peak GiB": peak / GIB, "increase GiB": increase / GIB},
           setup={"burst": burst.name, "concurrency": concurrency,
                  "server": "app on a stand-in model" if model is None else f"mnist-transfer serve --model {model}"},
           enabled=enabled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="serve this exported model with `mnist-transfer serve`")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--stand-in-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    add_record_flag(parser)
    args = parser.parse_args()
    if args.stand_in_server:
        run_stand_in_server(args.stand_in_server)
        return
    warm_up = Burst("a 280×280 drawing", "drawing.png", encode(digit_on_paper(280, "L"), "PNG"))
    print(f"server: {'mnist-transfer serve --model ' + str(args.model) if args.model else 'the app on a stand-in model'}"
          f"; {os.cpu_count()} CPUs")
    for burst in bursts():
        measure(burst, args.model, args.concurrency, warm_up, args.record)


if __name__ == "__main__":
    main()
