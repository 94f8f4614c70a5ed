"""Label stage: stable sharding, shards labelled from the feature store, no cluster when nothing is missing,
and the full pipeline."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_transfer.data.convert import convert_all
from mnist_transfer.data.records import ImageRecord, list_images
from mnist_transfer.evaluation.label import write_shards
from mnist_transfer.evaluation.parity import optional_tflite_floor, parity_sample
from mnist_transfer.evaluation.predictions import PREDICTION_COLUMNS, assign_shards, prediction_rows, shard_of
from mnist_transfer.features.embedding import ExecutorSpec, ensure_features
from mnist_transfer.features.feature_store import FeatureStore
from tests.conftest import REPO_ROOT, FakeEmbedder, configure_stand_in_run, photo_of_digit, run_dvc, update_params


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
    paths = [f"testing/{i % 10}/{i:05d}.jpg" for i in range(50)]
    # in another process, whose str hashes differ: the same shards (stages and their workers are separate processes)
    other = subprocess.run(
        [sys.executable, "-c", "import sys; from mnist_transfer.evaluation.predictions import shard_of; "
         "print(*(shard_of(path, 4) for path in sys.argv[1:]))", *paths],
        cwd=REPO_ROOT, env=dict(os.environ, PYTHONHASHSEED="12345"), capture_output=True, text=True, check=True,
    )
    assert other.stdout.split() == [str(shard_of(path, 4)) for path in paths]
    assert {shard_of(f"testing/0/{i:05d}.jpg", 4) for i in range(50)} == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="label.shards"):
        assign_shards(records(3), 0)


def test_prediction_rows_known_answer():
    probabilities = np.zeros((2, 10), np.float32)
    probabilities[0, 3], probabilities[0, 5] = 0.75, 0.25
    probabilities[1, 1] = 1.0
    rows = prediction_rows(records(2), probabilities)  # labels 0 and 1: the first read wrong, the second right
    assert rows[0][:5] == ("testing/0/00000.jpg", 0, 3, "0.750000", 0)
    assert rows[1][:5] == ("testing/1/00001.jpg", 1, 1, "1.000000", 1)
    assert rows[0][5 + 5] == "0.250000"


def test_prediction_rows_are_calibrated_and_keep_the_raw_confidence():
    probabilities = np.zeros((1, 10), np.float32)
    probabilities[0, 3], probabilities[0, 5] = 0.75, 0.25
    row = dict(zip(PREDICTION_COLUMNS, prediction_rows(records(1), probabilities, temperature=0.5)[0]))
    # T = 0.5 squares and renormalises: 0.5625 / 0.625 = 0.9 and 0.0625 / 0.625 = 0.1
    assert (row["predicted"], row["confidence"], row["p3"], row["p5"], row["p0"]) == (3, "0.900000", "0.900000", "0.100000", "0.000000")
    assert row["raw_confidence"] == "0.750000" and PREDICTION_COLUMNS[-1] == "raw_confidence"


def test_parity_sample_is_spread_and_deterministic():
    images = records(1000)
    sample = parity_sample(images, 200)
    assert len(sample) == 200 and sample[0] == images[0] and sample[-1] == images[-1]
    assert parity_sample(images, 200) == sample
    assert parity_sample(images[:5], 200) == images[:5] and parity_sample(images, 0) == []


def test_the_transfer_tflite_is_checked_only_when_train_wrote_one(tmp_path: Path, caplog):
    with caplog.at_level("INFO", logger="parity"):
        assert optional_tflite_floor(tmp_path, 0.99) is None  # train.tflite off: no model.tflite, check skipped
    assert f"no model.tflite in {tmp_path} (train.tflite is off)" in caplog.text and "skipped" in caplog.text
    (tmp_path / "model.tflite").write_bytes(b"")
    assert optional_tflite_floor(tmp_path, 0.99) == 0.99


class CountingHead:
    """Stands in for the Keras head: probabilities from the first feature (the fake embedder's mean pixel)."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, features: np.ndarray, batch_size: int, verbose: int) -> np.ndarray:
        self.calls += 1
        digits = np.clip((features[:, 0] * 10).astype(int), 0, 9)
        return np.eye(10, dtype=np.float32)[digits] * 0.9 + 0.01


@pytest.fixture
def stored_test_set(tiny_idx_dir: Path, tmp_path: Path):
    """Tiny test JPGs whose fake features are in a feature store."""
    convert_all(tiny_idx_dir, tmp_path / "jpg", limit_per_class=None, quality=95, workers=1)
    data_root = tmp_path / "jpg"
    test_records = list_images(data_root / "testing", data_root)
    store = FeatureStore(tmp_path / "store.sqlite")
    computed = ensure_features(test_records, data_root, store, FakeEmbedder(), ExecutorSpec("local", 1, 8))
    assert computed == 20
    yield data_root, test_records, store
    store.close()


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_shards_from_the_store_cover_the_test_set_with_known_answers(stored_test_set, tmp_path: Path):
    data_root, test_records, store = stored_test_set
    head = CountingHead()
    out = tmp_path / "predictions"
    summaries = write_shards(test_records, 3, out, store, FakeEmbedder().spec.identity(), head)
    assert [s.index for s in summaries] == [0, 1, 2] and sum(s.n_images for s in summaries) == 20
    rows = {row["path"]: row for k in range(3) for row in read_rows(out / f"shard-{k}.csv")}
    assert sorted(rows) == sorted(r.rel_path for r in test_records)
    for k, shard in enumerate(assign_shards(test_records, 3)):  # the shard contract: stable hash assignment
        assert {row["path"] for row in read_rows(out / f"shard-{k}.csv")} == {r.rel_path for r in shard}
    features = store.get(FakeEmbedder().spec.identity(), [r.sha256 for r in test_records])
    for record, vector in zip(test_records, features):
        row = rows[record.rel_path]
        assert int(row["predicted"]) == min(9, int(vector[0] * 10))  # the head's answer on the stored features
        assert float(row["confidence"]) == pytest.approx(0.91, abs=1e-6)
        assert int(row["correct"]) == int(int(row["predicted"]) == record.label)


def test_nothing_missing_starts_no_cluster_and_loads_no_backbone(stored_test_set, caplog):
    data_root, test_records, store = stored_test_set

    class NoEmbedder(FakeEmbedder):
        def __call__(self, encoded):
            raise AssertionError("the backbone must not run when every feature is stored")

    with caplog.at_level("INFO", logger="embedding"):
        assert ensure_features(test_records, data_root, store, NoEmbedder(), ExecutorSpec("tcp://192.0.2.1:1", 1, 8)) == 0
    assert "no cluster started" in caplog.text  # the unreachable scheduler address was never contacted


@pytest.mark.e2e
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
    # the number reader: the CNN with an 11th class, fitted on candidates cut from composed numbers too
    reader_labels = (pipeline_repo / "data" / "reader" / "labels.txt").read_text().split()
    assert reader_labels == [*(str(d) for d in range(10)), "not-a-digit"]
    reader_metrics = json.loads((pipeline_repo / "reports" / "reader" / "metrics.json").read_text())["best"]
    assert reader_metrics["n_train"] > 270 and 0 <= reader_metrics["val_digit_accuracy"] <= 1
    # …and its pair classifier, loaded with it: 28×56 pairs → 10·a + b or not a pair
    assert 0 <= reader_metrics["val_pair_accuracy"] <= 1 and 0 <= reader_metrics["val_not_a_pair_recall"] <= 1
    from mnist_transfer.models.inference import DigitModel

    pair_classifier = DigitModel.load(pipeline_repo / "data" / "reader").pair_classifier
    assert pair_classifier is not None
    assert pair_classifier(np.zeros((3, 28, 56), np.uint8)).sum(axis=1) == pytest.approx(np.ones(3), abs=1e-4)

    # your own handwriting: 10 photos to learn from, 10 to be reported apart
    before = (pipeline_repo / "reports" / "predictions.csv").read_text()
    for split, source in (("training", "training"), ("testing", "testing")):
        for digit in range(10):
            jpg = sorted((pipeline_repo / "data" / "jpg" / source / str(digit)).glob("*.jpg"))[-1]
            pixels = np.asarray(Image.open(jpg).convert("L"))
            photo_of_digit(pixels, seed=digit).save(pipeline_repo / "data" / "own" / split / f"photo_{digit}.jpg")
    with_own = run_dvc(pipeline_repo, "repro")
    log = with_own.stdout + with_own.stderr
    assert "Stage 'convert' didn't change" in log
    assert "wrote 310 bottlenecks (10 of your own digits)" in log and ": 10 backbone passes now" in log
    assert "10 backbone passes, the rest from the store" in log  # the label stage: own test photos only
    metrics = json.loads((pipeline_repo / "reports" / "metrics.json").read_text())
    assert metrics["n_images"] == 300 and metrics["own"]["n_images"] == 10  # reported apart, never mixed
    assert metrics["cnn"]["n_images"] == 300 and metrics["cnn"]["own"]["n_images"] == 10  # both models, both sets
    assert (pipeline_repo / "reports" / "predictions.csv").read_text() != before  # the head learned something new
    assert "Your handwriting (10 digits" in (pipeline_repo / "reports" / "report.html").read_text()

    update_params(pipeline_repo, {"train.shuffle_labels": True})
    second = run_dvc(pipeline_repo, "repro")
    log = second.stdout + second.stderr
    assert "Stage 'bottlenecks' didn't change, skipping" in log
    assert "0 backbone passes, the rest from the store" in log  # a head-only change relabels from the store
    shuffled = json.loads((pipeline_repo / "reports" / "metrics.json").read_text())
    assert shuffled["accuracy"] < floor
