"""Retrain the classification head on the cached bottlenecks and export the deployable model.

Reads data/bottlenecks/training.npz and params `train.*`, `backbone.*` → writes data/model/
(SavedModel: encoded images → probabilities + digit; labels.txt; head.keras) and reports/train/ (dvclive).

Thin DVC entry point: the work is done in mnist_transfer.train.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from dvclive import Live

from mnist_transfer.backbone import BackboneSpec
from mnist_transfer.bottlenecks import read_bottlenecks
from mnist_transfer.common import DataError, load_params, run_stage, setup_logging
from mnist_transfer.export import export_model
from mnist_transfer.train import HeadParams, own_weights, train_head, validation_mask

log = logging.getLogger("train")


def main() -> None:
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bottlenecks", type=Path, required=True, help="data/bottlenecks/training.npz")
    parser.add_argument("--model", type=Path, required=True, help="export folder (data/model)")
    parser.add_argument("--reports", type=Path, required=True, help="dvclive folder (reports/train)")
    args = parser.parse_args()
    train_params = load_params("train")
    params = HeadParams.from_params(train_params)
    spec = BackboneSpec.from_params(load_params("backbone"))
    bottlenecks = read_bottlenecks(args.bottlenecks)
    if str(bottlenecks["backbone"]) != spec.identity():
        raise DataError(f"{args.bottlenecks} was computed with {bottlenecks['backbone']}, params say {spec.identity()}")
    is_validation = validation_mask(bottlenecks["paths"], float(train_params["validation_percentage"]))
    labels = bottlenecks["labels"]
    if train_params.get("shuffle_labels"):  # the control experiment: a head must not learn permuted labels
        labels = np.random.default_rng(params.seed).permutation(labels)
        log.warning("train.shuffle_labels is on: training on randomly permuted labels")

    from dvclive.keras import DVCLiveCallback  # loads TensorFlow: only after run_stage has validated params

    with Live(str(args.reports), dvcyaml=None, save_dvc_exp=False) as live:
        weights = own_weights(bottlenecks["paths"], float(train_params["own_weight"]))
        head, summary = train_head(
            bottlenecks["features"], labels, is_validation, params, [DVCLiveCallback(live=live)], sample_weight=weights
        )
        live.summary["best"] = summary  # the restored epoch's figures, beside dvclive's last-epoch ones
    log.info(
        "head trained on %d images, validated on %d: val_accuracy %.4f (best epoch %d of %d)",
        summary["n_train"], summary["n_validation"], summary["val_accuracy"], summary["best_epoch"], summary["epochs_run"],
    )
    export_model(head, spec, args.model)
    log.info("exported the model (backbone + head, encoded images in) to %s", args.model)


if __name__ == "__main__":
    run_stage(main)
