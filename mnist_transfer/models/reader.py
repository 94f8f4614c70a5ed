"""The number reader: the from-scratch CNN with an 11th class, "not one digit" — the core of the train_reader stage.

`predict --number` and the web page's number mode cut a photo of a number into candidate digits
(mnist_transfer.data.segment) and choose the reading whose digits the classifier is surest of. A 10-class
classifier is sure of half a 0 or of a 1 with a piece of its neighbour too; the reader is also fitted on such
candidates, cut from numbers composed of the training digits (mnist_transfer.data.fragments), as a class of
their own, so the reading can tell them apart (segment.Weights.not_digit). Exported to data/reader like the
CNN (cnn.export_cnn) with 11 labels: 0–9 and READER_LABELS[-1].
"""

from __future__ import annotations

import numpy as np

from mnist_transfer.data.fragments import fragments_in_parallel
from mnist_transfer.data.segment import NOT_A_DIGIT
from mnist_transfer.models.cnn import Digits
from mnist_transfer.models.export import DIGIT_LABELS
from mnist_transfer.params import CnnParams, ReaderParams

READER_LABELS = (*DIGIT_LABELS, "not-a-digit")  # labels.txt of data/reader; class NOT_A_DIGIT last
N_READER_CLASSES = NOT_A_DIGIT + 1
FRAGMENT_PATH = "fragment"  # the rel_path of every candidate cut from a composed number


def reader_cnn_params(cnn: CnnParams, reader: ReaderParams) -> CnnParams:
    """The CNN's recipe (architecture, schedule, augmentation) for reader.epochs epochs."""
    return cnn.model_copy(update={"epochs": reader.epochs})


def with_fragments(digits: Digits, n_numbers: int, seed: int, workers: int | None = None) -> Digits:
    """`digits` and the candidates cut from n_numbers numbers composed of them (labelled with their digit, or
    NOT_A_DIGIT; rel_path FRAGMENT_PATH)."""
    pixels, targets = fragments_in_parallel(digits.images[..., 0], digits.labels, n_numbers, seed, workers)
    return Digits(
        np.concatenate([digits.images, pixels[..., None]]),
        np.concatenate([digits.labels, targets]),
        np.concatenate([digits.rel_paths, np.full(len(targets), FRAGMENT_PATH)]),
    )


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
