"""Shared fixtures: tiny MNIST-like data, the local MNIST mirror, and a temporary copy of the pipeline."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from mnist_transfer.data.idx import encode_idx
from mnist_transfer.features.backbone import FEATURE_DIM, BackboneSpec
from scripts.demo import PIPELINE_FILES, copy_pipeline, update_params  # noqa: F401 - the tests' pipeline copies

REPO_ROOT = Path(__file__).resolve().parents[1]
# Files a fresh clone needs to run the pipeline; data/ and reports/ are produced by it.
def mnist_mirror_dir() -> Path:
    return Path(os.environ.get("MNIST_MIRROR", REPO_ROOT.parent / "shared" / "mnist")).resolve()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The local folder with the four MNIST .gz files; skip (or fail under REQUIRE_MNIST=1) if absent."""
    folder = mnist_mirror_dir()
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        reason = f"MNIST mirror {folder} not found (set MNIST_MIRROR to a folder with the four .gz files)"
        if os.environ.get("REQUIRE_MNIST") == "1":
            pytest.fail(f"REQUIRE_MNIST=1 but {reason}")
        pytest.skip(reason)
    return folder


def require_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths; skip without them, or fail under REQUIRE_BROWSER=1 (as CI runs)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        reason = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but the test {reason}")
        pytest.skip(reason)
    return chromium, driver


