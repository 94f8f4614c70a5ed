"""Retrain the classification head on the cached bottlenecks and export the deployable model.

Reads data/bottlenecks/training.npz and params `train.*`, `backbone.*` → writes data/model/
(SavedModel: encoded images → probabilities + digit; labels.txt; head.keras; model.json: validation accuracy
and the calibration temperature fitted on the validation split) and reports/train/ (dvclive).

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
from mnist_transfer.runner import run_stage

log = logging.getLogger("train")


def main(params: Params) -> None:
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
    is_validation = validation_mask(bottlenecks["paths"], train.validation_percentage)
    labels = bottlenecks["labels"]
    if train.shuffle_labels:  # the control experiment: a head must not learn permuted labels
        labels = np.random.default_rng(train.seed).permutation(labels)
        log.warning("train.shuffle_labels is on: training on randomly permuted labels")

    from dvclive.keras import DVCLiveCallback  # loads TensorFlow: only after run_stage has validated params

    with Live(str(args.reports), dvcyaml=None, save_dvc_exp=False) as live:
        weights = own_weights(bottlenecks["paths"], train.own_weight)
        head, summary = train_head(
            bottlenecks["features"], labels, is_validation, train, [DVCLiveCallback(live=live)], sample_weight=weights
        )
        calibration = calibrate(head_probabilities(head, bottlenecks["features"], is_validation), labels[is_validation])
        summary["calibration"] = calibration.as_dict()
        live.summary["best"] = summary  # the restored epoch's figures, beside dvclive's last-epoch ones
    log.info(
        "head trained on %d images, validated on %d: val_accuracy %.4f (best epoch %d of %d); calibration "
        "temperature %.3f: validation ECE %.4f → %.4f",
        summary["n_train"], summary["n_validation"], summary["val_accuracy"], summary["best_epoch"], summary["epochs_run"],
        calibration.temperature, calibration.ece_before, calibration.ece_after,
    )
    export_model(head, spec, args.model, metadata=ModelMetadata.from_training("transfer", summary, calibration))
    log.info("exported the model (backbone + head, encoded images in) to %s", args.model)


if __name__ == "__main__":
    run_stage(main)
