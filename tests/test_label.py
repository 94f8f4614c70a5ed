"""Label stage: stable sharding, shard labelling on Dask, retry and failure naming, and the full pipeline."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from mnist_transfer.backbone import BackboneSpec
from mnist_transfer.convert import convert_all
from mnist_transfer.embedding import BackboneEmbedder, ExecutorSpec, ImageRecord, dask_client, list_images
from mnist_transfer.label import (
    LabelContext,
    ShardError,
    ShardJob,
    assign_shards,
    parity_sample,
    prediction_rows,
    run_shards,
    shard_of,
)
from tests.conftest import FakeEmbedder, configure_stand_in_run, run_dvc, update_params


def records(n_images: int) -> list[ImageRecord]:
    return [ImageRecord(f"testing/{i % 10}/{i:05d}.jpg", i % 10, f"{i:064x}") for i in range(n_images)]


@pytest.mark.parametrize("n_shards", [1, 2, 3, 7, 16])
def test_every_image_in_exactly_one_shard_whatever_the_order(n_shards: int):
    images = records(1000)
    shards = assign_shards(images, n_shards)
    assert len(shards) == n_shards
    assert sorted(r.rel_path for shard in shards for r in shard) == sorted(r.rel_path for r in images)
    shuffled = images.copy()
    random.Random(4).shuffle(shuffled)
    by_path = {r.rel_path: k for k, shard in enumerate(assign_shards(shuffled, n_shards)) for r in shard}
    assert all(by_path[r.rel_path] == k for k, shard in enumerate(shards) for r in shard)
    if n_shards > 1:
        assert min(len(s) for s in shards) > 1000 / n_shards * 0.7  # roughly balanced


def test_shard_of_is_a_fixed_function_of_the_path():
    assert shard_of("testing/3/00042.jpg", 4) == shard_of("testing/3/00042.jpg", 4)
    assert {shard_of(f"testing/0/{i:05d}.jpg", 4) for i in range(50)} == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="label.shards"):
        assign_shards(records(3), 0)


def test_prediction_rows_known_answer():
    probabilities = np.zeros((2, 10), np.float32)
    probabilities[0, 3], probabilities[0, 5] = 0.75, 0.25
    probabilities[1, 8] = 1.0
    rows = prediction_rows(records(2), probabilities)  # labels 0 and 1
    assert rows[0][:5] == ("testing/0/00000.jpg", 0, 3, "0.750000", 0)
    assert rows[1][:5] == ("testing/1/00001.jpg", 1, 8, "1.000000", 0)
    assert rows[0][5 + 5] == "0.250000"


def test_parity_sample_is_spread_and_deterministic():
    images = records(1000)
    sample = parity_sample(images, 200)
    assert len(sample) == 200 and sample[0] == images[0] and sample[-1] == images[-1]
    assert parity_sample(images, 200) == sample
    assert parity_sample(images[:5], 200) == images[:5] and parity_sample(images, 0) == []


@pytest.fixture
def labelling_setup(tiny_idx_dir: Path, tmp_path: Path):
    """Tiny test JPGs and a trained head on the fake embedder's features."""
    from mnist_transfer.train import HeadParams, train_head

    convert_all(tiny_idx_dir, tmp_path / "jpg", limit_per_class=None, quality=95, workers=1)
    data_root = tmp_path / "jpg"
    test_records = list_images(data_root / "testing", data_root)
    embedder = FakeEmbedder()
    features = embedder([(data_root / r.rel_path).read_bytes() for r in test_records])
    head, _ = train_head(features, np.array([r.label for r in test_records]), np.arange(20) % 5 == 0, HeadParams(epochs=2), [])
    head.save(tmp_path / "head.keras")
    context = LabelContext(data_root, tmp_path / "store.sqlite", tmp_path / "head.keras", embedder, chunk_images=4)
    jobs = [ShardJob(k, shard, tmp_path / "predictions" / f"shard-{k}.csv") for k, shard in enumerate(assign_shards(test_records, 3))]
    return context, jobs, test_records


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_shards_are_labelled_in_parallel_and_cover_the_test_set(labelling_setup):
    context, jobs, test_records = labelling_setup
    with dask_client(ExecutorSpec("local", 2, 4)) as client:
        summaries = run_shards(jobs, context, client)
        assert sum(s.n_computed for s in summaries) == 20  # first run: every test image embedded once
        assert sum(s.n_computed for s in run_shards(jobs, context, client)) == 0  # then never again
    paths = [row["path"] for job in jobs for row in read_rows(job.out_path)]
    assert sorted(paths) == sorted(r.rel_path for r in test_records)
    row = read_rows(jobs[0].out_path)[0]
    assert set(row) >= {"path", "actual", "predicted", "confidence", "correct", "p0", "p9"}
    assert float(row["confidence"]) == pytest.approx(max(float(row[f"p{d}"]) for d in range(10)), abs=1e-6)


def test_a_bad_image_fails_its_shard_twice_naming_shard_and_image(labelling_setup):
    context, jobs, test_records = labelling_setup
    spec = BackboneSpec("keras", "", "random", 75)
    context = LabelContext(context.data_root, context.store_path, context.head_path, BackboneEmbedder(spec, 8, 1), 4)
    bad = jobs[1].records[0]
    (context.data_root / bad.rel_path).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with dask_client(ExecutorSpec("local", 1, 4)) as client:
        with pytest.raises(ShardError, match=rf"shard 1 .* failed twice: .*{bad.rel_path}: cannot be decoded"):
            run_shards(jobs[1:2], context, client)


def test_full_pipeline_accuracy_floor_and_shuffled_labels_control(pipeline_repo: Path, mnist_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MNIST_FEATURE_STORE", str(tmp_path / "store.sqlite"))
    configure_stand_in_run(
        pipeline_repo, mnist_dir, limit_per_class=30,
        extra={"label.shards": 2, "label.workers": 2, "label.parity_sample": 50, "train.epochs": 30},
    )
    first = run_dvc(pipeline_repo, "repro")
    metrics = json.loads((pipeline_repo / "reports" / "metrics.json").read_text())
    assert metrics["n_images"] == 300 and set(metrics["per_digit"]) == {str(d) for d in range(10)}
    floor = 0.5  # 270 training images through a random backbone; chance is 0.1
    assert metrics["accuracy"] > floor
    assert "agrees with the label stage on 50 sampled test images" in first.stdout + first.stderr
    assert (pipeline_repo / "reports" / "report.html").stat().st_size > 1000

    update_params(pipeline_repo, {"train.shuffle_labels": True})
    second = run_dvc(pipeline_repo, "repro")
    log = second.stdout + second.stderr
    assert "Stage 'bottlenecks' didn't change, skipping" in log
    assert "0 backbone passes, the rest from the store" in log  # a head-only change relabels from the store
    shuffled = json.loads((pipeline_repo / "reports" / "metrics.json").read_text())
    assert shuffled["accuracy"] < floor
