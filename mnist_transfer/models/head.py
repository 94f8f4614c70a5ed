"""Retrain the classification head on the cached bottlenecks and export the deployable model.

Reads data/bottlenecks/training.npz and params `train.*`, `backbone.*` → writes data/model/
(SavedModel: encoded images → probabilities + digit; labels.txt; head.keras) and reports/train/ (dvclive).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mnist_transfer.data.idx import N_CLASSES
from mnist_transfer.errors import ParamsError
from mnist_transfer.params import TrainParams

log = logging.getLogger("train")

def feature_statistics(features: np.ndarray, rows: np.ndarray, chunk_rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and variance of features[rows], in chunks: no copy of the selected rows is made."""
    index = np.flatnonzero(rows)
    total = np.zeros(features.shape[1], np.float64)
    total_sq = np.zeros(features.shape[1], np.float64)
    for start in range(0, len(index), chunk_rows):
        chunk = features[index[start:start + chunk_rows]].astype(np.float64)
        total += chunk.sum(axis=0)
        total_sq += np.square(chunk).sum(axis=0)
    mean = total / len(index)
    return mean, np.maximum(total_sq / len(index) - np.square(mean), 0.0)


def build_head(mean: np.ndarray, variance: np.ndarray, params: TrainParams) -> Any:
    """A Keras head: standardise the features (the given statistics), optional hidden layer, softmax."""
    import keras

    keras.utils.set_random_seed(params.seed)
    normalize = keras.layers.Normalization(mean=mean.astype(np.float32), variance=variance.astype(np.float32), name="standardize")
    layers = [keras.Input(shape=(len(mean),), name="features"), normalize]
    if params.hidden_units > 0:
        layers.append(keras.layers.Dense(params.hidden_units, activation="relu", name="hidden"))
    if params.dropout > 0:
        layers.append(keras.layers.Dropout(params.dropout, seed=params.seed))
    layers.append(keras.layers.Dense(N_CLASSES, activation="softmax", name="probabilities"))
    head = keras.Sequential(layers, name="head")
    head.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
        metrics=["accuracy"],
    )
    return head


def feature_batches(
    features: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    batch_size: int,
    sample_weight: np.ndarray | None = None,
    shuffle_seed: int | None = None,
) -> Any:
    """A keras.utils.PyDataset of (features, one-hot[, weight]) batches of features[rows].

    Each batch is gathered from the one features array when Keras asks for it, so training never holds a
    second copy of the training set (the head's peak memory stays that of the features file). With
    `shuffle_seed`, the order is reshuffled every epoch, deterministically.
    """
    import keras

    index = np.flatnonzero(rows)

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.order = index.copy()
            self.rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)
            self.on_epoch_end()

        def __len__(self) -> int:
            return -(-len(self.order) // batch_size)

        def __getitem__(self, batch: int) -> tuple:
            take = np.sort(self.order[batch * batch_size:(batch + 1) * batch_size])  # sorted: faster gather
            one_hot = np.eye(N_CLASSES, dtype=np.float32)[labels[take]]
            if sample_weight is None:
                return features[take], one_hot
            return features[take], one_hot, sample_weight[take]

        def on_epoch_end(self) -> None:
            if self.rng is not None:
                self.rng.shuffle(self.order)

    return Batches()


def train_head(
    features: np.ndarray,
    labels: np.ndarray,
    is_validation: np.ndarray,
    params: TrainParams,
    callbacks: list,
    sample_weight: np.ndarray | None = None,
) -> tuple[Any, dict[str, float]]:
    """Fit the head with early stopping on validation loss; keep the best epoch's weights.

    Args:
        sample_weight: (n_images,) weight of each image in the training loss (your own digits count more);
            None: all 1.
    Returns the head and its final train/validation metrics (of the restored best weights).
    """
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    if is_validation.all() or not is_validation.any():
        raise ParamsError("the validation split is empty or holds every image: adjust train.validation_percentage")
    train, valid = ~is_validation, is_validation
    head = build_head(*feature_statistics(features, train), params)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.patience, restore_best_weights=True)
    weights = None if sample_weight is None else np.asarray(sample_weight, np.float32)
    history = head.fit(
        feature_batches(features, labels, train, params.batch_size, weights, shuffle_seed=params.seed),
        validation_data=feature_batches(features, labels, valid, 4096),
        epochs=params.epochs, verbose=0, callbacks=[stop, *callbacks],
    )
    train_loss, train_accuracy = head.evaluate(feature_batches(features, labels, train, 4096), verbose=0)
    val_loss, val_accuracy = head.evaluate(feature_batches(features, labels, valid, 4096), verbose=0)
    summary = {
        "train_accuracy": float(train_accuracy), "train_loss": float(train_loss),
        "val_accuracy": float(val_accuracy), "val_loss": float(val_loss),
        "epochs_run": len(history.history["loss"]), "best_epoch": int(np.argmin(history.history["val_loss"])) + 1,
        "n_train": int(train.sum()), "n_validation": int(valid.sum()),
    }
    return head, summary


def head_probabilities(head: Any, features: np.ndarray, rows: np.ndarray, chunk_rows: int = 4096) -> np.ndarray:
    """(rows.sum(), 10) probabilities of the head on features[rows], a chunk at a time (no copy of all rows)."""
    index = np.flatnonzero(rows)
    parts = [np.empty((0, N_CLASSES), np.float32)]
    for start in range(0, len(index), chunk_rows):
        chunk = features[index[start : start + chunk_rows]]
        parts.append(np.asarray(head.predict(chunk, batch_size=chunk_rows, verbose=0), np.float32))
    return np.concatenate(parts)
