"""Training examples for the number reader: what segmentation cuts from photos of numbers, with the truth.

Numbers of 2–6 digits are composed from single digits (mnist_transfer.data.compose: random gaps, touching and
overlapping pairs, photo rendering) and segmented as `predict --number` segments a photo
(mnist_transfer.data.segment). Each candidate digit, normalised to 28×28, is labelled with the digit whose true
box it matches (every edge within compose.MATCH_DISTANCE of the digit height), or NOT_A_DIGIT when it is further
than NOT_A_DIGIT_DISTANCE from every digit: half a digit, two touching digits, a digit with a piece of its
neighbour; those in between are left out. A classifier fitted on these learns to say when a candidate is not one
digit, which the reading's score uses. Deterministic per seed, whatever the workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from mnist_transfer.data.compose import MATCH_DISTANCE, box_distances, random_number
from mnist_transfer.data.idx import IMAGE_SIDE_PX
from mnist_transfer.data.segment import NOT_A_DIGIT, segment_number
from mnist_transfer.errors import DataError

NUMBERS_PER_TASK = 25  # numbers composed and segmented per task (each from its own seed: [seed, task])
DIGITS_PER_NUMBER = (2, 6)  # lengths drawn uniformly, both ends included
# Candidates whose box is off a true digit's by more than MATCH_DISTANCE but at most this share of its height are
# left out: a digit with a sliver of its neighbour, or short of one, is neither clearly it nor clearly not one digit
# (taught as "not one digit", the reader read 85.50 % of 400 four-digit numbers of seed 1 right; left out, 88.00 %;
# labelled with the digit up to 0.2 and left out to 0.3, 86.00 %: 2-core AMD EPYC, 2026-12-04).
NOT_A_DIGIT_DISTANCE = 0.25

log = logging.getLogger(__name__)
_shared: tuple[np.ndarray, np.ndarray] = (np.empty((0, IMAGE_SIDE_PX, IMAGE_SIDE_PX), np.uint8), np.empty(0, np.int64))


def number_fragments(
    images: np.ndarray, labels: np.ndarray, n_numbers: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (n, 28, 28) candidates, (n,) int64 targets: the digit, or NOT_A_DIGIT) from n_numbers numbers
    composed of `images` (uint8 (m, 28, 28)) with `labels`. A number whose photo segmentation refuses (no ink,
    too many parts) gives nothing."""
    pixels = [np.empty((0, IMAGE_SIDE_PX, IMAGE_SIDE_PX), np.uint8)]
    targets = [np.empty(0, np.int64)]
    if not len(images):
        return pixels[0], targets[0]
    for _ in range(n_numbers):
        length = min(len(images), int(rng.integers(DIGITS_PER_NUMBER[0], DIGITS_PER_NUMBER[1] + 1)))
        composed, _ = random_number(images, labels, length, rng)
        try:
            segmentation = segment_number(composed.image())
        except DataError:
            continue
        distance = box_distances(composed, [candidate.box for candidate in segmentation.candidates])
        closest = distance.argmin(axis=1)
        off = distance[np.arange(len(closest)), closest]
        is_digit, kept = off <= MATCH_DISTANCE, (off <= MATCH_DISTANCE) | (off > NOT_A_DIGIT_DISTANCE)
        digits = np.array([int(digit) for digit in composed.digits], np.int64)[closest]
        pixels.append(segmentation.pixels[kept])
        targets.append(np.where(is_digit, digits, NOT_A_DIGIT)[kept])
    return np.concatenate(pixels), np.concatenate(targets)


def fragments_in_parallel(
    images: np.ndarray, labels: np.ndarray, n_numbers: int, seed: int, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """number_fragments over tasks of NUMBERS_PER_TASK numbers, task k drawn from the seed [seed, k], in
    `workers` processes (None: one per core); the same result for any number of workers. Logs progress."""
    starts = range(0, n_numbers, NUMBERS_PER_TASK)
    tasks = [(k, min(NUMBERS_PER_TASK, n_numbers - start)) for k, start in enumerate(starts)]
    if not tasks or not len(images):
        return number_fragments(images, labels, 0, np.random.default_rng(seed))  # none
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    if workers == 1:
        _share(images, labels)
        parts = _collect((_task(seed, k, n) for k, n in tasks), len(tasks))
    else:  # spawn: the caller may have started TensorFlow's threads, which a fork would copy half-locked
        context = get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_share, initargs=(images, labels)) as pool:
            parts = _collect(pool.map(_task, [seed] * len(tasks), *zip(*tasks)), len(tasks))
    return np.concatenate([p for p, _ in parts]), np.concatenate([t for _, t in parts])


def _collect(results: Iterable[tuple[np.ndarray, np.ndarray]], n_tasks: int) -> list[tuple[np.ndarray, np.ndarray]]:
    parts = []
    for done, part in enumerate(results, start=1):
        parts.append(part)
        if done == n_tasks or done % max(1, n_tasks // 10) == 0:
            log.info("segmented %d of %d tasks of composed numbers: %d candidates so far", done, n_tasks,
                     sum(len(t) for _, t in parts))
    return parts


def _share(images: np.ndarray, labels: np.ndarray) -> None:
    global _shared
    _shared = (images, labels)


def _task(seed: int, task: int, n_numbers: int) -> tuple[np.ndarray, np.ndarray]:
    return number_fragments(*_shared, n_numbers, np.random.default_rng([seed, task]))
