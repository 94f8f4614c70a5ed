"""Composed photos of numbers (mnist_transfer.data.compose): deterministic, boxes where the digits are, spacings
that do what they say, and the box oracle that stands in for a classifier in segmentation tests."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_transfer.data.compose import box_distances, box_oracle, compose_number, failure_cause, random_number
from tests.drawn_digits import drawn


def test_a_seed_gives_the_same_photo(mnist_arrays):
    images, labels = mnist_arrays["testing"]
    first, chosen = random_number(images, labels, 5, np.random.default_rng(3))
    again, chosen_again = random_number(images, labels, 5, np.random.default_rng(3))
    assert first.jpeg == again.jpeg and first.digits == again.digits and list(chosen) == list(chosen_again)
    assert first.digits == "".join(str(labels[k]) for k in chosen)


def test_boxes_lie_on_the_photo_left_to_right(mnist_arrays):
    images, labels = mnist_arrays["testing"]
    rng = np.random.default_rng(1)
    for length in (2, 4, 8):
        composed, _ = random_number(images, labels, length, rng)
        photo = composed.image()
        assert len(composed.boxes) == length == len(composed.spacings) + 1 == len(composed.touches) + 1
        for x0, y0, x1, y1 in composed.boxes:
            assert 0 <= x0 < x1 <= photo.width and 0 <= y0 < y1 <= photo.height
        assert [b[0] for b in composed.boxes] == sorted(b[0] for b in composed.boxes)
        ink = np.asarray(photo) < 120  # dark ink on grey paper
        for x0, y0, x1, y1 in composed.boxes:
            assert ink[y0:y1, x0:x1].mean() > 0.05


@pytest.mark.parametrize("spacing, touching", [("gap", False), ("touch", True)])
def test_touching_digits_share_ink_and_spaced_ones_do_not(spacing: str, touching: bool):
    zero = drawn("0")
    composed = compose_number([zero, zero, zero], [0, 0, 0], [spacing, spacing], np.random.default_rng(0))
    assert composed.touches == (touching, touching) and composed.touching is touching
    first, second = composed.boxes[0], composed.boxes[1]
    assert (second[0] < first[2]) is touching  # touching zeros overlap in x, spaced ones leave a gap


def test_overlap_brings_the_boxes_together_without_touching():
    seven, one = drawn("7"), drawn("1")
    composed = compose_number([seven, one], [7, 1], ["overlap"], np.random.default_rng(0))
    assert composed.touches == (False,)
    assert composed.boxes[1][0] < composed.boxes[0][2]  # the 1 slides under the 7's bar


def test_wrong_spacings_are_refused():
    with pytest.raises(ValueError, match="spacings"):
        compose_number([drawn("1"), drawn("1")], [1, 1], ["gap", "gap"], np.random.default_rng(0))
    with pytest.raises(ValueError, match="spacings"):
        compose_number([drawn("1"), drawn("1")], [1, 1], ["apart"], np.random.default_rng(0))


def test_box_oracle_knows_the_truth_and_nothing_else():
    composed = compose_number([drawn("4"), drawn("2")], [4, 2], ["gap"], np.random.default_rng(0))
    (x0, y0, x1, y1), second = composed.boxes
    both = (x0, y0, second[2], max(y1, second[3]))
    half = (x0, y0, (x0 + x1) // 2, y1)
    probabilities = box_oracle(composed, [composed.boxes[0], second, both, half])
    assert probabilities.shape == (4, 10) and np.allclose(probabilities.sum(axis=1), 1.0)
    assert probabilities[:2].argmax(axis=1).tolist() == [4, 2] and (probabilities[:2].max(axis=1) > 0.99).all()
    assert (probabilities[2:].max(axis=1) < 0.2).all()


def test_a_failure_is_blamed_on_segmentation_the_classifier_or_the_path():
    composed = compose_number([drawn("4"), drawn("2")], [4, 2], ["gap"], np.random.default_rng(0))
    (x0, y0, x1, y1), second = composed.boxes
    both = (x0, y0, second[2], max(y1, second[3]))
    nudged = (x0 + 2, y0, x1, y1)  # 2 px off: within MATCH_DISTANCE of a digit ~20 px tall or more
    assert box_distances(composed, [composed.boxes[0]])[0].tolist()[0] == 0.0
    assert failure_cause(composed, [both, second], [4, 2]) == "no candidate"  # nothing offered the 4 alone
    assert failure_cause(composed, [nudged, second, both], [4, 7, 4]) == "misread"  # the 2's own box read as 7
    assert failure_cause(composed, [nudged, second, both], [4, 2, 4]) == "path"  # all there and read right
