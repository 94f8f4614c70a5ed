"""Benchmark: the CNN's old training recipe against the current one, in one run on the same digits.

old — the recipe before issue 20: filters [32, 64]; Keras RandomRotation/RandomZoom/RandomTranslation layers
      (shift 2 px) and a stroke-width layer inside the training step, Adam at 0.002 with ReduceLROnPlateau (×0.3
      after 2 flat epochs), batch 128, early stopping (patience 5, best weights kept), up to 20 epochs;
new — mnist_transfer.models.cnn.train_cnn with the schema's (params.yaml's) `cnn` defaults: filters [16, 64],
      one affine transform per digit in the tf.data pipeline (shift 3 px), a one-cycle schedule with label
      smoothing, batch 256, a fixed number of epochs.

Both build their network with build_cnn and use the same validation split; the new one runs first. Printed for each: validation accuracy
and elapsed seconds after every epoch, the epochs and seconds to the target (99.5 % by default), the test
accuracy of the final model and its accuracy on the distorted test digits (mnist_transfer.data.distort).

    python -m benchmarks.cnn_recipe --jpg data/jpg [--old-max-epochs 20] [--stop-old-at-target]

--stop-old-at-target ends the old recipe at its first epoch on target (its figures are then those of that
epoch's weights), which saves most of its time when only the time to the target matters.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path
from typing import Any

from benchmarks.cnn import epoch_timer
from benchmarks.record import add_record_flag, record
from mnist_transfer.data.idx import IMAGE_SIDE_PX
from mnist_transfer.data.records import list_images
from mnist_transfer.data.split import validation_mask
from mnist_transfer.models.cnn import (
    DIGIT_SHAPE,
    PREDICT_BATCH,
    Digits,
    batches,
    build_cnn,
    load_digits,
    predict_probabilities,
    robustness,
    train_cnn,
)
from mnist_transfer.params import CnnParams

OLD = {"filters": [32, 64], "shift_px": 2.0, "learning_rate": 0.002, "batch_size": 128, "patience": 5, "lr_patience": 2, "lr_factor": 0.3,
       "min_learning_rate": 1e-5}


def train_old_recipe(train: Digits, valid: Digits, params: CnnParams, max_epochs: int, callbacks: list) -> Any:
    """The pre-issue-20 recipe, rebuilt here from Keras parts (the package no longer holds it)."""
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    aug, seed = params.augment, params.seed
    fill = {"fill_mode": "constant", "fill_value": 0.0}
    shift = OLD["shift_px"] / IMAGE_SIDE_PX
    cnn = build_cnn(params.model_copy(update={"filters": OLD["filters"]}))
    trainer = keras.Sequential([
        keras.Input(DIGIT_SHAPE), stroke_width_layer(aug.stroke_probability, seed),
        keras.layers.RandomRotation(aug.rotation_deg / 360, seed=seed + 1, **fill),
        keras.layers.RandomZoom((-aug.zoom, aug.zoom), seed=seed + 2, **fill),
        keras.layers.RandomTranslation(shift, shift, seed=seed + 3, **fill), cnn,
    ])
    trainer.compile(optimizer=keras.optimizers.Adam(OLD["learning_rate"]), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    schedule = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=OLD["patience"], restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=OLD["lr_factor"], patience=OLD["lr_patience"],
                                          min_lr=OLD["min_learning_rate"]),
    ]
    training = tf.data.Dataset.from_tensor_slices((train.images, train.labels)).shuffle(len(train.labels), seed=seed)
    training = training.batch(OLD["batch_size"]).map(lambda x, y: (tf.cast(x, tf.float32), y)).prefetch(tf.data.AUTOTUNE)
    trainer.fit(training, validation_data=batches((valid.images, valid.labels), PREDICT_BATCH), epochs=max_epochs,
                verbose=0, callbacks=[*schedule, *callbacks])
    return cnn


def stroke_width_layer(probability: float, seed: int) -> Any:
    """The old recipe's stroke-width layer: 1 px thicker or thinner strokes for a share of the digits."""
    import keras

    class RandomStrokeWidth(keras.layers.Layer):
        def __init__(self) -> None:
            super().__init__(name="stroke_width")
            self.generator = keras.random.SeedGenerator(seed)

        def call(self, images: Any, training: bool = True) -> Any:
            if not training:
                return images
            ops = keras.ops
            thicker = ops.max_pool(images, pool_size=2, strides=1, padding="same")
            thinner = -ops.max_pool(-images, pool_size=2, strides=1, padding="same")
            draw = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), seed=self.generator)
            return ops.where(draw < probability / 2, thicker, ops.where(draw < probability, thinner, images))

    return RandomStrokeWidth()


