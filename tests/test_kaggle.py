"""Kaggle's CSVs: exact format, streaming validation with errors naming file/line/column, conversion to JPG folders."""

from __future__ import annotations

import io
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_transfer.app.kaggle_csvs import load_mnist
from mnist_transfer.data.convert import read_manifest
from mnist_transfer.data.kaggle import (
    KaggleCsvError,
    KaggleSource,
    convert_kaggle,
    first_per_class,
    in_holdout,
    kaggle_files,
    read_kaggle_csv,
    write_kaggle_csvs,
)
from tests.conftest import configure_stand_in_run, run_dvc, tiny_split, update_params


@pytest.fixture
def tiny_pair(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A Kaggle-format pair of 40 train rows and 12 test rows from synthetic 28×28 images."""
    images, labels = tiny_split(52, seed=3)
    write_kaggle_csvs(images, labels, tmp_path / "kaggle", n_train=40, n_test=12)
    return tmp_path / "kaggle", images, labels


def test_headers_and_column_order_are_kaggles(tmp_path: Path):
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    images[1, 1, 2] = 200  # row 1, column 2 → pixel30 (row-major, 28 per row)
    images[2, 27, 27] = 7  # → pixel783
    write_kaggle_csvs(images, np.array([4, 9, 0]), tmp_path, n_train=2, n_test=1)

    train_lines = (tmp_path / "train.csv").read_text().splitlines()
    assert train_lines[0] == "label," + ",".join(f"pixel{i}" for i in range(784))
    assert len(train_lines) == 3
    second = train_lines[2].split(",")
    assert second[0] == "9" and second[1 + 30] == "200" and second.count("0") == 784 - 1
    test_lines = (tmp_path / "test.csv").read_text().splitlines()
    assert test_lines[0] == ",".join(f"pixel{i}" for i in range(784))
    assert test_lines[1].split(",")[783] == "7" and len(test_lines[1].split(",")) == 784
    assert (tmp_path / "solution.csv").read_text() == "ImageId,Label\n1,0\n"


def test_read_back_what_was_written_in_blocks(tiny_pair):
    kaggle_dir, images, labels = tiny_pair
    blocks = list(read_kaggle_csv(kaggle_dir / "train.csv", labelled=True, block_rows=16))
    assert [len(block.rows) for block in blocks] == [16, 16, 8]
    assert np.array_equal(np.concatenate([block.rows for block in blocks]), np.arange(1, 41))
    assert np.array_equal(np.concatenate([block.pixels for block in blocks]), images[:40])
    assert np.array_equal(np.concatenate([block.labels for block in blocks]), labels[:40])
    (test_block,) = read_kaggle_csv(kaggle_dir / "test.csv", labelled=False)
    assert test_block.labels is None and test_block.pixels.dtype == np.uint8
    assert np.array_equal(test_block.pixels, images[40:52]) and test_block.rows.tolist() == list(range(1, 13))


def test_load_mnist_reads_the_gz_files(mnist_dir: Path):
    images, labels = load_mnist(mnist_dir)
    assert images.shape == (70000, 28, 28) and labels.shape == (70000,)
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]  # MNIST's first training labels
    assert labels[60000:60003].tolist() == [7, 2, 1]  # and its first test labels


def rewrite_line(line_number: int, edit: Callable[[list[str]], list[str]]) -> Callable[[str], str]:
    """A mutation of the file's text that edits the fields of one line (1 = header)."""

    def mutate(text: str) -> str:
        lines = text.split("\n")
        lines[line_number - 1] = ",".join(edit(lines[line_number - 1].split(",")))
        return "\n".join(lines)

    return mutate


def set_field(column: int, value: str) -> Callable[[list[str]], list[str]]:
    return lambda fields: fields[:column] + [value] + fields[column + 1 :]


BAD_CSVS = [
    # (case, file, mutation of its text, expected message)
    ("empty file", "train.csv", lambda text: "", r"train\.csv: the file is empty"),
    ("header only", "test.csv", lambda text: text.split("\n")[0] + "\n", r"test\.csv: holds a header but no data rows"),
    ("renamed column", "train.csv", rewrite_line(1, set_field(2, "pixel_1")),
     r"train\.csv: line 1 \(header\), column 3: 'pixel_1', expected 'pixel1'"),
    ("missing column", "train.csv", rewrite_line(1, lambda fields: fields[:-1]),
     r"train\.csv: line 1 \(header\) has 784 columns, expected 785"),
    ("test header in train.csv", "train.csv", rewrite_line(1, lambda fields: fields[1:]),
     r"train\.csv: line 1 is the header of test\.csv.*swapped"),
    ("short row", "train.csv", rewrite_line(4, lambda fields: fields[:-2]),
     r"train\.csv: line 4 has 783 columns, expected 785"),
    ("long row", "test.csv", rewrite_line(3, lambda fields: fields + ["0"]),
     r"test\.csv: line 3 has 785 columns, expected 784"),
    ("pixel above 255", "train.csv", rewrite_line(5, set_field(101, "256")),
     r"train\.csv: line 5, column 102 \(pixel100\): pixel value 256 is outside 0\.\.255"),
    ("negative pixel", "test.csv", rewrite_line(2, set_field(0, "-1")),
     r"test\.csv: line 2, column 1 \(pixel0\): pixel value -1 is outside 0\.\.255"),
    ("fractional pixel", "train.csv", rewrite_line(7, set_field(784, "12.5")),
     r"train\.csv: line 7, column 785 \(pixel783\): pixel value '12\.5' is not an integer"),
    ("empty pixel", "test.csv", rewrite_line(9, set_field(10, "")),
     r"test\.csv: line 9, column 11 \(pixel10\): pixel value '' is not an integer"),
    ("huge pixel", "train.csv", rewrite_line(2, set_field(3, "9" * 30)), r"line 2, column 4 \(pixel2\): pixel value 9+ is outside"),
    ("label above 9", "train.csv", rewrite_line(3, set_field(0, "10")),
     r"train\.csv: line 3, column 1 \(label\): label 10 is outside 0\.\.9"),
    ("text label", "train.csv", rewrite_line(6, set_field(0, "seven")),
     r"train\.csv: line 6, column 1 \(label\): label 'seven' is not an integer"),
    ("truncated last line", "train.csv", lambda text: text[:-1000],
     r"train\.csv: line 41 has \d+ columns, expected 785 .*; it is the last line and incomplete: the file looks truncated"),
    ("cut after a comma", "test.csv", lambda text: text[:-2],
     r"test\.csv: line 13, column 784 \(pixel783\): pixel value '' is not an integer; .*looks truncated"),
]


@pytest.mark.parametrize("case, name, mutate, expected", BAD_CSVS, ids=[case[0] for case in BAD_CSVS])
def test_bad_csv_is_refused_naming_file_line_and_column(tiny_pair, case: str, name: str, mutate, expected: str):
    kaggle_dir, _, _ = tiny_pair
    path = kaggle_dir / name
    path.write_text(mutate(path.read_text()))
    with pytest.raises(KaggleCsvError, match=expected) as raised:
        list(read_kaggle_csv(path, labelled=name == "train.csv"))
    assert str(path) in str(raised.value)


def test_a_complete_last_line_without_newline_is_accepted(tiny_pair):
    kaggle_dir, images, _ = tiny_pair
    path = kaggle_dir / "test.csv"
    path.write_text(path.read_text().rstrip("\n"))
    assert np.array_equal(np.concatenate([b.pixels for b in read_kaggle_csv(path, labelled=False)]), images[40:])


def test_a_zip_archive_is_refused_with_the_way_out(tiny_pair):
    kaggle_dir, _, _ = tiny_pair
    path = kaggle_dir / "train.csv"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.csv", path.read_text())
    path.write_bytes(buffer.getvalue())
    with pytest.raises(KaggleCsvError, match=r"train\.csv: is a zip archive, not a CSV: unzip it"):
        list(read_kaggle_csv(path, labelled=True))


def test_missing_files_error_says_how_to_get_them(tmp_path: Path):
    (tmp_path / "digit-recognizer.zip").write_bytes(b"PK\x03\x04")
    (tmp_path / "train.csv").write_text("label\n")
    with pytest.raises(KaggleCsvError) as raised:
        kaggle_files(tmp_path)
    message = str(raised.value)
    assert f"{tmp_path} lacks test.csv" in message and "holds digit-recognizer.zip: unzip it there" in message
    assert "kaggle competitions download -c digit-recognizer" in message
    assert f"unzip digit-recognizer.zip -d {tmp_path}" in message
    assert "mnist-transfer kaggle-csvs --mnist FOLDER" in message


def test_holdout_is_a_stable_content_hash_share():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2000, 28, 28), dtype=np.uint8)
    share = np.mean([in_holdout(image, 10) for image in images])
    assert 0.08 < share < 0.12
    assert [in_holdout(image, 10) for image in images[:50]] == [in_holdout(image.copy(), 10) for image in images[:50]]
    assert all(in_holdout(image, 99.99) or not in_holdout(image, 10) for image in images[:200])  # nested shares


