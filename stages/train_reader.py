"""Train the number reader (the CNN with an 11th class, "not one digit") and export it.

Reads data/jpg/training, data/jpg/own/training and params `reader.*`, `cnn.*`, `train.validation_percentage`,
`train.own_weight` → writes data/reader/ (as data/cnn/, with 11 labels, and the pair classifier pairs.keras
unless reader.pairs is false) and reports/reader/ (dvclive curves and the final figures, with the numbers
segmented and the seconds that took). The training split's digits are composed into reader.numbers numbers (and
reader.pair_numbers more for the pair classifier), the validation split's into a proportional share, so no
validation digit is seen in training.

Thin DVC entry point: the work is done in mnist_transfer.models.reader and mnist_transfer.models.cnn.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from dvclive import Live

from mnist_transfer.data.records import list_images
from mnist_transfer.data.split import own_weights, validation_mask
from mnist_transfer.models.calibration import calibrate
from mnist_transfer.models.cnn import export_cnn, load_digits
from mnist_transfer.models.export import PAIRS_FILE
from mnist_transfer.models.metadata import ModelMetadata
from mnist_transfer.models.reader import (
    N_PAIR_CLASSES,
    N_READER_CLASSES,
    READER_LABELS,
    pair_figures,
    reader_cnn_params,
    reader_figures,
    train_members,
    with_fragments,
)
from mnist_transfer.params import Params
from mnist_transfer.runner import run_stage

log = logging.getLogger("train_reader")


def main(params: Params) -> None:
    from dvclive.keras import DVCLiveCallback  # here, not above: it imports TensorFlow, and the segmenting workers
    # that fragments_in_parallel spawns import this module again — ~0.5 GB and ~5 s each for nothing

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True, help="training JPG folder (data/jpg/training)")
    parser.add_argument("--own", type=Path, required=True, help="your own training digits (data/jpg/own/training)")
    parser.add_argument("--model", type=Path, required=True, help="export folder (data/reader)")
    parser.add_argument("--reports", type=Path, required=True, help="dvclive folder (reports/reader)")
    args = parser.parse_args()
    reader = params.reader
    split = params.train  # the split and own-digit weight are shared with the transfer head and the CNN
    data_root = args.images.parent
    digits = load_digits(list_images(args.images, data_root) + list_images(args.own, data_root, required=False),
                         data_root)
    is_validation = validation_mask(digits.rel_paths, split.validation_percentage)
    valid_share = is_validation.mean() / max(1e-9, 1 - is_validation.mean())  # validation numbers per training one
    n_pair_numbers = reader.pair_numbers if reader.pairs else 0
    n_valid, n_valid_pairs = round(reader.numbers * valid_share), round(n_pair_numbers * valid_share)
    started = time.perf_counter()
    train, train_pairs = with_fragments(digits.subset(~is_validation), reader.numbers, n_pair_numbers,
                                        params.cnn.seed, reader.workers)
    valid, valid_pairs = with_fragments(digits.subset(is_validation), n_valid, n_valid_pairs, params.cnn.seed + 1,
                                        reader.workers)
    segmented = {"numbers_segmented": reader.numbers + n_valid,  # benchmarks.pipeline counts them
                 "pair_numbers_segmented": n_pair_numbers + n_valid_pairs,
                 "segmenting_seconds": time.perf_counter() - started}
    log.info("training on %d digits and candidates (%.0f %% not one digit), validating on %d",
             len(train.labels), 100 * (train.labels == N_READER_CLASSES - 1).mean(), len(valid.labels))

    cnn_params = reader_cnn_params(params.cnn, reader)
    with Live(str(args.reports), dvcyaml=None, save_dvc_exp=False) as live:
        cnn, summary, probabilities = train_members(train, valid, cnn_params, reader.members,
                                                    [DVCLiveCallback(live=live)], N_READER_CLASSES,
                                                    own_weights(train.rel_paths, split.own_weight))
        summary.update(reader_figures(probabilities, valid), **segmented)
        calibration = calibrate(probabilities, valid.labels)
        summary["calibration"] = calibration.as_dict()
        extras = {}
        if reader.pairs and len(train_pairs.labels) and len(valid_pairs.labels):
            log.info("training the pair classifier on %d candidates (%d pairs), validating on %d",
                     len(train_pairs.labels), (train_pairs.labels < N_PAIR_CLASSES - 1).sum(), len(valid_pairs.labels))
            extras[PAIRS_FILE], pair_summary, pair_probabilities = train_members(
                train_pairs, valid_pairs, reader_cnn_params(params.cnn, reader, pairs=True), reader.members, [],
                N_PAIR_CLASSES)
            summary.update(pair_figures(pair_probabilities, valid_pairs))
            summary.update({f"pair_{key}": pair_summary[key] for key in ("train_seconds", "n_train", "epochs_run")})
            log.info("pair classifier: %.4f of the validation pairs read right, %.4f of the others called not a "
                     "pair (%.0f s)", summary["val_pair_accuracy"], summary["val_not_a_pair_recall"],
                     summary["pair_train_seconds"])
        elif reader.pairs:
            log.warning("no pairs among the candidates: the number reader is exported without a pair classifier")
        live.summary["best"] = summary
    log.info("number reader: val_accuracy %.4f over 11 classes (%d epochs, %.0f s); the validation digits read "
             "%.4f (%.4f called not one digit); of the candidates cut from numbers, %.4f of those that are one digit "
             "called not one, %.4f of the others", summary["val_accuracy"], summary["epochs_run"],
             summary["train_seconds"], summary["val_digit_accuracy"], summary["val_digits_called_not_a_digit"],
             summary["val_cut_digits_called_not_a_digit"], summary["val_not_a_digit_recall"])
    export_cnn(cnn, args.model, ModelMetadata.from_training("reader", summary, calibration), labels=READER_LABELS,
               extras=extras)
    log.info("exported the number reader to %s", args.model)


if __name__ == "__main__":
    run_stage(main)
