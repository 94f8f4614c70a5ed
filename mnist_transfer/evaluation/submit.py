"""Kaggle's submission file: one digit per row of test.csv, as `ImageId,Label` in test.csv's order.

Reads data/jpg/unlabelled/<ImageId>.jpg (the convert stage with data.source kaggle) and data/model
→ writes reports/kaggle/submission.csv: features through the feature store (each image through the
backbone once, ever), then the trained head. Any other exported model (the CNN's data/cnn) gives
submission_cnn.csv through its serving_default signature. With data.source mnist: a note, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mnist_transfer.data.kaggle import SUBMISSION_HEADER
from mnist_transfer.data.records import ImageRecord, sha256_bytes
from mnist_transfer.errors import DataError
from mnist_transfer.evaluation.label import classify_stored
from mnist_transfer.features.feature_store import FeatureStore
from mnist_transfer.models.export import HEAD_FILE, serve_files
from mnist_transfer.models.inference import DigitModel
from mnist_transfer.outputs import atomic_path

SUBMISSION_FILE = "submission.csv"
CNN_SUBMISSION_FILE = "submission_cnn.csv"  # written when the stage is given the CNN's model folder (--cnn)
NO_LABEL = -1  # ImageRecord.label of an unlabelled image
EXPORTED_BATCH = 256  # images per call of an exported model
MNIST_NOTE = (
    "data.source is mnist: nothing to submit. With data.source kaggle (see docs/kaggle.md), "
    "this folder holds submission.csv (ImageId,Label) for Kaggle's test.csv."
)


def image_id(path: Path) -> int:
    """The ImageId a JPG of data/jpg/unlabelled stands for: its name, 00042.jpg → 42."""
    if not path.stem.isdigit():
        raise DataError(f"{path}: not one of test.csv's images (<ImageId>.jpg, 00001.jpg …): rerun the convert stage")
    return int(path.stem)


def unlabelled_records(folder: Path, data_root: Path) -> list[ImageRecord]:
    """Every <ImageId>.jpg of folder in ImageId order, with its content hash; the ids must run 1..N."""
    paths = sorted(folder.glob("*.jpg"), key=image_id)
    if not paths:
        raise DataError(f"{folder} holds no images: run the convert stage with data.source kaggle (dvc repro)")
    for expected, path in enumerate(paths, start=1):
        if image_id(path) != expected:
            raise DataError(
                f"{folder}: ImageId {expected} ({expected:05d}.jpg) is missing, so the submission would not cover "
                "test.csv: rerun the convert stage (dvc repro -f -s convert)"
            )
    return [
        ImageRecord(path.relative_to(data_root).as_posix(), NO_LABEL, sha256_bytes(path.read_bytes())) for path in paths
    ]


def transfer_model_digits(
    records: Sequence[ImageRecord], store: FeatureStore, backbone_id: str, model_dir: Path
) -> np.ndarray:
    """Digits of the transfer model's head (model_dir/head.keras) on the records' stored features."""
    import keras  # only now: the mnist case and usage errors cost no TensorFlow start-up

    head = keras.saving.load_model(model_dir / HEAD_FILE)
    return classify_stored(records, store, backbone_id, head).argmax(axis=1)


def write_submission(digits: np.ndarray, path: Path) -> None:
    """ImageId,Label: one row per test.csv row, ImageId from 1 in test.csv's order."""
    with atomic_path(path) as tmp_path, open(tmp_path, "w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(SUBMISSION_HEADER) + "\n")
        handle.writelines(f"{image_id},{int(digit)}\n" for image_id, digit in enumerate(digits, start=1))


def read_submission(path: Path) -> np.ndarray:
    """The digits of a submission file, checked to be ImageId 1..N in order with labels 0..9."""
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().strip()
    if header != ",".join(SUBMISSION_HEADER) or not np.array_equal(table[:, 0], np.arange(1, len(table) + 1)):
        raise DataError(f"{path}: not a submission (header ImageId,Label and ImageIds 1..N in order)")
    if table.size and not ((table[:, 1] >= 0) & (table[:, 1] <= 9)).all():
        raise DataError(f"{path}: a Label outside 0..9")
    return table[:, 1]


def exported_model_digits(model_dir: Path, paths: Sequence[Path]) -> np.ndarray:
    """Digits of an exported model (the CNN, or the transfer model) for image files, through serving_default.

    The encoded bytes go in, so the model decodes them with TensorFlow's decoder, as every stage does: fed
    PIL-decoded pixels instead (predict_images), the stand-in transfer model changed 5 of 50 digits here.
    """
    served = DigitModel.load(model_dir).loaded.signatures["serving_default"]
    return serve_files(served, paths, EXPORTED_BATCH)[0]