def test_first_per_class_counts_across_blocks():
    kept: Counter = Counter()
    first = first_per_class(np.array([1, 1, 2, 1]), kept, limit_per_class=2)
    second = first_per_class(np.array([2, 1, 2, 2]), kept, limit_per_class=2)
    assert first.tolist() == [True, True, True, False] and second.tolist() == [True, False, False, False]
    assert first_per_class(np.array([3, 3]), Counter(), None).all()


def test_convert_kaggle_writes_folders_named_by_row(tiny_pair, tmp_path: Path):
    kaggle_dir, images, labels = tiny_pair
    out_dir = tmp_path / "jpg"
    rows = convert_kaggle(KaggleSource(kaggle_dir, 25), out_dir, limit_per_class=None, quality=95, workers=1)

    by_split = Counter(row.split for row in rows)
    assert by_split["training"] + by_split["testing"] == 40 and by_split["unlabelled"] == 12
    assert by_split["testing"] > 0 and by_split["training"] > 0
    for row in rows:
        name = Path(row.path).stem
        position = int(name) - 1 + (40 if row.split == "unlabelled" else 0)  # row r of a file ↔ image r - 1
        expected_path = f"unlabelled/{name}.jpg" if row.split == "unlabelled" else f"{row.split}/{labels[position]}/{name}.jpg"
        assert row.path == expected_path and row.label == (None if row.split == "unlabelled" else labels[position])
        with Image.open(out_dir / row.path) as image:
            assert np.abs(np.asarray(image, dtype=int) - images[position]).mean() < 3  # the same picture, as JPEG
        assert in_holdout(images[position], 25) == (row.split == "testing") or row.split == "unlabelled"
    assert sorted(p.name for p in (out_dir / "unlabelled").iterdir()) == [f"{i:05d}.jpg" for i in range(1, 13)]
    assert not list(out_dir.glob(".kaggle-*"))  # the staging folder is gone


