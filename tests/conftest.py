"""Shared fixtures: tiny MNIST-like data, the local MNIST mirror, and a temporary copy of the pipeline."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from mnist_transfer.backbone import FEATURE_DIM, BackboneSpec
from mnist_transfer.idx import encode_idx

REPO_ROOT = Path(__file__).resolve().parents[1]
# Files a fresh clone needs to run the pipeline; data/ and reports/ are produced by it.
PIPELINE_FILES = ("dvc.yaml", "params.yaml", "stages", "mnist_transfer", ".dvc/config", ".dvc/.gitignore")


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


def copy_pipeline(dest: Path) -> Path:
    """Copy the pipeline's tracked files into dest and commit them to a new git repo (DVC + dvclive need one)."""
    for name in PIPELINE_FILES:
        source = REPO_ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    git = ["git", "-c", "user.name=pipeline-tests", "-c", "user.email=tests@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "pipeline under test"], cwd=dest, check=True)
    return dest


def update_params(repo: Path, updates: dict[str, object]) -> None:
    """Set dotted params keys (e.g. 'data.limit_per_class') in repo/params.yaml."""
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    for dotted_key, value in updates.items():
        *parents, leaf = dotted_key.split(".")
        section = params
        for parent in parents:
            section = section[parent]
        section[leaf] = value
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def configure_stand_in_run(repo: Path, mnist_dir: Path, limit_per_class: int, extra: dict | None = None) -> None:
    """Params for a quick offline run: local mirror, a few images per digit, the random stand-in at 75 px."""
    update_params(
        repo,
        {
            "data.mirrors": [str(mnist_dir)],
            "data.limit_per_class": limit_per_class,
            "backbone.source": "keras",
            "backbone.weights": "random",
            "backbone.image_size": 75,
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
