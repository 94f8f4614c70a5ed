"""A loaded digit model for people-facing tools (`mnist-transfer predict`, the web app).

Wraps any model exported with the project's signatures (export.py: the transfer model in data/model, the
from-scratch CNN in data/cnn): loaded once, then 28×28 MNIST-like images in, calibrated probabilities out, in
batches (the temperature of the folder's model.json, mnist_transfer.models.calibration; 1 without one). A number
reader's folder (data/reader) also holds its pair classifier (export.PAIRS_FILE), loaded with it: `pair_classifier`.
Raw photos go through mnist_transfer.normalise.normalise_digit first. default_model_dir picks the folder
to answer with when none is named (the rule: mnist_transfer.models.metadata).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_transfer.data.idx import IMAGE_SIDE_PX
from mnist_transfer.errors import StageError
from mnist_transfer.models.calibration import apply_temperature
from mnist_transfer.models.export import (
    HEAD_FILE,
    LABELS_FILE,
    PAIRS_FILE,
    SAVED_MODEL_DIR,
    TFLITE_FILE,
    TfliteClassifier,
    load_exported,
    load_tflite,
)
from mnist_transfer.models.metadata import METADATA_FILE, ModelMetadata, choose_model, read_metadata

SIGNATURE = "predict_images"  # decoded uint8 (batch, h, w, 1) → probabilities (batch, n_classes)
DEFAULT_BATCH_SIZE = 256


class ModelNotFoundError(StageError, FileNotFoundError):
    """The model folder does not hold an exported model."""


@dataclass(frozen=True)
class DigitModel:
    """An exported model, loaded once: `predict` maps (n, 28, 28) uint8 images to (n, n_classes) probabilities."""

    model_dir: Path
    labels: tuple[str, ...]  # class i's label (labels.txt, line i)
    identity: str  # the folder and a digest of its graph and labels: changes when the model does
    loaded: Any  # the SavedModel object (kept alive, its signatures need it), or a TfliteClassifier
    batch_size: int = DEFAULT_BATCH_SIZE
    metadata: ModelMetadata | None = None  # the folder's model.json (None: exported before it existed)
    pairs: Any = None  # a number reader's pair classifier (a Keras model), or None

    @property
    def name(self) -> str:
        """"transfer" or "cnn": the name every answer carries."""
        return model_name(self.model_dir, self.metadata)

    @property
    def temperature(self) -> float:
        return self.metadata.temperature if self.metadata is not None else 1.0

    @classmethod
    def load(cls, model_dir: Path, tflite: bool = False) -> DigitModel:
        """Load model_dir/saved_model, or model_dir/model.tflite with tflite=True (written by train_cnn, and by
        train with train.tflite); fail clearly if it is not there."""
        graph = model_dir / TFLITE_FILE if tflite else model_dir / SAVED_MODEL_DIR / "saved_model.pb"
        labels_path = model_dir / LABELS_FILE
        if tflite and labels_path.is_file() and not graph.is_file():
            raise ModelNotFoundError(
                f"{model_dir}: no {TFLITE_FILE}: the transfer model's is written only with train.tflite: true "
                "(`dvc exp run -S train.tflite=true`); the CNN's always is (--model data/cnn)"
            )
        for required in (graph, labels_path):
            if not required.is_file():
                raise ModelNotFoundError(
                    f"{model_dir}: no exported model ({required} is missing); run `dvc repro` first "
                    "(it writes data/model), or pass the folder of an exported model with --model"
                )
        labels = tuple(labels_path.read_text(encoding="utf-8").split())
        identity, metadata = model_identity(model_dir, graph, labels_path), read_metadata(model_dir)
        if tflite:
            return cls(model_dir, labels, identity, load_tflite(model_dir), metadata=metadata)
        loaded = load_exported(model_dir)
        if SIGNATURE not in loaded.signatures:
            raise ModelNotFoundError(f"{model_dir}: the SavedModel has no '{SIGNATURE}' signature; re-export it")
        pairs = None
        if (model_dir / PAIRS_FILE).is_file():
            import keras

            pairs = keras.saving.load_model(model_dir / PAIRS_FILE)
        return cls(model_dir, labels, identity, loaded, metadata=metadata, pairs=pairs)

    @property
    def pair_classifier(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """uint8 (n, 28, 56) pairs → float32 (n, 101) probabilities (segment.ClassifyPairs), for a number reader
        with a pair classifier (not with tflite=True); else None."""
        if self.pairs is None:
            return None

        def classify(pairs: np.ndarray) -> np.ndarray:
            if pairs.ndim != 3 or pairs.dtype != np.uint8:
                raise ValueError(f"expected uint8 (n, 28, 56) pairs, got {pairs.dtype} {pairs.shape}")
            batches = [np.asarray(self.pairs(pairs[start : start + self.batch_size, :, :, None].astype(np.float32),
                                             training=False)) for start in range(0, len(pairs), self.batch_size)]
            return np.concatenate(batches) if batches else np.empty((0, self.pairs.output_shape[-1]), np.float32)

        return classify

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 (n, 28, 28) MNIST-like images → float32 (n, n_classes) calibrated probabilities."""
        import tensorflow as tf

        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE_PX, IMAGE_SIDE_PX) or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 (n, 28, 28) images, got {images.dtype} {images.shape}")
        if isinstance(self.loaded, TfliteClassifier):
            serve = self.loaded
        else:
            signature = self.loaded.signatures[SIGNATURE]
            serve = lambda batch: signature(images=tf.constant(batch))["probabilities"].numpy()
        starts = range(0, len(images), self.batch_size)
        batches = [serve(images[start : start + self.batch_size, :, :, None]) for start in starts]
        if not batches:
            return np.empty((0, len(self.labels)), np.float32)
        probabilities = np.concatenate(batches)
        return probabilities if self.temperature == 1.0 else apply_temperature(probabilities, self.temperature)


def model_name(model_dir: Path, metadata: ModelMetadata | None) -> str:
    """The name answers carry: model.json's, else "transfer" for a folder with the head, else the folder's name."""
    if metadata is not None:
        return metadata.name
    return "transfer" if (model_dir / HEAD_FILE).is_file() else model_dir.name


def default_model_dir(candidates: Sequence[Path]) -> tuple[Path, str]:
    """(the candidate folder to answer with, why) among those holding an exported model: the best validation
    accuracy in model.json (mnist_transfer.models.metadata.choose_model)."""
    present = [folder for folder in candidates if (folder / LABELS_FILE).is_file()]
    if not present:
        raise ModelNotFoundError(
            f"no exported model in {' or '.join(str(folder) for folder in candidates)}: run `dvc repro` first "
            "(it writes data/model and data/cnn), or pass the folder of an exported model with --model"
        )
    choice = choose_model([(str(folder), read_metadata(folder)) for folder in present])
    return present[choice.index], choice.reason


def model_identity(model_dir: Path, graph: Path, labels_path: Path) -> str:
    """'<folder>@<digest>' of the graph, the labels, the variables' index (which holds each tensor's CRC) and
    model.json (its temperature changes the answers), and a number reader's pair classifier."""
    digest = hashlib.sha256()
    for part in (graph, labels_path, graph.parent / "variables" / "variables.index", model_dir / METADATA_FILE,
                 model_dir / PAIRS_FILE):
        digest.update(part.read_bytes() if part.is_file() else b"")
    return f"{model_dir.resolve()}@{digest.hexdigest()[:12]}"
