"""The number reader's training examples (mnist_transfer.data.fragments): candidates cut from composed numbers,
labelled with the digit whose box they match or "not one digit"; deterministic whatever the workers."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_transfer.data import fragments
from mnist_transfer.data.fragments import fragments_in_parallel, number_fragments
from mnist_transfer.data.normalise import normalise_digit
from mnist_transfer.data.segment import NOT_A_DIGIT, NOT_A_PAIR
from tests.conftest import REPO_ROOT
from tests.drawn_digits import drawn


@pytest.fixture(scope="module")
def seven_and_four() -> tuple[np.ndarray, np.ndarray]:
    """A drawn 7 and a drawn 4 at MNIST's size: every composed number is 74 or 47."""
    from PIL import Image

    images = np.stack([np.asarray(Image.fromarray(drawn(d)).resize((28, 28), Image.BILINEAR)) for d in "74"])
    return images, np.array([7, 4])


def test_candidates_are_labelled_with_their_digit_or_not_a_digit(seven_and_four):
    images, labels = seven_and_four
    pixels, targets, pair_pixels, pair_targets = number_fragments(images, labels, 12, np.random.default_rng(0))
    assert pixels.shape == (len(targets), 28, 28) and pixels.dtype == np.uint8 and targets.dtype == np.int64
    assert set(targets.tolist()) == {4, 7, NOT_A_DIGIT}  # halves and pairs are cut too
    assert pair_pixels.shape == (len(pair_targets), 28, 56) and pair_pixels.dtype == np.uint8
    assert set(pair_targets.tolist()) == {74, 47, NOT_A_PAIR}  # both orders of the two digits, and not pairs
    # a candidate labelled 7 is the whole 7: normalised, it looks like the 7 normalised alone (and not like the 4)
    alone = {d: normalise_digit_array(images[k]) for k, d in enumerate((7, 4))}
    for digit, other in ((7, 4), (4, 7)):
        for candidate in pixels[targets == digit]:
            assert difference(candidate, alone[digit]) < difference(candidate, alone[other])


