"""The number reader: the from-scratch CNN with an 11th class, "not one digit" — the core of the train_reader stage.

`predict --number` and the web page's number mode cut a photo of a number into candidate digits
(mnist_transfer.data.segment) and choose the reading whose digits the classifier is surest of. A 10-class
classifier is sure of half a 0 or of a 1 with a piece of its neighbour too; the reader is also fitted on such
candidates, cut from numbers composed of the training digits (mnist_transfer.data.fragments), as a class of
their own, so the reading can tell them apart (segment.Weights.not_digit). Exported to data/reader like the
CNN (cnn.export_cnn) with 11 labels: 0–9 and READER_LABELS[-1].

Its second model reads a wide candidate as a pair of digits (segment.pair_pixels: 28×56; 101 classes, 10·a + b
and NOT_A_PAIR): the same CNN recipe on the 28×56 pairs among the same candidates and among those of
reader.pair_numbers more numbers (fragments.PAIR_NUMBERS), saved beside it as export.PAIRS_FILE (a Keras model;
the DigitModel that loads data/reader loads it too).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mnist_transfer.data.fragments import PAIR_NUMBERS, fragments_in_parallel
from mnist_transfer.data.segment import NOT_A_DIGIT, NOT_A_PAIR
from mnist_transfer.models.cnn import N_PAIR_CLASSES, Digits, averaged, predict_probabilities, train_cnn
from mnist_transfer.models.export import DIGIT_LABELS
from mnist_transfer.params import CnnParams, ReaderParams

log = logging.getLogger(__name__)

READER_LABELS = (*DIGIT_LABELS, "not-a-digit")  # labels.txt of data/reader; class NOT_A_DIGIT last
N_READER_CLASSES = NOT_A_DIGIT + 1
FRAGMENT_PATH = "fragment"  # the rel_path of every candidate cut from a composed number
# NOT_A_PAIR examples kept per pair example (drawn at random; all of them are ~4 per pair): trained on those of
# 3,000 numbers of PAIR_NUMBERS alone, the pair classifier read 82 % of the pairs cut from composed test digits and
# the reading 92.50 % of seed 1's 400 four-digit numbers (scratch measurement, 2-core Intel Xeon, 2026-12-04)
PAIR_NEGATIVES = 1.5
PAIR_SEED = 1000  # the pair numbers are drawn from [seed + PAIR_SEED, task]: not the reader's numbers again


def reader_cnn_params(cnn: CnnParams, reader: ReaderParams, pairs: bool = False) -> CnnParams:
    """The CNN's recipe (architecture, schedule, augmentation) with reader.dropout, for reader.epochs epochs (the
    pair classifier's: reader.pair_epochs)."""
    return cnn.model_copy(update={"epochs": reader.pair_epochs if pairs else reader.epochs, "dropout": reader.dropout})


def train_members(train: Digits, valid: Digits, params: CnnParams, members: int, callbacks: list,
                  n_classes: int, sample_weight: np.ndarray | None = None
                  ) -> tuple[Any, dict[str, Any], np.ndarray]:
    """`members` CNNs fitted as cnn.train_cnn, from seeds params.seed, params.seed + 1, … (weights, dropout, order
    and augmentation), averaged into one model (cnn.averaged); `callbacks` see the first fit. Returns the ensemble;
    the first fit's figures, with the ensemble's val_accuracy, each member's and the seconds of all the fits; and
    the ensemble's probabilities on `valid` (for the caller's figures: not predicted twice)."""
    fitted, summaries = [], []
    for member in range(members):
        cnn, summary = train_cnn(train, valid, params.model_copy(update={"seed": params.seed + member}),
                                 callbacks if member == 0 else [], sample_weight, n_classes,
                                 name="cnn" if members == 1 else f"member{member}")
        log.info("member %d of %d: val_accuracy %.4f (%.0f s)", member + 1, members, summary["val_accuracy"],
                 summary["train_seconds"])
        fitted.append(cnn)
        summaries.append(summary)
    ensemble, summary = averaged(fitted), dict(summaries[0])
    probabilities = predict_probabilities(ensemble, valid.images)
    if members > 1:
        top = probabilities.argmax(axis=1)
        summary.update(val_accuracy=float((top == valid.labels).mean()), members=members,
                       member_val_accuracy=[member["val_accuracy"] for member in summaries],
                       train_seconds=round(sum(member["train_seconds"] for member in summaries), 1))
    return ensemble, summary, probabilities