def outcome(name: str, cnn: Any, timer: Any, test: Digits, target: float) -> dict[str, Any]:
    """The figures of one recipe (timer: its benchmarks.cnn.epoch_timer): epochs and seconds to target (None if
    never), test and distorted accuracy."""
    elapsed = list(itertools.accumulate(timer.seconds))
    on_target = next((epoch for epoch, accuracy in enumerate(timer.val_accuracy, start=1) if accuracy >= target), None)
    distorted = robustness(cnn, test, seed=0)
    return {
        "recipe": name, "epochs run": len(elapsed), "seconds": elapsed[-1],
        "epochs to target": on_target, "seconds to target": elapsed[on_target - 1] if on_target else None,
        "best validation": max(timer.val_accuracy),
        "test accuracy": float((predict_probabilities(cnn, test.images).argmax(axis=1) == test.labels).mean()),
        "distorted mean": distorted["mean"], "distorted": {k: v for k, v in distorted.items() if k != "mean"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jpg", type=Path, default=Path("data/jpg"), help="folder with training/ and testing/")
    parser.add_argument("--target", type=float, default=0.995, help="validation accuracy to reach")
    parser.add_argument("--old-max-epochs", type=int, default=20)
    parser.add_argument("--stop-old-at-target", action="store_true")
    add_record_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    params = CnnParams()  # params.yaml's defaults: the schema's
    digits = load_digits(list_images(args.jpg / "training", args.jpg), args.jpg)
    test = load_digits(list_images(args.jpg / "testing", args.jpg), args.jpg)
    is_validation = validation_mask(digits.rel_paths, 10)
    train, valid = digits.subset(~is_validation), digits.subset(is_validation)
    print(f"{len(train.labels)} training, {len(valid.labels)} validation, {len(test.labels)} test digits; "
          f"target {args.target:.1%} validation accuracy", flush=True)
    results = []
    for name in ("new", "old"):
        print(f"{name} recipe:", flush=True)
        stop_at = args.target if name == "old" and args.stop_old_at_target else None
        timer = epoch_timer(stop_at_accuracy=stop_at, verbose=True)
        if name == "old":
            cnn = train_old_recipe(train, valid, params, args.old_max_epochs, [timer])
        else:
            cnn, _ = train_cnn(train, valid, params, [timer])
        results.append(outcome(name, cnn, timer, test, args.target))
    new, old = results
    print(f"\n{'recipe':6} {'epochs':>6} {'s':>6} {'epochs→target':>13} {'s→target':>9} {'test':>7} {'distorted':>9}")
    for row in results:
        to_target = f"{row['seconds to target']:.0f}" if row["seconds to target"] else "never"
        print(f"{row['recipe']:6} {row['epochs run']:6d} {row['seconds']:6.0f} {row['epochs to target']!s:>13} "
              f"{to_target:>9} {row['test accuracy']:7.2%} {row['distorted mean']:9.2%}")
    for row in results:
        print(f"{row['recipe']} distorted: " + ", ".join(f"{k} {v:.2%}" for k, v in row["distorted"].items()))
    if old["seconds to target"] and new["seconds to target"]:
        print(f"time to target, new / old: {new['seconds to target'] / old['seconds to target']:.2f} (goal ≤ 0.25)")
    record("cnn_recipe", {f"{row['recipe']} {key}": value for row in results for key, value in row.items()
                          if key not in ("recipe", "distorted")},
           setup={"training digits": len(train.labels), "target": args.target, "old max epochs": args.old_max_epochs,
                  "old stopped at target": args.stop_old_at_target, "new epochs": params.epochs,
                  "new batch": params.batch_size},
           enabled=args.record)


if __name__ == "__main__":
    main()