def tiny_split(n_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 28x28 images: a flat square whose brightness encodes the label, at a random place."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n_images) % 10).astype(np.uint8)
    images = np.zeros((n_images, 28, 28), dtype=np.uint8)
    for position, label in enumerate(labels):
        top, left = rng.integers(2, 14, size=2)
        images[position, top : top + 12, left : left + 12] = 25 * label + 20
    return images, labels


@pytest.fixture
def tiny_idx_dir(tmp_path: Path) -> Path:
    """A data/idx-like folder: 50 training and 20 testing images in uncompressed IDX files."""
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    for prefix, n_images in (("train", 50), ("t10k", 20)):
        images, labels = tiny_split(n_images, seed=n_images)
        (idx_dir / f"{prefix}-images-idx3-ubyte").write_bytes(encode_idx(images))
        (idx_dir / f"{prefix}-labels-idx1-ubyte").write_bytes(encode_idx(labels))
    return idx_dir


@pytest.fixture
def tiny_raw_dir(tiny_idx_dir: Path, tmp_path: Path) -> Path:
    """The tiny IDX files gzipped, as the download stage leaves them."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for idx_file in tiny_idx_dir.iterdir():
        (raw_dir / f"{idx_file.name}.gz").write_bytes(gzip.compress(idx_file.read_bytes()))
    return raw_dir


def configure_stand_in_run(repo: Path, mnist_dir: Path, limit_per_class: int, extra: dict | None = None) -> None:
    """Params for a quick offline run: local mirror, a few images per digit, the random stand-in at 75 px,
    a CNN trained for 2 epochs of small batches, a number reader from 10 composed numbers."""
    update_params(
        repo,
        {
            "data.mirrors": [str(mnist_dir)],
            "data.limit_per_class": limit_per_class,
            "backbone.source": "keras",
            "backbone.weights": "random",
            "backbone.image_size": 75,
            "cnn.epochs": 2,
            "cnn.batch_size": 32,  # a few hundred digits: enough steps for the one-cycle schedule to learn
            "reader.numbers": 10,  # the number reader: a few hundred candidates, one epoch
            "reader.pair_numbers": 10,  # and its pair classifier: a few hundred candidates more
            "reader.pair_epochs": 1,
            "reader.epochs": 1,
            # a CNN trained for seconds has near-ties that int8 weights flip (measured: 1 of 40 sampled digits)
            "label.tflite_min_agreement": 0.9,
            **(extra or {}),
        },
    )


def run_dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the real dvc CLI of this environment in repo; fail the test with its output on error."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"dvc {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def pipeline_repo(tmp_path: Path) -> Path:
    return copy_pipeline(tmp_path / "repo")


@pytest.fixture
def unused_tcp_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class FakeEmbedder:
    """Stands in for the backbone in Dask tasks: feature i of an image = its mean pixel / 255 + i."""

    spec: BackboneSpec = BackboneSpec("keras", "", "random", 75, seed=424242)
    fail_on_call_with: str | None = None  # raise when a chunk contains the image with these bytes' sha256

    def __call__(self, encoded: list[bytes]) -> np.ndarray:
        import hashlib
        import io

        from PIL import Image

        if self.fail_on_call_with and any(hashlib.sha256(b).hexdigest() == self.fail_on_call_with for b in encoded):
            raise RuntimeError("simulated crash in the backbone")
        means = np.array([np.asarray(Image.open(io.BytesIO(blob))).mean() / 255 for blob in encoded], np.float32)
        return means[:, None] + np.arange(FEATURE_DIM, dtype=np.float32)[None, :]


def photo_of_digit(pixels: np.ndarray, seed: int, scale: int = 6) -> Image.Image:
    """A synthetic phone photo of an MNIST digit (uint8 (28, 28), white on black): dark ink on grey paper with
    noise and faint grid lines, `scale` times larger, off-centre, slightly blurred."""
    from PIL import ImageFilter

    rng = np.random.default_rng(seed)
    side = 28 * scale
    ink = np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.BILINEAR), np.float32) / 255
    height, width = side + 60, side + 80
    paper = rng.normal(185, 6, (height, width))
    paper[:: scale * 4, :] -= 25  # faint grid lines of squared paper
    paper[:, :: scale * 4] -= 25
    top, left = rng.integers(0, 60), rng.integers(0, 80)
    region = paper[top : top + side, left : left + side]
    paper[top : top + side, left : left + side] = region * (1 - ink) + 35 * ink
    image = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(radius=scale / 4))


@pytest.fixture(scope="session")
def mnist_arrays(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST as arrays: {"training" | "testing": (uint8 (n, 28, 28) images, uint8 (n,) labels)}."""
    from mnist_transfer.data.idx import SPLITS, read_images, read_labels

    folder = tmp_path_factory.mktemp("idx")
    arrays = {}
    for split, (images_name, labels_name) in SPLITS.items():
        for name in (images_name, labels_name):
            (folder / name).write_bytes(gzip.decompress((mnist_dir / f"{name}.gz").read_bytes()))
        arrays[split] = (read_images(folder / images_name), read_labels(folder / labels_name))
    return arrays


EXPORTED_PER_DIGIT = 200  # training digits per class of the session's exported model
EXPORTED_BACKBONE = BackboneSpec("keras", "", "random", 75)  # its backbone: the stand-in


@pytest.fixture(scope="session")
def exported_model(mnist_arrays, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder as the train stage exports it by default, without model.tflite (stand-in backbone at 75 px,
    head on 2,000 MNIST training digits): for the tools that load data/model (predict, serve)."""
    from mnist_transfer.data.convert import encode_jpg
    from mnist_transfer.data.split import validation_mask
    from mnist_transfer.features.backbone import load_backbone
    from mnist_transfer.models.head import train_head
    from mnist_transfer.models.transfer import export_model
    from mnist_transfer.params import TrainParams

    images, labels = mnist_arrays["training"]
    keep = np.concatenate([np.flatnonzero(labels == d)[:EXPORTED_PER_DIGIT] for d in range(10)])
    spec = EXPORTED_BACKBONE
    features = load_backbone(spec).embed_encoded([encode_jpg(images[i], 95) for i in keep], batch_size=128)
    is_validation = validation_mask(np.array([f"training/{labels[i]}/{i:05d}.jpg" for i in keep]), 10)
    head, _ = train_head(features, labels[keep], is_validation, TrainParams(epochs=40, patience=8), [])
    model_dir = tmp_path_factory.mktemp("exported") / "model"
    export_model(head, spec, model_dir)
    return model_dir


SMALL_CNN_DIGITS = 6000  # the first MNIST training digits the session's small CNN learns (~98 % validation accuracy)


@pytest.fixture(scope="session")
def small_cnn(mnist_arrays, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CNN folder as the train_cnn stage exports it, trained for 3 epochs on SMALL_CNN_DIGITS digits (~1 min on
    2 cores): a model that reads digits well enough to read whole numbers (predict --number, the number page)."""
    from mnist_transfer.data.split import validation_mask
    from mnist_transfer.models.cnn import Digits, export_cnn, train_cnn
    from mnist_transfer.params import CnnParams

    images, labels = (array[:SMALL_CNN_DIGITS] for array in mnist_arrays["training"])
    digits = Digits(images[:, :, :, None], labels.astype(np.int64),
                    np.array([f"training/{label}/{i:05d}.jpg" for i, label in enumerate(labels)]))
    is_validation = validation_mask(digits.rel_paths, 10)
    params = CnnParams(filters=[16, 32], dense_units=64, epochs=3, batch_size=128, seed=1)
    cnn, _ = train_cnn(digits.subset(~is_validation), digits.subset(is_validation), params, [])
    model_dir = tmp_path_factory.mktemp("small_cnn") / "cnn"
    export_cnn(cnn, model_dir)
    return model_dir


def dvc_result(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real dvc CLI in repo and return its result, failures included (run_dvc fails the test on them)."""
    env = dict(env or os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("MNIST_TRANSFER_DEBUG", None)  # the user's view: one-line errors
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )


def commit_all(repo: Path, message: str) -> None:
    """Commit the repo's whole working tree (params, dvc.lock, uncached reports): a baseline to get back to."""
    git = ["git", "-c", "user.name=pipeline-tests", "-c", "user.email=tests@localhost"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", message], cwd=repo, check=True)


@contextlib.contextmanager
def running_server(model_dir: Path, own_dir: Path, port: int, cnn_dir: Path | None = None) -> Iterator[str]:
    """`mnist-transfer serve` of model_dir (and cnn_dir; None: no CNN; never a number reader, not even the
    repository's data/reader) on loopback: its URL once /healthz answers; stopped after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_transfer", "serve", "--port", str(port), "--model", str(model_dir),
         "--cnn-model", str(cnn_dir or own_dir.parent / "no-cnn"), "--reader-model", str(own_dir.parent / "no-reader"),
         "--own-dir", str(own_dir)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "healthz", timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the server did not start:\n{process.stdout.read()}")
            time.sleep(0.5)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def flat(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} → {"a.b": 1}: nested metrics as one level."""
    leaves = {}
    for key, value in tree.items():
        leaves.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return leaves


def assert_same_metrics(actual: dict, expected: dict) -> None:
    """Two runs' metrics.json agree: counts and accuracies exactly, calibrated confidences, ECE and temperatures to
    float round-off (features computed in another process differ in the last bits, which a temperature magnifies)."""
    actual, expected = flat(actual), flat(expected)
    assert actual.keys() == expected.keys()
    assert actual == pytest.approx(expected, rel=1e-5, abs=1e-6)
    rounded = ("confidence", "ece", "temperature")
    assert {k: v for k, v in actual.items() if not any(word in k for word in rounded)} == {
        k: v for k, v in expected.items() if not any(word in k for word in rounded)}
