"""A from-scratch CNN on the 28×28 digits, beside the transfer model: the core of the train_cnn and label_cnn
stages.

Trained on the same JPG folders with the same stable hash validation split (train.validation_percentage),
augmented by one random affine transform per digit (mnist_transfer.models.augment), for a fixed number of epochs
of a one-cycle learning-rate schedule with label smoothing; deterministic per `cnn.seed`. Exported
to data/cnn/ with the transfer model's signatures (serving_default on encoded bytes, predict_images on decoded
uint8 (batch, h, w, 1), both → probabilities, digit), labels.txt, cnn.keras (the Keras model alone) and
model.json (validation accuracy, calibration temperature: mnist_transfer.models.metadata).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_transfer.data.distort import distortions
from mnist_transfer.data.idx import IMAGE_SIDE_PX, N_CLASSES
from mnist_transfer.data.records import ImageRecord
from mnist_transfer.data.segment import NOT_A_PAIR
from mnist_transfer.errors import DataError, ParamsError
from mnist_transfer.features.decode import first_undecodable, map_decoded
from mnist_transfer.models.export import DIGIT_LABELS, classifier_module, classifier_signatures, save_classifier
from mnist_transfer.models.metadata import ModelMetadata, write_metadata
from mnist_transfer.params import CnnParams

CNN_FILE = "cnn.keras"
DECODE_BATCH = 2048  # encoded images per decoding call
PREDICT_BATCH = 1024  # images per inference call
DIGIT_SHAPE = (IMAGE_SIDE_PX, IMAGE_SIDE_PX, 1)
N_PAIR_CLASSES = NOT_A_PAIR + 1  # a number reader's pair reader: 10·a + b, and NOT_A_PAIR
WARMUP_SHARE = 0.2  # of the one-cycle schedule's steps: the learning rate rises, then decays
BN_MOMENTUM = 0.9  # batch-norm statistics settle within an epoch even on small subsets (Keras' 0.99 needs ~500 steps)


@dataclass(frozen=True)
class Digits:
    """Decoded digits, in the order of their records."""

    images: np.ndarray  # (n, 28, 28, 1) uint8
    labels: np.ndarray  # (n,) int64
    rel_paths: np.ndarray  # (n,) str, relative to the data root (data/jpg)

    def subset(self, mask: np.ndarray) -> Digits:
        return Digits(self.images[mask], self.labels[mask], self.rel_paths[mask])


def digit_pixels(images: Any) -> Any:
    """uint8 (batch, h, w, 1) → float32 (batch, 28, 28, 1) in 0..255: the CNN's one preprocessing, in training,
    labelling and the exported model alike (a bilinear resize, which leaves 28×28 images exactly as they are)."""
    import tensorflow as tf

    return tf.image.resize(tf.cast(images, tf.float32), (IMAGE_SIDE_PX, IMAGE_SIDE_PX), method="bilinear")


def load_digits(records: Sequence[ImageRecord], data_root: Path) -> Digits:
    """Read and decode the records' images as the exported model does, DECODE_BATCH at a time."""
    import tensorflow as tf

    decode = tf.function(
        lambda encoded: tf.cast(tf.round(map_decoded(encoded, digit_pixels)), tf.uint8),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    parts = [np.empty((0, *DIGIT_SHAPE), np.uint8)]
    for start in range(0, len(records), DECODE_BATCH):
        batch = records[start : start + DECODE_BATCH]
        encoded = [(data_root / record.rel_path).read_bytes() for record in batch]
        try:
            parts.append(decode(tf.constant(encoded, dtype=tf.string)).numpy())
        except tf.errors.InvalidArgumentError as error:
            culprit = first_undecodable(encoded)
            if culprit is None:
                raise
            raise DataError(f"{data_root / batch[culprit[0]].rel_path}: cannot be decoded ({culprit[1]})") from error
    labels = np.array([record.label for record in records], np.int64)
    return Digits(np.concatenate(parts), labels, np.array([record.rel_path for record in records], dtype=str))


def build_cnn(params: CnnParams, n_classes: int = N_CLASSES, shape: tuple[int, int, int] = DIGIT_SHAPE,
              name: str = "cnn") -> Any:
    """Blocks of two unpadded 3×3 convolutions (batch norm, ReLU) and 2×2 max pooling, then dense → dropout →
    softmax; two blocks take 28 px to 12 and 4 (unpadded: half the compute of padded ones, measured on 2 cores,
    for the same validation accuracy).

    Input: float32 (batch, *shape) pixels in 0..255, 28×28×1 digits (a number reader's pairs: 28×56×1); output:
    n_classes probabilities (the number reader has 11, its pair reader 101: `pair_logits`).
    Weights drawn from `params.seed`.
    """
    import keras

    layers = keras.layers
    keras.utils.set_random_seed(params.seed)
    inputs = keras.Input(shape, name="pixels")
    hidden = layers.Rescaling(1 / 255, name="scale")(inputs)
    for block, filters in enumerate(params.filters, start=1):
        for conv in (1, 2):
            hidden = layers.Conv2D(filters, 3, use_bias=False, name=f"conv{block}_{conv}")(hidden)  # unpadded
            hidden = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"norm{block}_{conv}")(hidden)
            hidden = layers.ReLU(name=f"relu{block}_{conv}")(hidden)
        hidden = layers.MaxPooling2D(name=f"pool{block}")(hidden)
    hidden = layers.Flatten(name="flatten")(hidden)
    hidden = layers.Dense(params.dense_units, use_bias=False, name="dense")(hidden)
    hidden = layers.ReLU(name="relu_dense")(layers.BatchNormalization(momentum=BN_MOMENTUM, name="norm_dense")(hidden))
    hidden = layers.Dropout(params.dropout, seed=params.seed, name="dropout")(hidden)
    if n_classes == N_PAIR_CLASSES:
        outputs = layers.Softmax(name="probabilities")(pair_logits(hidden))
    else:
        outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(hidden)
    return keras.Model(inputs, outputs, name=name)


