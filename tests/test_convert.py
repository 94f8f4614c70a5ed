"""Convert stage: known-answer JPG folders, zero-byte and decode checks, limit_per_class, manifest."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_transfer.data.convert import (
    ConvertError,
    ManifestRow,
    convert_all,
    encode_jpg,
    jpg_problem,
    read_manifest,
    select_indices,
    write_checked_jpg,
    write_manifest,
)
from mnist_transfer.data.records import sha256_bytes
from tests.conftest import tiny_split


def test_known_answer_folders_counts_and_pixels(tiny_idx_dir: Path, tmp_path: Path):
    out_dir = tmp_path / "jpg"
    rows = convert_all(tiny_idx_dir, out_dir, limit_per_class=None, quality=95, workers=2)
    assert len(rows) == 70
    assert [row.path for row in rows] == sorted(row.path for row in rows)
    for split, n_images in (("training", 50), ("testing", 20)):
        for digit in range(10):
            files = sorted((out_dir / split / str(digit)).iterdir())
            assert len(files) == n_images // 10
    # image 13 of training has label 3 (labels cycle 0..9); its pixels survive JPEG within tolerance
    images, labels = tiny_split(50, seed=50)
    assert labels[13] == 3
    decoded = np.asarray(Image.open(out_dir / "training" / "3" / "00013.jpg"))
    assert decoded.shape == (28, 28)
    assert np.abs(decoded.astype(int) - images[13].astype(int)).mean() < 2.0
    row = next(r for r in rows if r.path == "training/3/00013.jpg")
    assert (row.split, row.label) == ("training", 3)
    assert row.bytes == (out_dir / row.path).stat().st_size and row.sha256 == sha256_bytes((out_dir / row.path).read_bytes())


@pytest.mark.parametrize(
    "labels, limit, expected",
    [
        ([0, 1, 0, 1, 0, 2], None, [0, 1, 2, 3, 4, 5]),
        ([0, 1, 0, 1, 0, 2], 1, [0, 1, 5]),
        ([0, 1, 0, 1, 0, 2], 2, [0, 1, 2, 3, 5]),
        ([3, 3, 3], 5, [0, 1, 2]),
    ],
)
def test_select_indices(labels: list[int], limit: int | None, expected: list[int]):
    assert select_indices(np.array(labels), limit).tolist() == expected


def test_limit_per_class_is_honoured(tiny_idx_dir: Path, tmp_path: Path):
    rows = convert_all(tiny_idx_dir, tmp_path / "jpg", limit_per_class=2, quality=90, workers=1)
    assert len(rows) == 2 * 10 * 2  # 2 per digit, 10 digits, 2 splits
    assert len(list((tmp_path / "jpg" / "testing" / "7").iterdir())) == 2


def test_rerun_with_a_smaller_limit_leaves_no_stale_files(tiny_idx_dir: Path, tmp_path: Path):
    convert_all(tiny_idx_dir, tmp_path / "jpg", limit_per_class=None, quality=90, workers=1)
    convert_all(tiny_idx_dir, tmp_path / "jpg", limit_per_class=1, quality=90, workers=1)
    assert len(list((tmp_path / "jpg").rglob("*.jpg"))) == 20


@pytest.mark.parametrize(
    "payload, problem",
    [
        (b"", "zero bytes"),
        (b"\xff\xd8\xff garbage", "does not decode"),
        (encode_jpg(np.zeros((28, 28), np.uint8), 95)[:40], "does not decode"),
    ],
)
def test_jpg_problem_detects_bad_files(payload: bytes, problem: str):
    assert problem in jpg_problem(payload)


def test_jpg_problem_checks_size_and_format():
    png = io.BytesIO()
    Image.new("L", (28, 28)).save(png, format="PNG")
    assert "expected JPEG 28x28" in jpg_problem(png.getvalue())
    assert "expected JPEG 28x28" in jpg_problem(encode_jpg(np.zeros((27, 28), np.uint8), 95))
    assert jpg_problem(encode_jpg(np.zeros((28, 28), np.uint8), 95)) is None


def test_zero_byte_file_is_rewritten_once(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    calls = []

    def flaky_encode(pixels: np.ndarray, quality: int) -> bytes:
        calls.append(quality)
        return b"" if len(calls) == 1 else encode_jpg(pixels, quality)

    caplog.set_level(logging.WARNING)
    path = tmp_path / "0" / "00001.jpg"
    on_disk = write_checked_jpg(path, np.full((28, 28), 200, np.uint8), 95, encode=flaky_encode)
    assert len(calls) == 2 and "zero bytes; rewriting" in caplog.text
    assert on_disk == path.read_bytes() and jpg_problem(on_disk) is None


def test_file_still_bad_after_rewrite_fails_naming_it(tmp_path: Path):
    path = tmp_path / "0" / "00001.jpg"
    with pytest.raises(ConvertError, match=r"00001\.jpg: still bad after a rewrite: zero bytes"):
        write_checked_jpg(path, np.zeros((28, 28), np.uint8), 95, encode=lambda pixels, quality: b"")


def test_manifest_round_trip(tmp_path: Path):
    rows = [ManifestRow("testing/1/00002.jpg", "testing", 1, 700, "ab" * 32)]
    write_manifest(rows, tmp_path / "manifest.csv")
    assert read_manifest(tmp_path / "manifest.csv") == rows
    assert (tmp_path / "manifest.csv").read_text().splitlines()[0] == "path,split,label,bytes,sha256"
