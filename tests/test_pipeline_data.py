"""End to end through the real `dvc repro` up to `convert`, with ../shared/mnist as the only mirror."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_dvc, update_params

pytestmark = pytest.mark.e2e  # every test here runs the real `dvc repro`


def idx_label_counts(gz_path: Path) -> Counter:
    """Count labels straight from the original .gz (8-byte header), independent of the stages."""
    labels = np.frombuffer(gzip.decompress(gz_path.read_bytes()), dtype=np.uint8, offset=8)
    return Counter(labels.tolist())


def test_dvc_repro_convert_on_full_mnist(pipeline_repo: Path, mnist_dir: Path):
    update_params(pipeline_repo, {"data.mirrors": [str(pipeline_repo / "no-such-mirror"), mnist_dir.as_uri()]})
    run_dvc(pipeline_repo, "repro", "convert")

    jpg_root = pipeline_repo / "data" / "jpg"
    for split, labels_file in (("training", "train-labels-idx1-ubyte.gz"), ("testing", "t10k-labels-idx1-ubyte.gz")):
        expected = idx_label_counts(mnist_dir / labels_file)
        found = Counter({digit: len(list((jpg_root / split / str(digit)).glob("*.jpg"))) for digit in range(10)})
        assert found == expected
        assert sum(found.values()) == {"training": 60000, "testing": 10000}[split]

    with open(jpg_root / "manifest.csv", newline="") as handle:
        manifest = list(csv.DictReader(handle))
    assert len(manifest) == 70000
    assert all(int(row["bytes"]) > 0 for row in manifest)
    sample = manifest[12345]
    assert (jpg_root / sample["path"]).stat().st_size == int(sample["bytes"])

    # nothing changed: a second repro runs no stage
    assert "didn't change, skipping" in run_dvc(pipeline_repo, "repro", "convert").stdout


def test_dvc_repro_limit_per_class(pipeline_repo: Path, mnist_dir: Path):
    update_params(pipeline_repo, {"data.mirrors": [str(mnist_dir)], "data.limit_per_class": 3})
    run_dvc(pipeline_repo, "repro", "convert")
    assert len(list((pipeline_repo / "data" / "jpg").rglob("*.jpg"))) == 3 * 10 * 2