def averaged(models: Sequence[Any]) -> Any:
    """One Keras model answering the mean of `models`' probabilities (same input and classes, distinct names): an
    ensemble that saves, loads and exports as one model. One model is returned as it is."""
    if len(models) == 1:
        return models[0]
    import keras

    inputs = keras.Input(models[0].input_shape[1:], name="pixels")
    outputs = keras.layers.Average(name="probabilities")([model(inputs) for model in models])
    return keras.Model(inputs, outputs, name="cnn")


def pair_logits(hidden: Any) -> Any:
    """The pair reader's 101 logits, factorised: class 10·a + b gets left(a) + right(b) + pair and NOT_A_PAIR its
    own, from 22 learnt logits through a fixed 0/1 matrix. Under the softmax, p(10·a + b) = p(a pair) · p(left a)
    · p(right b), so every pair with a 3 on its left teaches the same left 3 — ~100× the examples a class of its
    own would get — and the saved model is plain Keras layers with the usual 101 probabilities."""
    import keras

    parts = keras.layers.Dense(2 * N_CLASSES + 2, name="pair_parts")(hidden)  # left digit, right digit, pair, not
    mapping = keras.layers.Dense(N_PAIR_CLASSES, use_bias=False, trainable=False, name="pair_logits")
    logits = mapping(parts)
    matrix = np.zeros((2 * N_CLASSES + 2, N_PAIR_CLASSES), np.float32)
    for left in range(N_CLASSES):
        for right in range(N_CLASSES):
            matrix[[left, N_CLASSES + right, 2 * N_CLASSES], N_CLASSES * left + right] = 1
    matrix[2 * N_CLASSES + 1, NOT_A_PAIR] = 1
    mapping.set_weights([matrix])
    return logits


