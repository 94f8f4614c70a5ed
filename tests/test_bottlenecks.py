"""Bottleneck stage: features computed once through the store, via a real Dask LocalCluster."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mnist_transfer.data.convert import convert_all
from mnist_transfer.data.records import list_images
from mnist_transfer.features.bottlenecks import read_bottlenecks, write_bottlenecks
from mnist_transfer.features.embedding import ExecutorSpec, ensure_features
from mnist_transfer.features.feature_store import FeatureStore
from tests.conftest import FakeEmbedder, configure_stand_in_run, run_dvc

EXECUTOR = ExecutorSpec(scheduler="local", workers=1, chunk_images=8)


@pytest.fixture
def jpg_root(tiny_idx_dir: Path, tmp_path: Path) -> Path:
    convert_all(tiny_idx_dir, tmp_path / "jpg", limit_per_class=None, quality=95, workers=1)
    return tmp_path / "jpg"


@pytest.fixture
def store(tmp_path: Path):
    with FeatureStore(tmp_path / "store.sqlite") as feature_store:
        yield feature_store


def test_list_images_labels_from_folders_sorted(jpg_root: Path):
    records = list_images(jpg_root / "training", jpg_root)
    assert len(records) == 50
    assert [r.rel_path for r in records] == sorted(r.rel_path for r in records)
    assert records[0].rel_path == "training/0/00000.jpg" and records[0].label == 0
    assert {r.label for r in records} == set(range(10))


def test_features_are_computed_once_and_only_for_new_images(jpg_root: Path, store: FeatureStore):
    embedder = FakeEmbedder()
    records = list_images(jpg_root / "training", jpg_root)
    assert ensure_features(records, jpg_root, store, embedder, EXECUTOR) == 50
    assert ensure_features(records, jpg_root, store, embedder, EXECUTOR) == 0  # second run: nothing

    shutil.copy(jpg_root / "testing" / "3" / "00003.jpg", jpg_root / "training" / "3" / "99999.jpg")  # an added image
    assert ensure_features(list_images(jpg_root / "training", jpg_root), jpg_root, store, embedder, EXECUTOR) == 1
    assert store.count(embedder.spec.identity()) == 51


def test_store_content_is_the_embedders_output(jpg_root: Path, store: FeatureStore, tmp_path: Path):
    embedder = FakeEmbedder()
    records = list_images(jpg_root / "testing", jpg_root)
    ensure_features(records, jpg_root, store, embedder, EXECUTOR)
    out = tmp_path / "bottlenecks" / "testing.npz"
    write_bottlenecks(records, store, embedder.spec.identity(), out)
    saved = read_bottlenecks(out)
    assert saved["features"].shape == (20, 2048)
    assert saved["paths"].tolist() == [r.rel_path for r in records]
    assert saved["labels"].tolist() == [r.label for r in records]
    expected = embedder([(jpg_root / r.rel_path).read_bytes() for r in records])
    np.testing.assert_allclose(saved["features"], expected)
    assert sorted(p.name for p in out.parent.iterdir()) == ["testing.npz"]  # scratch buffer removed


def test_crash_mid_run_keeps_finished_chunks_and_rerun_resumes(jpg_root: Path, store: FeatureStore):
    records = list_images(jpg_root / "training", jpg_root)
    poison = records[30].sha256  # in the 4th chunk of 8
    with pytest.raises(RuntimeError, match="chunk that starts with training/"):
        ensure_features(records, jpg_root, store, FakeEmbedder(fail_on_call_with=poison), EXECUTOR)
    done = store.count()
    assert 0 < done < 50 and done % 8 == 0  # whole chunks only
    assert ensure_features(records, jpg_root, store, FakeEmbedder(), EXECUTOR) == 50 - done


@pytest.mark.e2e
def test_dvc_repro_bottlenecks_with_the_stand_in(pipeline_repo: Path, mnist_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MNIST_FEATURE_STORE", str(tmp_path / "store.sqlite"))
    configure_stand_in_run(pipeline_repo, mnist_dir, limit_per_class=4)
    first = run_dvc(pipeline_repo, "repro", "bottlenecks")
    assert "40 backbone passes now" in first.stdout + first.stderr
    saved = read_bottlenecks(pipeline_repo / "data" / "bottlenecks" / "training.npz")
    assert saved["features"].shape == (40, 2048) and np.isfinite(saved["features"]).all()
    assert np.bincount(saved["labels"]).tolist() == [4] * 10
    assert saved["features"].std(axis=0).max() > 0  # images give different features

    forced = run_dvc(pipeline_repo, "repro", "--force", "--single-item", "bottlenecks")  # rerun the stage: no backbone work
    assert "0 backbone passes now" in forced.stdout + forced.stderr
    np.testing.assert_array_equal(read_bottlenecks(pipeline_repo / "data" / "bottlenecks" / "training.npz")["features"], saved["features"])