def test_manifest_round_trip_keeps_unlabelled_rows(tiny_pair, tmp_path: Path):
    from mnist_transfer.data.convert import write_manifest

    rows = convert_kaggle(KaggleSource(tiny_pair[0], 10), tmp_path / "jpg", limit_per_class=2, quality=95, workers=1)
    write_manifest(rows, tmp_path / "manifest.csv")
    assert read_manifest(tmp_path / "manifest.csv") == rows
    assert Counter(row.split for row in rows)["unlabelled"] == 12  # test.csv is never limited: a submission needs every row
    assert max(Counter((row.split, row.label) for row in rows if row.label is not None).values()) <= 2


def test_a_bad_row_leaves_the_previous_folders_untouched(tiny_pair, tmp_path: Path):
    kaggle_dir, _, _ = tiny_pair
    out_dir = tmp_path / "jpg"
    (out_dir / "training" / "3").mkdir(parents=True)
    (out_dir / "training" / "3" / "00001.jpg").write_bytes(b"an earlier run's JPG")
    test_csv = kaggle_dir / "test.csv"
    test_csv.write_text(rewrite_line(13, set_field(5, "300"))(test_csv.read_text()))  # train.csv goes through first

    with pytest.raises(KaggleCsvError, match=re.escape(f"{test_csv}: line 13, column 6 (pixel5)")):
        convert_kaggle(KaggleSource(kaggle_dir, 10), out_dir, limit_per_class=None, quality=95, workers=1)
    assert sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*")) == [
        "training", "training/3", "training/3/00001.jpg"
    ]


