"""Your own handwriting: labels from folders or file names, the own stage's outputs, and its errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_transfer.data.own import OwnImage, label_of, normalise_own, own_images, write_own_manifest
from mnist_transfer.errors import DataError


def photo(path: Path, digit_side_px: int = 60, dark_on_light: bool = True) -> Path:
    """A synthetic photo of a '1'-like stroke: a bar on grey paper, off-centre."""
    paper, ink = (200, 40) if dark_on_light else (20, 230)
    pixels = np.full((150, 120), paper, np.uint8)
    pixels[30 : 30 + digit_side_px, 70:78] = ink
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize(
    ("rel_path", "digit"),
    [("7/photo.jpg", 7), ("0/sub/scan.png", 0), ("test_3.png", 3), ("my-7.jpg", 7), ("notes/IMG_0042.jpg", 2)],
)
def test_label_from_folder_or_last_character(tmp_path: Path, rel_path: str, digit: int):
    assert label_of(tmp_path / "training" / rel_path, tmp_path / "training") == digit


@pytest.mark.parametrize("rel_path", ["photo.jpg", "12/photo.png", "digit_seven.png"])
def test_unreadable_label_names_the_file(tmp_path: Path, rel_path: str):
    with pytest.raises(DataError, match=rf"{rel_path}.*cannot tell which digit"):
        label_of(tmp_path / "training" / rel_path, tmp_path / "training")


def test_listing_skips_hidden_and_readme_files_and_absent_splits(tmp_path: Path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / ".gitkeep").touch()
    (tmp_path / "training" / "README.md").write_text("notes")
    photo(tmp_path / "training" / "4" / "a.png")
    images = own_images(tmp_path)
    assert images == [OwnImage(tmp_path / "training" / "4" / "a.png", "training", 4)]
    assert images[0].jpg_rel_path(tmp_path).startswith("own/training/4/a-")


def test_same_stem_different_files_never_collide(tmp_path: Path):
    first = OwnImage(tmp_path / "testing" / "x_1.png", "testing", 1)
    second = OwnImage(tmp_path / "testing" / "x_1.jpg", "testing", 1)
    assert first.jpg_rel_path(tmp_path) != second.jpg_rel_path(tmp_path)


def test_normalised_jpgs_and_manifest(tmp_path: Path):
    own_root, out_root = tmp_path / "own", tmp_path / "jpg"
    photo(own_root / "training" / "photo_1.png")
    photo(own_root / "testing" / "1" / "scan.jpg", dark_on_light=False)
    rows = normalise_own(own_images(own_root), own_root, out_root, quality=95)
    assert [(row[2], row[3]) for row in rows] == [("training", "1"), ("testing", "1")]
    for row in rows:
        with Image.open(out_root / row[0]) as image:
            assert image.size == (28, 28) and image.format == "JPEG"
            pixels = np.asarray(image)
        assert pixels[0].max() < 40 and pixels.max() > 200  # white ink on black, like MNIST
    write_own_manifest(rows, out_root / "own" / "manifest.csv")
    with open(out_root / "own" / "manifest.csv", newline="") as handle:
        assert [line["original"] for line in csv.DictReader(handle)] == [row[1] for row in rows]


def test_every_bad_file_is_named_at_once(tmp_path: Path):
    own_root = tmp_path / "own"
    photo(own_root / "training" / "fine_2.png")
    (own_root / "training" / "empty_3.png").write_bytes(b"")
    Image.new("L", (50, 50), 180).save(own_root / "training" / "blank_4.png")
    with pytest.raises(DataError) as failure:
        normalise_own(own_images(own_root), own_root, tmp_path / "jpg", quality=95)
    message = str(failure.value)
    assert "2 of your own images cannot be used" in message
    assert "empty_3.png" in message and "blank_4.png" in message and "fine_2.png" not in message
