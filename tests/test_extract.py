"""Extract stage: gunzip + validation, atomic outputs, clear errors for broken archives."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from mnist_transfer.data.extract import extract_all, gunzip_validated
from mnist_transfer.data.idx import IdxError, encode_idx, read_labels
from mnist_transfer.params import SplitSizes


def test_extracts_and_validates_every_split(tiny_raw_dir: Path, tiny_idx_dir: Path, tmp_path: Path):
    out_dir = tmp_path / "out"
    headers = extract_all(tiny_raw_dir, out_dir, SplitSizes(training=50, testing=20))
    assert headers["train-images-idx3-ubyte"].dims == (50, 28, 28)
    assert headers["t10k-labels-idx1-ubyte"].dims == (20,)
    for name in headers:
        assert (out_dir / name).read_bytes() == (tiny_idx_dir / name).read_bytes()


def test_wrong_split_size_fails(tiny_raw_dir: Path, tmp_path: Path):
    with pytest.raises(IdxError, match="holds 50 items, expected 60000"):
        extract_all(tiny_raw_dir, tmp_path / "out", SplitSizes(training=60000, testing=None))


def test_truncated_gzip_stream_is_a_clear_error_and_leaves_no_file(tmp_path: Path):
    gz_path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    gz_path.write_bytes(gzip.compress(encode_idx(np.arange(10, dtype=np.uint8)))[:-12])
    out_path = tmp_path / "out" / "t10k-labels-idx1-ubyte"
    with pytest.raises(IdxError, match="truncated gzip stream"):
        gunzip_validated(gz_path, out_path, None)
    assert list(out_path.parent.iterdir()) == []


def test_not_gzip_is_a_clear_error(tmp_path: Path):
    gz_path = tmp_path / "x.gz"
    gz_path.write_bytes(b"<html>not gzip</html>")
    with pytest.raises(IdxError, match="corrupt gzip data"):
        gunzip_validated(gz_path, tmp_path / "x", None)


def test_mismatched_counts_between_images_and_labels(tiny_raw_dir: Path, tmp_path: Path):
    labels_gz = tiny_raw_dir / "t10k-labels-idx1-ubyte.gz"
    labels_gz.write_bytes(gzip.compress(encode_idx(np.zeros(19, dtype=np.uint8))))
    with pytest.raises(IdxError, match="testing: 20 images but 19 labels"):
        extract_all(tiny_raw_dir, tmp_path / "out", None)


def test_missing_archive_says_which_stage_to_run(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="dvc repro download"):
        extract_all(tmp_path, tmp_path / "out", None)


def test_labels_survive_the_round_trip(tiny_raw_dir: Path, tmp_path: Path):
    extract_all(tiny_raw_dir, tmp_path / "out", None)
    np.testing.assert_array_equal(read_labels(tmp_path / "out" / "train-labels-idx1-ubyte"), np.arange(50) % 10)