def test_too_small_a_holdout_is_an_error_naming_the_param(tiny_pair, tmp_path: Path):
    with pytest.raises(KaggleCsvError, match=r"no row went to data/jpg/testing \(data.kaggle_holdout_percentage = 0.01\)"):
        convert_kaggle(KaggleSource(tiny_pair[0], 0.01), tmp_path / "jpg", limit_per_class=None, quality=95, workers=1)


def backbone_passes(result) -> int:
    """The bottlenecks stage's count of images it sent through the backbone."""
    return int(re.search(r"(\d+) backbone passes now", result.stdout + result.stderr).group(1))


@pytest.mark.e2e
def test_switching_data_source_reruns_data_stages_and_reuses_features(
    pipeline_repo: Path, mnist_dir: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("MNIST_FEATURE_STORE", str(tmp_path / "store.sqlite"))
    images, labels = load_mnist(mnist_dir)
    write_kaggle_csvs(images, labels, pipeline_repo / "data" / "kaggle", n_train=200, n_test=20)  # MNIST's first rows
    configure_stand_in_run(pipeline_repo, mnist_dir, limit_per_class=5)
    manifest = pipeline_repo / "data" / "jpg" / "manifest.csv"
    bottlenecks = pipeline_repo / "data" / "bottlenecks" / "training.npz"

    first = run_dvc(pipeline_repo, "repro", "bottlenecks")
    mnist_manifest = manifest.read_text()
    with np.load(bottlenecks) as archive:
        mnist_features, mnist_hashes = archive["features"], set(archive["hashes"].tolist())
    assert backbone_passes(first) == 50

    update_params(pipeline_repo, {"data.source": "kaggle"})
    second = run_dvc(pipeline_repo, "repro", "bottlenecks")
    for stage in ("download", "extract", "convert", "bottlenecks"):
        assert f"Running stage '{stage}'" in second.stdout
    kaggle_training = [row for row in read_manifest(manifest) if row.split == "training"]
    assert len(kaggle_training) == 50 and Counter(row.split for row in read_manifest(manifest))["unlabelled"] == 20
    new_images = {row.sha256 for row in kaggle_training} - mnist_hashes
    assert 0 < len(new_images) < 50  # MNIST's first images are in both; the holdout moved some out of training
    assert backbone_passes(second) == len(new_images)  # an identical image (same JPG bytes) is never embedded twice

    update_params(pipeline_repo, {"data.source": "mnist"})
    third = run_dvc(pipeline_repo, "repro", "--no-run-cache", "bottlenecks")  # really rerun, not restored
    for stage in ("download", "extract", "convert", "bottlenecks"):
        assert f"Running stage '{stage}'" in third.stdout
    assert manifest.read_text() == mnist_manifest  # the same 100 JPGs, byte for byte
    assert backbone_passes(third) == 0
    with np.load(bottlenecks) as archive:
        assert np.array_equal(archive["features"], mnist_features)
    assert "no unlabelled images" in (pipeline_repo / "data" / "jpg" / "unlabelled" / "README.txt").read_text()