def batches(columns: tuple[np.ndarray, ...], batch_size: int) -> Any:
    """A tf.data pipeline of batches of columns (uint8 images first, then labels…), the images cast to float32
    batch by batch (they stay uint8 in memory), in order: for validation and inference."""
    import tensorflow as tf

    def to_float(images: Any, *rest: Any) -> Any:
        return (tf.cast(images, tf.float32), *rest) if rest else tf.cast(images, tf.float32)

    dataset = tf.data.Dataset.from_tensor_slices(columns if len(columns) > 1 else columns[0])
    return without_autotuning(dataset.batch(batch_size).map(to_float).prefetch(tf.data.AUTOTUNE))


def without_autotuning(dataset: Any) -> Any:
    """`dataset` with tf.data's autotuning off. With it on, fit returned 53-57 s after its last epoch in 7 of 14
    fits on the full training set: py-spy showed the main thread in RootDataset::Iterator::~Iterator, waiting for
    autotuning's thread (TensorFlow 2.21, 2-core Intel Xeon, 2026-12-05). Off, a 5-epoch fit took 89 s of epochs,
    as before (benchmarks.cnn_recipe)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def training_batches(
    train: Digits, params: CnnParams, sample_weight: np.ndarray | None = None, n_classes: int = N_CLASSES
) -> Any:
    """Augmented (float images, one-hot labels[, weights]) batches without end, the digits reshuffled on every
    pass; each step's augmentation drawn from a stateless seed (cnn.seed, step): deterministic per seed. Fit takes
    ⌈n / batch⌉ × params.epochs of them: a finite `repeat(epochs)` holds one batch fewer whenever the last batch of
    a pass is partial, and Keras then stops a step early with "Your input ran out of data"."""
    import tensorflow as tf

    from mnist_transfer.models.augment import augment_batch

    columns: tuple = (train.images, train.labels)
    if sample_weight is not None:
        columns += (np.asarray(sample_weight, np.float32),)

    def augment(step: Any, batch: tuple) -> tuple:
        images, labels, *weights = batch
        seed = tf.stack([tf.cast(step, tf.int32), tf.constant(params.seed, tf.int32)])
        pixels = augment_batch(tf.cast(images, tf.float32), seed, params.augment)
        return (pixels, tf.one_hot(labels, n_classes), *weights)

    dataset = tf.data.Dataset.from_tensor_slices(columns).shuffle(len(train.labels), seed=params.seed)
    dataset = dataset.repeat().batch(params.batch_size).enumerate()
    dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return without_autotuning(dataset.prefetch(tf.data.AUTOTUNE))


def one_cycle(params: CnnParams, steps: int) -> Any:
    """The learning rate over `steps`: a linear warm-up from 1/25 of params.learning_rate to all of it in the
    first WARMUP_SHARE of the steps, then a cosine decay to 0 (Keras' built-in CosineDecay)."""
    import keras

    warmup = max(1, round(WARMUP_SHARE * steps))
    return keras.optimizers.schedules.CosineDecay(
        params.learning_rate / 25, decay_steps=max(1, steps - warmup), warmup_target=params.learning_rate,
        warmup_steps=warmup,
    )


def compiled_trainer(cnn: Any, params: CnnParams, steps: int) -> Any:
    """The CNN in a compiled wrapper (so that cnn.keras holds the model alone, without the optimizer's state):
    Adam on the one-cycle schedule over `steps`, label-smoothed cross-entropy on one-hot labels. No XLA
    (jit_compile), as Keras decides on a CPU: it made an epoch ~1.6× slower here (docs/pipeline.md)."""
    import keras

    trainer = keras.Sequential([keras.Input(cnn.input_shape[1:], name="pixels"), cnn], name="cnn_training")
    trainer.compile(
        optimizer=keras.optimizers.Adam(one_cycle(params, steps)),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing), metrics=["accuracy"],
    )
    return trainer


