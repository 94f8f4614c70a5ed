"""Train the from-scratch CNN on the training JPGs (and your own training digits) and export it.

Reads data/jpg/training, data/jpg/own/training and params `cnn.*`, `train.validation_percentage`,
`train.own_weight` → writes data/cnn/ (SavedModel with the transfer model's signatures, labels.txt,
cnn.keras) and reports/cnn/ (dvclive curves; the best epoch's figures and the robustness scores).

Thin DVC entry point: the work is done in mnist_transfer.cnn.
"""

from __future__ import annotations

import argparse
import logging
import resource
from pathlib import Path

from dvclive import Live
from dvclive.keras import DVCLiveCallback

from mnist_transfer.cnn import export_cnn, load_digits, robustness, train_cnn
from mnist_transfer.common import load_params, run_stage, setup_logging
from mnist_transfer.embedding import list_images
from mnist_transfer.params import CnnParams
from mnist_transfer.train import own_weights, validation_mask

log = logging.getLogger("train_cnn")


def main() -> None:
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True, help="training JPG folder (data/jpg/training)")
    parser.add_argument("--own", type=Path, required=True, help="your own training digits (data/jpg/own/training)")
    parser.add_argument("--model", type=Path, required=True, help="export folder (data/cnn)")
    parser.add_argument("--reports", type=Path, required=True, help="dvclive folder (reports/cnn)")
    args = parser.parse_args()
    params = CnnParams.model_validate(load_params("cnn"))
    train_section = load_params("train")  # the split and own-digit weight are shared with the transfer head
    data_root = args.images.parent
    records = list_images(args.images, data_root) + list_images(args.own, data_root, required=False)
    digits = load_digits(records, data_root)
    is_validation = validation_mask(digits.rel_paths, float(train_section["validation_percentage"]))
    train, valid = digits.subset(~is_validation), digits.subset(is_validation)
    weights = own_weights(train.rel_paths, float(train_section["own_weight"]))

    with Live(str(args.reports), dvcyaml=None, save_dvc_exp=False) as live:
        cnn, summary = train_cnn(train, valid, params, [DVCLiveCallback(live=live)], sample_weight=weights)
        summary["robustness"] = robustness(cnn, valid, params.seed)
        live.summary["best"] = summary  # the restored epoch's figures, beside dvclive's last-epoch ones
    log.info(
        "CNN trained on %d digits (%d of your own), validated on %d: val_accuracy %.4f (best epoch %d of %d, %.0f s, "
        "%.1f s per epoch); on distorted validation digits %.4f; peak memory %.0f MiB",
        summary["n_train"], sum(path.startswith("own/") for path in train.rel_paths), summary["n_validation"],
        summary["val_accuracy"], summary["best_epoch"], summary["epochs_run"], summary["train_seconds"],
        summary["seconds_per_epoch"], summary["robustness"]["mean"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    export_cnn(cnn, args.model)
    log.info("exported the CNN (encoded images in, the transfer model's signatures) to %s", args.model)


if __name__ == "__main__":
    run_stage(main)
