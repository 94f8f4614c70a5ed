"""Your own handwriting: normalise the photos and scans in data/own into MNIST-like JPGs.

Reads data/own/{training,testing}/ — images in `<digit>/` folders, or named with the digit as the last
character of the file stem (`test_3.png`, `my-7.jpg`) — → writes data/jpg/own/{training,testing}/<digit>/
(28×28 JPGs, as MNIST looks) and data/jpg/own/manifest.csv (which original each JPG came from).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from mnist_transfer.data.convert import write_checked_jpg
from mnist_transfer.errors import DataError
from mnist_transfer.outputs import atomic_path

log = logging.getLogger("own")

OWN_SPLITS = ("training", "testing")
OWN_MANIFEST_COLUMNS = ("path", "original", "split", "label")


@dataclass(frozen=True)
class OwnImage:
    original: Path  # the user's file
    split: str
    label: int

    def jpg_rel_path(self, own_root: Path) -> str:
        """Where its normalised JPG goes, relative to data/jpg: own/<split>/<digit>/<stem>-<hash>.jpg."""
        rel = self.original.relative_to(own_root).as_posix()
        digest = hashlib.sha1(rel.encode("utf-8")).hexdigest()[:8]  # photo.png and photo.jpg never collide
        return f"own/{self.split}/{self.label}/{self.original.stem}-{digest}.jpg"


def label_of(path: Path, split_dir: Path) -> int:
    """The digit of an own image: its `<digit>/` folder, else the last character of its file stem."""
    folder = path.parent.relative_to(split_dir).parts
    if folder and folder[0].isdigit() and len(folder[0]) == 1:
        return int(folder[0])
    if path.stem[-1:].isdigit():
        return int(path.stem[-1])
    raise DataError(
        f"{path}: cannot tell which digit it is; put it in a <digit>/ folder of {split_dir} "
        "or end its name with the digit (e.g. photo_7.png)"
    )


def own_images(own_root: Path) -> list[OwnImage]:
    """Every file under own_root/<split>/, sorted, hidden files (.gitkeep) and README files skipped."""
    images = []
    for split in OWN_SPLITS:
        split_dir = own_root / split
        for path in sorted(split_dir.rglob("*")) if split_dir.is_dir() else []:
            if path.is_file() and not path.name.startswith(".") and not path.name.lower().startswith("readme"):
                images.append(OwnImage(path, split, label_of(path, split_dir)))
    return images


def normalise_own(images: list[OwnImage], own_root: Path, out_root: Path, quality: int) -> list[tuple[str, ...]]:
    """Write every image's normalised JPG under out_root (= data/jpg); fail naming every bad file at once."""
    from mnist_transfer.data.normalise import normalise_digit, read_image

    rows, problems = [], []
    for image in images:
        try:
            pixels = normalise_digit(read_image(image.original))  # (28, 28) uint8, white ink on black
        except DataError as error:  # the reader names the file, the normaliser only what it saw
            problems.append(str(error) if str(image.original) in str(error) else f"{image.original}: {error}")
            continue
        rel_path = image.jpg_rel_path(own_root)
        write_checked_jpg(out_root / rel_path, pixels, quality)
        rows.append((rel_path, image.original.as_posix(), image.split, str(image.label)))
    if problems:
        raise DataError(f"{len(problems)} of your own images cannot be used:\n  " + "\n  ".join(problems))
    return rows


def write_own_manifest(rows: list[tuple[str, ...]], path: Path) -> None:
    with atomic_path(path) as tmp_path, open(tmp_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(OWN_MANIFEST_COLUMNS)
        writer.writerows(rows)


def read_own_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of data/jpg/own/manifest.csv; none if the file is absent (no own digits)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
