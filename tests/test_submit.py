"""The Kaggle submission: its helpers, and the whole pipeline through the real `dvc repro` on a Kaggle-format pair."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_transfer.app.kaggle_csvs import load_mnist
from mnist_transfer.data.kaggle import write_kaggle_csvs
from mnist_transfer.errors import DataError
from mnist_transfer.evaluation.submit import read_submission, unlabelled_records, write_submission
from tests.conftest import configure_stand_in_run, run_dvc, update_params

FLOOR = 0.5  # ~245 training images through the random stand-in backbone; chance is 0.1


def test_submission_round_trip_counts_image_ids_from_one(tmp_path: Path):
    path = tmp_path / "submission.csv"
    write_submission(np.array([7, 0, 3]), path)
    assert path.read_text() == "ImageId,Label\n1,7\n2,0\n3,3\n"
    assert read_submission(path).tolist() == [7, 0, 3]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("ImageId,Label\n2,7\n", "ImageIds 1..N"),
        ("ImageId,Label\n1,7\n3,1\n", "ImageIds 1..N"),
        ("Id,Label\n1,7\n", "header ImageId,Label"),
        ("ImageId,Label\n1,10\n", "a Label outside 0..9"),
    ],
)
def test_read_submission_refuses_what_kaggle_would(tmp_path: Path, text: str, problem: str):
    path = tmp_path / "submission.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=problem):
        read_submission(path)


def test_unlabelled_records_come_in_image_id_order(tmp_path: Path):
    folder = tmp_path / "jpg" / "unlabelled"
    folder.mkdir(parents=True)
    for image_id in (10, 2, 1, 3, 4, 5, 6, 7, 8, 9):
        (folder / f"{image_id:05d}.jpg").write_bytes(f"image {image_id}".encode())
    (folder / "README.txt").write_text("not an image")
    records = unlabelled_records(folder, tmp_path / "jpg")
    assert [r.rel_path for r in records] == [f"unlabelled/{i:05d}.jpg" for i in range(1, 11)]
    assert len({r.sha256 for r in records}) == 10


@pytest.mark.parametrize(
    "names, problem",
    [
        ([], "holds no images: run the convert stage with data.source kaggle"),
        (["00001.jpg", "00003.jpg"], r"ImageId 2 \(00002.jpg\) is missing"),
        (["00001.jpg", "photo.jpg"], r"photo.jpg: not one of test.csv's images"),
    ],
)
def test_unlabelled_records_refuse_an_incomplete_folder(tmp_path: Path, names: list[str], problem: str):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"jpg")
    with pytest.raises(DataError, match=problem):
        unlabelled_records(folder, tmp_path)


def submission_accuracy(repo: Path) -> float:
    digits = read_submission(repo / "reports" / "kaggle" / "submission.csv")
    answers = read_submission(repo / "data" / "kaggle" / "solution.csv")
    assert len(digits) == len(answers)
    return float((digits == answers).mean())


@pytest.mark.e2e
def test_dvc_repro_kaggle_submission_floor_and_shuffled_labels_control(
    pipeline_repo: Path, mnist_dir: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("MNIST_FEATURE_STORE", str(tmp_path / "store.sqlite"))
    images, labels = load_mnist(mnist_dir)
    write_kaggle_csvs(images, labels, pipeline_repo / "data" / "kaggle", n_train=300, n_test=50)
    configure_stand_in_run(
        pipeline_repo, mnist_dir, limit_per_class=None,
        extra={"data.source": "kaggle", "label.shards": 2, "label.parity_sample": 20},
    )
    first = run_dvc(pipeline_repo, "repro", "submit", "report")  # the transfer model's stages; the CNN's are tested apart
    assert "data.source is kaggle: nothing to download" in first.stdout + first.stderr

    submission = pipeline_repo / "reports" / "kaggle" / "submission.csv"
    assert len(read_submission(submission)) == 50  # ImageIds 1..50 in order and labels 0..9 (read_submission checks)
    accuracy = submission_accuracy(pipeline_repo)
    assert accuracy > FLOOR
    metrics = json.loads((pipeline_repo / "reports" / "metrics.json").read_text())
    holdout = list((pipeline_repo / "data" / "jpg" / "testing").rglob("*.jpg"))
    assert metrics["n_images"] == len(holdout) and 15 < len(holdout) < 50  # ~10 % of train.csv's 300 rows
    assert len(list((pipeline_repo / "data" / "jpg" / "training").rglob("*.jpg"))) == 300 - len(holdout)

    # the hook for the CNN: any exported model → submission_cnn.csv; the transfer model's own export must agree
    hook = subprocess.run(
        [sys.executable, "-m", "stages.submit", "--images", "data/jpg/unlabelled", "--model", "data/model",
         "--out", str(tmp_path / "hook"), "--cnn", "data/model"],
        cwd=pipeline_repo, capture_output=True, text=True, check=False,
    )
    assert hook.returncode == 0, hook.stderr
    assert "0 backbone passes" in hook.stderr  # the unlabelled images' features come from the store
    cnn_digits = read_submission(tmp_path / "hook" / "submission_cnn.csv")
    assert np.array_equal(cnn_digits, read_submission(submission))

    update_params(pipeline_repo, {"train.shuffle_labels": True})
    second = run_dvc(pipeline_repo, "repro", "submit", "report")
    assert "Stage 'bottlenecks' didn't change, skipping" in second.stdout
    assert submission_accuracy(pipeline_repo) < FLOOR


def test_with_mnist_the_submit_stage_writes_a_note_and_loads_nothing(pipeline_repo: Path):
    """No images, no model: with data.source mnist the stage must not need them (no TensorFlow, no cluster)."""
    result = subprocess.run(
        [sys.executable, "-m", "stages.submit", "--images", "data/jpg/unlabelled", "--model", "data/model",
         "--out", "reports/kaggle"],
        cwd=pipeline_repo, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "data.source is mnist: nothing to submit" in result.stderr
    assert [p.name for p in (pipeline_repo / "reports" / "kaggle").iterdir()] == ["README.txt"]
