"""Training examples for the number reader: what segmentation cuts from photos of numbers, with the truth.

Numbers of 2–6 digits are composed from single digits (mnist_transfer.data.compose: random gaps, touching and
overlapping pairs, photo rendering) and segmented as `predict --number` segments a photo
(mnist_transfer.data.segment). Each candidate digit, normalised to 28×28, is labelled with the digit whose true
box it matches (every edge within compose.MATCH_DISTANCE of the digit height), or NOT_A_DIGIT when it is further
than NOT_A_DIGIT_DISTANCE from every digit: half a digit, two touching digits, a digit with a piece of its
neighbour; those in between are left out. A classifier fitted on these learns to say when a candidate is not one
digit, which the reading's score uses. The candidates also offered as pairs of digits (segment.PAIR_MIN_WIDTH)
are labelled alike for the pair classifier: 10·a + b when the box matches two neighbours' joint box, NOT_A_PAIR
when it is further than NOT_A_DIGIT_DISTANCE from every such box or matches three neighbours' (two digits and a
narrow 1 are near a pair's box, yet not a pair). Deterministic per seed, whatever the workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import NamedTuple

import numpy as np

from mnist_transfer.data.compose import MATCH_DISTANCE, SPACING_WEIGHTS, box_distances, pair_distances, random_number
from mnist_transfer.data.idx import IMAGE_SIDE_PX
from mnist_transfer.data.segment import NOT_A_DIGIT, NOT_A_PAIR, PAIR_SHAPE, segment_number
from mnist_transfer.errors import DataError

NUMBERS_PER_TASK = 25  # numbers composed and segmented per task (each from its own seed: [seed, task])


@dataclass(frozen=True)
class NumberDraw:
    """How the numbers are drawn: lengths uniformly in `lengths` (both ends included), neighbours spaced by
    compose.SPACINGS drawn with `spacing_weights`; `singles` False: only the pairs are labelled (the candidates'
    28×28s are not even made: segment_number's digits=False)."""

    lengths: tuple[int, int]
    spacing_weights: tuple[float, ...]
    singles: bool = True


READER_NUMBERS = NumberDraw((2, 6), SPACING_WEIGHTS)  # as benchmarks.numbers' numbers are spaced
# for the pair classifier: shorter numbers, most neighbours close, touching or overlapping (more pairs per number)
PAIR_NUMBERS = NumberDraw((2, 4), (0.2, 0.2, 0.25, 0.35), singles=False)
# Candidates whose box is off a true digit's by more than MATCH_DISTANCE but at most this share of its height are
# left out: a digit with a sliver of its neighbour, or short of one, is neither clearly it nor clearly not one digit
# (taught as "not one digit", the reader read 85.50 % of 400 four-digit numbers of seed 1 right; left out, 88.00 %;
# labelled with the digit up to 0.2 and left out to 0.3, 86.00 %: 2-core AMD EPYC, 2026-12-04).
NOT_A_DIGIT_DISTANCE = 0.25

log = logging.getLogger(__name__)


class Fragments(NamedTuple):
    """Labelled candidates: for the number reader, and for its pair classifier."""

    pixels: np.ndarray  # uint8 (n, 28, 28)
    targets: np.ndarray  # int64 (n,): the digit, or NOT_A_DIGIT
    pair_pixels: np.ndarray  # uint8 (m, 28, 56)
    pair_targets: np.ndarray  # int64 (m,): 10·a + b, or NOT_A_PAIR


NO_FRAGMENTS = Fragments(np.empty((0, IMAGE_SIDE_PX, IMAGE_SIDE_PX), np.uint8), np.empty(0, np.int64),
                         np.empty((0, *PAIR_SHAPE), np.uint8), np.empty(0, np.int64))
_shared: tuple[np.ndarray, np.ndarray] = (np.empty((0, IMAGE_SIDE_PX, IMAGE_SIDE_PX), np.uint8), np.empty(0, np.int64))


def number_fragments(images: np.ndarray, labels: np.ndarray, n_numbers: int, rng: np.random.Generator,
                     draw: NumberDraw = READER_NUMBERS) -> Fragments:
    """The candidates, and those offered as pairs, of n_numbers numbers composed of `images` (uint8 (m, 28, 28))
    with `labels` as `draw` says, labelled (no candidates, only pairs, when draw.singles is off). A number whose
    photo segmentation refuses (no ink, too many parts) gives nothing."""
    parts = [NO_FRAGMENTS]
    if not len(images):
        return NO_FRAGMENTS
    for _ in range(n_numbers):
        length = min(len(images), int(rng.integers(draw.lengths[0], draw.lengths[1] + 1)))
        composed, _ = random_number(images, labels, length, rng, spacing_weights=draw.spacing_weights)
        try:
            segmentation = segment_number(composed.image(), digits=draw.singles)
        except DataError:
            continue
        digits = np.array([int(digit) for digit in composed.digits], np.int64)
        boxes = [candidate.box for candidate in segmentation.candidates]
        pixels, targets = labelled(segmentation.pixels, box_distances(composed, boxes), digits, NOT_A_DIGIT) \
            if draw.singles else NO_FRAGMENTS[:2]
        pair_boxes = [boxes[k] for k in segmentation.pairs]
        three_digits = (pair_distances(composed, pair_boxes, span=3) <= MATCH_DISTANCE).any(axis=1)
        pair_pixels, pair_targets = labelled(segmentation.pair_pixels, pair_distances(composed, pair_boxes),
                                             10 * digits[:-1] + digits[1:], NOT_A_PAIR, three_digits)
        parts.append(Fragments(pixels, targets, pair_pixels, pair_targets))
    return Fragments(*(np.concatenate(column) for column in zip(*parts)))


def labelled(pixels: np.ndarray, distance: np.ndarray, truth: np.ndarray, other: int,
             is_other: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (pixels) with their distance to each true box (n, k) → (the kept ones, their targets): truth[j]
    for those within MATCH_DISTANCE of box j (the closest), `other` for those further than NOT_A_DIGIT_DISTANCE
    from every box and for those that `is_other` (n,) marks and match none; those in between are left out."""
    if not distance.size:  # no true box (a 1-digit number has no pair): every candidate is `other`
        return pixels, np.full(len(pixels), other, np.int64)
    closest = distance.argmin(axis=1)
    off = distance[np.arange(len(closest)), closest]
    is_true = off <= MATCH_DISTANCE
    kept = is_true | (off > NOT_A_DIGIT_DISTANCE) | (False if is_other is None else is_other)
    return pixels[kept], np.where(is_true, truth[closest], other)[kept]


def fragments_in_parallel(
    images: np.ndarray, labels: np.ndarray, n_numbers: int, seed: int, workers: int | None = None,
    draw: NumberDraw = READER_NUMBERS,
) -> Fragments:
    """number_fragments (drawn as `draw` says) over tasks of NUMBERS_PER_TASK numbers, task k drawn from the seed
    [seed, k], in `workers` processes (None: one per core); the same result for any number of workers. Logs
    progress."""
    starts = range(0, n_numbers, NUMBERS_PER_TASK)
    tasks = [(k, min(NUMBERS_PER_TASK, n_numbers - start)) for k, start in enumerate(starts)]
    if not tasks or not len(images):
        return NO_FRAGMENTS
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    if workers == 1:
        _share(images, labels)
        parts = _collect((_task(seed, k, n, draw) for k, n in tasks), len(tasks))
    else:  # spawn: the caller may have started TensorFlow's threads, which a fork would copy half-locked
        context = get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_share, initargs=(images, labels)) as pool:
            parts = _collect(pool.map(_task, [seed] * len(tasks), *zip(*tasks), [draw] * len(tasks)), len(tasks))
    return Fragments(*(np.concatenate(column) for column in zip(*parts)))


def _collect(results: Iterable[Fragments], n_tasks: int) -> list[Fragments]:
    parts = []
    for done, part in enumerate(results, start=1):
        parts.append(part)
        if done == n_tasks or done % max(1, n_tasks // 10) == 0:
            log.info("segmented %d of %d tasks of composed numbers: %d candidates and %d pairs so far", done, n_tasks,
                     sum(len(p.targets) for p in parts), sum(len(p.pair_targets) for p in parts))
    return parts


def _share(images: np.ndarray, labels: np.ndarray) -> None:
    global _shared
    _shared = (images, labels)


def _task(seed: int, task: int, n_numbers: int, draw: NumberDraw) -> Fragments:
    return number_fragments(*_shared, n_numbers, np.random.default_rng([seed, task]), draw)