def normalise_digit_array(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    return normalise_digit(Image.fromarray(255 - np.kron(image, np.ones((4, 4), np.uint8))))


def difference(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.abs(first.astype(float) - second.astype(float)).mean())


def test_labelled_keeps_matches_and_far_ones_and_what_is_marked_other():
    """Distances (candidates × true boxes) in digit heights: within MATCH_DISTANCE (0.12) is that digit, beyond
    NOT_A_DIGIT_DISTANCE (0.25) is `other`, in between is left out unless marked other (three digits read as a
    pair) — and a match stays a match though marked."""
    distance = np.array([[0.05, 0.9], [0.9, 0.1], [0.2, 0.9], [0.2, 0.9], [0.5, 0.3], [0.05, 0.9]])
    pixels = np.arange(6)
    marked = np.array([False, False, False, True, False, True])
    kept, targets = fragments.labelled(pixels, distance, np.array([7, 4]), NOT_A_DIGIT)
    assert kept.tolist() == [0, 1, 4, 5] and targets.tolist() == [7, 4, NOT_A_DIGIT, 7]
    kept, targets = fragments.labelled(pixels, distance, np.array([7, 4]), NOT_A_DIGIT, marked)
    assert kept.tolist() == [0, 1, 3, 4, 5] and targets.tolist() == [7, 4, NOT_A_DIGIT, NOT_A_DIGIT, 7]


def test_a_draw_for_pairs_alone_gives_the_same_pairs_and_no_candidates(seven_and_four):
    import dataclasses

    from mnist_transfer.data.compose import compose_number
    from mnist_transfer.data.segment import segment_number

    images, labels = seven_and_four
    both = number_fragments(images, labels, 6, np.random.default_rng(4), dataclasses.replace(fragments.PAIR_NUMBERS,
                                                                                               singles=True))
    pairs = number_fragments(images, labels, 6, np.random.default_rng(4), fragments.PAIR_NUMBERS)
    assert not fragments.PAIR_NUMBERS.singles and len(both.targets) > 0
    assert pairs.pixels.shape == (0, 28, 28) and pairs.targets.shape == (0,)
    assert len(pairs.pair_targets) > 0
    assert np.array_equal(pairs.pair_pixels, both.pair_pixels) and np.array_equal(pairs.pair_targets, both.pair_targets)
    # segmented for pairs alone: the same candidates and pairs, no 28×28s, and asking for them is an error
    photo = compose_number(list(images), list(labels), ["touch"], np.random.default_rng(0)).image()
    full, lean = segment_number(photo), segment_number(photo, digits=False)
    assert [c.box for c in lean.candidates] == [c.box for c in full.candidates] and lean.pairs == full.pairs
    assert np.array_equal(lean.pair_pixels, full.pair_pixels) and all(c.pixels is None for c in lean.candidates)
    with pytest.raises(ValueError, match="pairs alone"):
        lean.pixels


def test_no_digits_give_no_candidates():
    none = number_fragments(np.empty((0, 28, 28), np.uint8), np.empty(0, np.int64), 5, np.random.default_rng(0))
    assert none.pixels.shape == (0, 28, 28) and none.targets.shape == (0,)
    assert none.pair_pixels.shape == (0, 28, 56) and none.pair_targets.shape == (0,)
    assert fragments_in_parallel(np.empty((0, 28, 28), np.uint8), np.empty(0, np.int64), 5, 0).targets.shape == (0,)


def test_tasks_are_seeded_so_workers_do_not_change_the_result(seven_and_four, monkeypatch):
    images, labels = seven_and_four
    monkeypatch.setattr(fragments, "NUMBERS_PER_TASK", 2)  # 5 numbers: tasks of 2, 2 and 1
    one = fragments_in_parallel(images, labels, 5, seed=3, workers=1)
    two = fragments_in_parallel(images, labels, 5, seed=3, workers=2)
    by_hand = [number_fragments(images, labels, n, np.random.default_rng([3, k])) for k, n in enumerate((2, 2, 1))]
    for result in (one, two):
        for column in range(4):  # the candidates, their targets, the pairs, theirs
            assert np.array_equal(result[column], np.concatenate([part[column] for part in by_hand]))


def test_pair_figures_known_answer():
    from mnist_transfer.models.cnn import Digits
    from mnist_transfer.models.reader import FRAGMENT_PATH, pair_figures

    labels = np.array([74, 47, 47, NOT_A_PAIR, NOT_A_PAIR])
    probabilities = np.full((5, NOT_A_PAIR + 1), 0.001)
    probabilities[np.arange(5), [74, 47, NOT_A_PAIR, NOT_A_PAIR, 44]] = 0.9
    pairs = Digits(np.zeros((5, 28, 56, 1), np.uint8), labels, np.full(5, FRAGMENT_PATH))
    assert pair_figures(probabilities, pairs) == {"val_pair_accuracy": pytest.approx(2 / 3),
                                                  "val_not_a_pair_recall": 0.5}


def test_with_fragments_keeps_every_pair_and_at_most_pair_negatives_per_pair(seven_and_four):
    from mnist_transfer.models.cnn import Digits
    from mnist_transfer.models.reader import PAIR_NEGATIVES, PAIR_SEED, with_fragments

    images, labels = seven_and_four
    digits = Digits(images[..., None], labels, np.array(["training/7/a.jpg", "training/4/b.jpg"]))
    singles, pairs = with_fragments(digits, 12, 6, seed=0, workers=1)
    everything = fragments.fragments_in_parallel(images, labels, 12, seed=0, workers=1)
    more = fragments.fragments_in_parallel(images, labels, 6, seed=PAIR_SEED, workers=1, draw=fragments.PAIR_NUMBERS)
    assert np.array_equal(singles.labels, np.concatenate([labels, everything.targets]))
    pair_targets = np.concatenate([everything.pair_targets, more.pair_targets])
    n_pairs = int((pair_targets != NOT_A_PAIR).sum())
    assert (pairs.labels != NOT_A_PAIR).sum() == n_pairs > (everything.pair_targets != NOT_A_PAIR).sum()
    assert (pairs.labels == NOT_A_PAIR).sum() == min(int(PAIR_NEGATIVES * n_pairs),
                                                      int((pair_targets == NOT_A_PAIR).sum()))
    assert pairs.images.shape == (len(pairs.labels), 28, 56, 1)


def test_reader_figures_known_answer():
    from mnist_transfer.models.cnn import Digits
    from mnist_transfer.models.reader import FRAGMENT_PATH, reader_figures

    labels = np.array([3, 3, 5, NOT_A_DIGIT, NOT_A_DIGIT])
    paths = np.array(["training/3/a.jpg", "training/3/b.jpg", FRAGMENT_PATH, FRAGMENT_PATH, FRAGMENT_PATH])
    top = [3, NOT_A_DIGIT, NOT_A_DIGIT, NOT_A_DIGIT, 1]  # b is called not a digit, but its digits say 3
    probabilities = np.full((5, 11), 0.01)
    probabilities[np.arange(5), top] = 0.9
    probabilities[1, 3] = 0.05
    figures = reader_figures(probabilities, Digits(np.zeros((5, 28, 28, 1), np.uint8), labels, paths))
    assert figures == {"val_digit_accuracy": 1.0, "val_digits_called_not_a_digit": 0.5,
                       "val_cut_digits_called_not_a_digit": 1.0, "val_not_a_digit_recall": 0.5}


def test_near_misses_are_left_out(seven_and_four, monkeypatch):
    """Candidates between MATCH_DISTANCE and NOT_A_DIGIT_DISTANCE from a digit are neither it nor not one digit."""
    images, labels = seven_and_four
    everything = number_fragments(images, labels, 12, np.random.default_rng(0))[1]
    monkeypatch.setattr(fragments, "NOT_A_DIGIT_DISTANCE", fragments.MATCH_DISTANCE)  # nothing left out
    assert len(number_fragments(images, labels, 12, np.random.default_rng(0))[1]) > len(everything)
    monkeypatch.setattr(fragments, "NOT_A_DIGIT_DISTANCE", 100.0)  # only the digits kept
    kept = number_fragments(images, labels, 12, np.random.default_rng(0))[1]
    assert NOT_A_DIGIT not in kept and set(kept.tolist()) == {4, 7}


def test_the_stage_module_imports_no_tensorflow():
    """The segmenting workers are spawned, and a spawned process imports the stage's module again: TensorFlow there
    would cost each worker ~0.5 GB and seconds for nothing. Run from the repository root, wherever pytest is."""
    import subprocess
    import sys

    code = "import sys, stages.train_reader; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=REPO_ROOT)
    assert result.stdout.strip() == "False"


def test_the_reader_trains_the_cnn_recipe_with_its_own_epochs_and_dropout():
    from mnist_transfer.models.reader import reader_cnn_params
    from mnist_transfer.params import CnnParams, ReaderParams

    cnn, reader = CnnParams(dropout=0.25, learning_rate=0.02), ReaderParams(epochs=3, pair_epochs=6, dropout=0.4)
    assert (reader_cnn_params(cnn, reader).epochs, reader_cnn_params(cnn, reader, pairs=True).epochs) == (3, 6)
    assert reader_cnn_params(cnn, reader).dropout == 0.4 and reader_cnn_params(cnn, reader).learning_rate == 0.02