def train_cnn(
    train: Digits,
    valid: Digits,
    params: CnnParams,
    callbacks: list,
    sample_weight: np.ndarray | None = None,
    n_classes: int = N_CLASSES,
    name: str = "cnn",
) -> tuple[Any, dict[str, Any]]:
    """Fit the CNN on augmented `train` digits for params.epochs epochs of a one-cycle schedule (label
    smoothing, Adam), validating on `valid` after each epoch; deterministic for params.seed.

    Args:
        sample_weight: (len(train),) weight of each training digit in the loss; None: all 1.
        n_classes: the labels' classes: 10 digits, the number reader's 11, or its pair reader's 101.
        name: the Keras model's (an ensemble's members need distinct ones: `averaged`).
    Returns the CNN after its last epoch (the schedule ends at learning rate 0) and its figures.
    """
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    if not len(train.labels) or not len(valid.labels):
        raise ParamsError("the validation split is empty or holds every image: adjust train.validation_percentage")
    cnn = build_cnn(params, n_classes, train.images.shape[1:], name)
    steps_per_epoch = -(-len(train.labels) // params.batch_size)
    trainer = compiled_trainer(cnn, params, steps_per_epoch * params.epochs)
    validation = batches((valid.images, tf.one_hot(valid.labels, n_classes).numpy()), PREDICT_BATCH)
    started = time.perf_counter()
    history = trainer.fit(
        training_batches(train, params, sample_weight, n_classes), validation_data=validation, epochs=params.epochs,
        steps_per_epoch=steps_per_epoch, verbose=0, callbacks=callbacks,
    )
    train_s = time.perf_counter() - started
    summary = {
        "val_accuracy": float(history.history["val_accuracy"][-1]), "val_loss": float(history.history["val_loss"][-1]),
        "val_accuracy_by_epoch": [round(float(value), 4) for value in history.history["val_accuracy"]],
        "epochs_run": params.epochs, "n_train": len(train.labels), "n_validation": len(valid.labels),
        "train_seconds": round(train_s, 1), "seconds_per_epoch": round(train_s / params.epochs, 2),
    }
    return cnn, summary


def predict_probabilities(cnn: Any, images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28, 1) digits → float32 (n, n_classes) probabilities."""
    if not len(images):
        return np.empty((0, cnn.output_shape[-1]), np.float32)
    return np.asarray(cnn.predict(batches((images,), PREDICT_BATCH), verbose=0), np.float32)


def robustness(cnn: Any, digits: Digits, seed: int) -> dict[str, float]:
    """Accuracy on `digits` moved off-centre, rescaled, thickened and thinned (mnist_transfer.distort), and the
    mean of those: how the model may fare on handwriting that is not MNIST's."""
    scores = {
        kind: float((predict_probabilities(cnn, images).argmax(axis=1) == digits.labels).mean())
        for kind, images in distortions(digits.images, seed).items()
    }
    return {**scores, "mean": float(np.mean(list(scores.values())))}


def export_cnn(
    cnn: Any, model_dir: Path, metadata: ModelMetadata | None = None, labels: Sequence[str] = DIGIT_LABELS,
    extras: dict[str, Any] | None = None,
) -> None:
    """Write the SavedModel (the transfer model's signatures), labels.txt (`labels`, one per class), cnn.keras,
    model.json (with metadata) and each of `extras` (file name → a Keras model beside it) into model_dir,
    atomically."""
    module = classifier_module(
        prepare=digit_pixels, classify=lambda pixels: cnn(pixels, training=False), parts={"cnn": cnn}
    )

    def write_extras(folder: Path) -> None:
        cnn.save(folder / CNN_FILE)
        for name, model in (extras or {}).items():
            model.save(folder / name)
        if metadata is not None:
            write_metadata(metadata, folder)

    save_classifier(module, classifier_signatures(module), model_dir, write_extras, labels=labels)


def load_cnn(model_dir: Path) -> Any:
    """The Keras model exported beside the SavedModel (model_dir/cnn.keras)."""
    import keras

    path = model_dir / CNN_FILE
    if not path.is_file():
        raise DataError(f"{path} not found: run the train_cnn stage first (dvc repro train_cnn)")
    return keras.saving.load_model(path)
