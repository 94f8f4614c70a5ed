"""Train the from-scratch CNN on the training JPGs (and your own training digits) and export it.

Reads data/jpg/training, data/jpg/own/training and params `cnn.*`, `train.validation_percentage`,
`train.own_weight` → writes data/cnn/ (SavedModel with the transfer model's signatures, labels.txt,
cnn.keras, model.json: validation accuracy and calibration temperature) and reports/cnn/ (dvclive curves; the
final epoch's figures, the robustness scores and the calibration).

Thin DVC entry point: the work is done in mnist_transfer.cnn.
"""

from __future__ import annotations

import argparse
import logging
import resource
from pathlib import Path

from dvclive import Live
from dvclive.keras import DVCLiveCallback

from mnist_transfer.data.records import list_images
from mnist_transfer.data.split import own_weights, validation_mask
from mnist_transfer.models.calibration import calibrate
from mnist_transfer.models.cnn import export_cnn, load_digits, predict_probabilities, robustness, train_cnn
from mnist_transfer.models.metadata import ModelMetadata
from mnist_transfer.params import Params
from mnist_transfer.runner import run_stage

log = logging.getLogger("train_cnn")


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True, help="training JPG folder (data/jpg/training)")
    parser.add_argument("--own", type=Path, required=True, help="your own training digits (data/jpg/own/training)")
    parser.add_argument("--model", type=Path, required=True, help="export folder (data/cnn)")
    parser.add_argument("--reports", type=Path, required=True, help="dvclive folder (reports/cnn)")
    args = parser.parse_args()
    split = params.train  # the split and own-digit weight are shared with the transfer head
    data_root = args.images.parent
    records = list_images(args.images, data_root) + list_images(args.own, data_root, required=False)
    digits = load_digits(records, data_root)
    is_validation = validation_mask(digits.rel_paths, split.validation_percentage)
    train, valid = digits.subset(~is_validation), digits.subset(is_validation)
    weights = own_weights(train.rel_paths, split.own_weight)

    with Live(str(args.reports), dvcyaml=None, save_dvc_exp=False) as live:
        cnn, summary = train_cnn(train, valid, params.cnn, [DVCLiveCallback(live=live)], sample_weight=weights)
        summary["robustness"] = robustness(cnn, valid, params.cnn.seed)
        calibration = calibrate(predict_probabilities(cnn, valid.images), valid.labels)
        summary["calibration"] = calibration.as_dict()
        live.summary["best"] = summary  # the kept (last) epoch's figures, robustness and calibration
    log.info(
        "CNN trained on %d digits (%d of your own), validated on %d: val_accuracy %.4f (%d epochs, %.0f s, "
        "%.1f s per epoch); on distorted validation digits %.4f; peak memory %.0f MiB",
        summary["n_train"], sum(path.startswith("own/") for path in train.rel_paths), summary["n_validation"],
        summary["val_accuracy"], summary["epochs_run"], summary["train_seconds"],
        summary["seconds_per_epoch"], summary["robustness"]["mean"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    log.info("calibration temperature %.3f: validation ECE %.4f → %.4f", calibration.temperature,
             calibration.ece_before, calibration.ece_after)
    export_cnn(cnn, args.model, metadata=ModelMetadata.from_training("cnn", summary, calibration))
    log.info("exported the CNN (encoded images in, the transfer model's signatures) to %s", args.model)


if __name__ == "__main__":
    run_stage(main)
