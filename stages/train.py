"""Retrain the classification head on the cached bottlenecks and export the deployable model.

Reads data/bottlenecks/training.npz and params `train.*`, `backbone.*` → writes data/model/
(SavedModel: encoded images → probabilities + digit; labels.txt; head.keras; model.json: validation accuracy
and the calibration temperature fitted on the validation split; model.tflite only with train.tflite) and
reports/train/ (dvclive; metrics.json's "seconds": the stage's wall time by phase, start-up included).

Thin DVC entry point: the work is done in mnist_transfer.train.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from dvclive import Live

from mnist_transfer.data.split import own_weights, validation_mask
from mnist_transfer.errors import DataError
from mnist_transfer.features.backbone import BackboneSpec
from mnist_transfer.features.bottlenecks import read_bottlenecks
from mnist_transfer.models.calibration import calibrate
from mnist_transfer.models.head import head_probabilities, train_head
from mnist_transfer.models.metadata import ModelMetadata
from mnist_transfer.models.transfer import export_model
from mnist_transfer.params import Params
from mnist_transfer.runner import PhaseClock, run_stage

log = logging.getLogger("train")


def main(params: Params) -> None:
    clock = PhaseClock()  # "startup": python + imports until now
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bottlenecks", type=Path, required=True, help="data/bottlenecks/training.npz")
    parser.add_argument("--model", type=Path, required=True, help="export folder (data/model)")
    parser.add_argument("--reports", type=Path, required=True, help="dvclive folder (reports/train)")
    args = parser.parse_args()
    train = params.train
    spec = BackboneSpec.from_params(params.backbone)
    bottlenecks = read_bottlenecks(args.bottlenecks)
    if str(bottlenecks["backbone"]) != spec.identity():
        raise DataError(f"{args.bottlenecks} was computed with {bottlenecks['backbone']}, params say {spec.identity()}")
    features, labels, paths = bottlenecks["features"], bottlenecks["labels"], bottlenecks["paths"]
    if train.shuffle_labels:  # the control experiment: a head must not learn permuted labels
        labels = np.random.default_rng(train.seed).permutation(labels)
        log.warning("train.shuffle_labels is on: training on randomly permuted labels")
    is_validation, weights = validation_mask(paths, train.validation_percentage), own_weights(paths, train.own_weight)
    clock.lap("load_features")

    from dvclive.keras import DVCLiveCallback  # loads TensorFlow: only after run_stage has validated params

    clock.lap("import_tensorflow")
    with Live(str(args.reports), dvcyaml=None, save_dvc_exp=False) as live:
        callbacks = [DVCLiveCallback(live=live)]
        head, summary = train_head(features, labels, is_validation, train, callbacks, sample_weight=weights)
        clock.lap("fit")
        calibration = calibrate(head_probabilities(head, features, is_validation), labels[is_validation])
        summary["calibration"] = calibration.as_dict()
        live.summary["best"] = summary  # the restored epoch's figures, beside dvclive's last-epoch ones
        clock.lap("calibrate")
        log.info(
            "head trained on %d images, validated on %d: val_accuracy %.4f (best epoch %d of %d); calibration "
            "temperature %.3f: validation ECE %.4f → %.4f",
            summary["n_train"], summary["n_validation"], summary["val_accuracy"], summary["best_epoch"],
            summary["epochs_run"], calibration.temperature, calibration.ece_before, calibration.ece_after,
        )
        metadata = ModelMetadata.from_training("transfer", summary, calibration)
        export_model(head, spec, args.model, metadata=metadata, tflite=train.tflite)
        clock.lap("export")
        live.summary["seconds"] = clock.seconds  # benchmarks.experiment splits a head-only experiment with these
    log.info("exported the model (backbone + head, encoded images in%s) to %s",
             ", and model.tflite" if train.tflite else "; no model.tflite: train.tflite is off", args.model)
    log.info("wall time by phase: %s", clock.describe())


if __name__ == "__main__":
    run_stage(main)