def with_fragments(digits: Digits, n_numbers: int, n_pair_numbers: int, seed: int, workers: int | None = None
                   ) -> tuple[Digits, Digits]:
    """(`digits` and the candidates cut from n_numbers numbers composed of them, labelled with their digit or
    NOT_A_DIGIT; the pairs among those candidates and the candidates of n_pair_numbers more numbers
    (fragments.PAIR_NUMBERS), labelled 10·a + b or NOT_A_PAIR, PAIR_NEGATIVES of those per pair at most, drawn
    from `seed`). The candidates' rel_path is FRAGMENT_PATH."""
    fragments = fragments_in_parallel(digits.images[..., 0], digits.labels, n_numbers, seed, workers)
    more = fragments_in_parallel(digits.images[..., 0], digits.labels, n_pair_numbers, seed + PAIR_SEED, workers,
                                 PAIR_NUMBERS)
    pair_pixels = np.concatenate([fragments.pair_pixels, more.pair_pixels])
    pair_targets = np.concatenate([fragments.pair_targets, more.pair_targets])
    targets = fragments.targets
    singles = Digits(
        np.concatenate([digits.images, fragments.pixels[..., None]]),
        np.concatenate([digits.labels, targets]),
        np.concatenate([digits.rel_paths, np.full(len(targets), FRAGMENT_PATH)]),
    )
    is_pair = pair_targets != NOT_A_PAIR
    negatives = np.flatnonzero(~is_pair)
    n_negatives = min(len(negatives), int(PAIR_NEGATIVES * is_pair.sum()))
    kept = np.sort(np.concatenate([np.flatnonzero(is_pair),
                                   np.random.default_rng(seed).choice(negatives, n_negatives, replace=False)]))
    pairs = Digits(pair_pixels[kept][..., None], pair_targets[kept], np.full(len(kept), FRAGMENT_PATH))
    return singles, pairs


def pair_figures(probabilities: np.ndarray, pairs: Digits) -> dict[str, float]:
    """On validation pairs (with_fragments): the share of the pairs read right (both digits), and of the others
    called not a pair."""
    top = probabilities.argmax(axis=1)
    is_pair = pairs.labels != NOT_A_PAIR
    share = lambda mask: float(mask.mean()) if mask.size else 0.0  # noqa: E731
    return {"val_pair_accuracy": share(top[is_pair] == pairs.labels[is_pair]),
            "val_not_a_pair_recall": share(top[~is_pair] == NOT_A_PAIR)}


def reader_figures(probabilities: np.ndarray, digits: Digits) -> dict[str, float]:
    """On a validation set of digits and candidates (with_fragments): the digits' accuracy (argmax over the ten
    digits) and the share of them called not one digit; the same share for the candidates that are one digit;
    and the share of the other candidates called not one digit (its recall)."""
    top = probabilities.argmax(axis=1)
    is_candidate = digits.rel_paths == FRAGMENT_PATH
    is_digit = ~is_candidate
    cut_digit = is_candidate & (digits.labels != NOT_A_DIGIT)
    share = lambda mask: float(mask.mean()) if mask.size else 0.0  # noqa: E731
    return {
        "val_digit_accuracy": share(probabilities[is_digit, :NOT_A_DIGIT].argmax(axis=1) == digits.labels[is_digit]),
        "val_digits_called_not_a_digit": share(top[is_digit] == NOT_A_DIGIT),
        "val_cut_digits_called_not_a_digit": share(top[cut_digit] == NOT_A_DIGIT),
        "val_not_a_digit_recall": share(top[is_candidate & ~cut_digit] == NOT_A_DIGIT),
    }
