"""Read a handwritten number: one line of 1–12 digits in an image → the digits, left to right, each normalised
to MNIST's look exactly as a single digit is (mnist_transfer.data.normalise), then classified.

The classifier is an argument (uint8 (n, 28, 28) → (n, 10) probabilities), so this module needs no model,
and a test can pass a fake. The steps:
1. Clean-up as for one digit (normalise_digit's own functions): grey levels, polarity, the paper's background
   (lighting) removed, levels; then every ink component that reaches a pen's level, minus specks and page edges
   (both more lenient than for one digit: LINE_STRONG_LEVEL, LINE_SPECK_FRACTION).
2. The line's digit height H (the median height of the tall components) and stroke width (from the skeleton).
   More than MAX_DIGITS digit-like components: TooManyDigitsError.
3. Over-segmentation, in alternatives per component: its slices between its cheapest seams (top-to-bottom paths
   through the least ink, slanted where need be); and two parts where it is thinnest between a left and a right
   end (minimum vertex cuts by maximum flow: touching digits come apart at their contacts, even when they
   overlap in x), the ends placed at the component's sides, around its seams' minima and every CUT_STEP × H
   across it. Each combination of the components' alternatives is an order of atoms, left to right.
4. Candidates: runs of up to MAX_ATOMS_PER_DIGIT neighbouring atoms that could be one digit (contiguous in x,
   up to STROKE_GAP × H apart, tall enough, not too wide): a 5's detached hat, a 4 drawn in two strokes and a
   pen's dot join their digit this way.
5. Each candidate is normalised to 28×28 as a single digit is (its grey edges, a 20 px box, the centre of mass)
   and classified, all in one batch.
6. The reading: over every order, the path through the atoms (dynamic programming) that maximises the sum over
   its digits of log(top probability, softened for a ten-class classifier: see softened_top) + width and height
   priors + a per-digit bonus − the ink its cuts cross (Weights; a number reader's: READER_WEIGHTS);
   small atoms may be left out as specks at a cost; at most MAX_DIGITS digits.

A number reader (the train_reader stage: data/reader) has an 11th class, NOT_A_DIGIT, fitted on fragments of
composed numbers that are not one digit (mnist_transfer.data.fragments): its probability p adds
Weights.not_digit · log(1 − p) to a candidate's score, and the digit is read from the other ten, renormalised.

Two digits that touch along a stroke (a 1 pressed against a 6's back) cannot be cut apart: no partition of the
pixels separates them. So every candidate at least PAIR_MIN_WIDTH × H wide is also offered whole as a pair of
digits, its ink scaled into 28×56 (pair_pixels), to a pair classifier (a number reader's second model: 100
classes 10·a + b for the digits a, b, and NOT_A_PAIR). A pair counts as two digits in the path; its score is
that of its two digits read apart (each digit's probability summed over the other, softened) + two digit
bonuses + Weights.not_pair · log(1 − p(NOT_A_PAIR)) + Weights.pair. A candidate read as one digit gains
Weights.single_not_pair · log p(NOT_A_PAIR): what the pair classifier calls a pair is seldom one digit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from mnist_transfer.data import normalise
from mnist_transfer.data.images import grey_image
from mnist_transfer.errors import DataError

Classify = Callable[[np.ndarray], np.ndarray]  # uint8 (n, 28, 28) → (n, 10 or 11) probabilities, class i = digit i
ClassifyPairs = Callable[[np.ndarray], np.ndarray]  # uint8 (n, 28, 56) → (n, 101): class 10·a + b, NOT_A_PAIR
SeamCosts = tuple[np.ndarray, np.ndarray]  # seam_costs': each bottom column's cheapest seam cost, each row's steps
NOT_A_DIGIT = 10  # a number reader's 11th class: the candidate is not one digit (half of one, two, a piece)
NOT_A_PAIR = 100  # a pair classifier's 101st class: the candidate is not two neighbouring digits
PAIR_SHAPE = (28, 56)  # pair_pixels: a pair's ink fitted into PAIR_BOX, centred
PAIR_BOX = (22, 52)
PAIR_MIN_WIDTH = 0.5  # × H: candidates at least this wide are also read as a pair of digits

MAX_DIGITS = 12
MAX_LINE_SIDE_PX = 1024  # larger images are reduced first (area average): digits stay ≥ 60 px tall or so
TALL_FRACTION = 0.5  # components at least this share of the tallest one's height measure the digit height H
PIECE_HEIGHT = 0.45  # × H: lower atoms are pieces (a 5's hat, a dot): never a digit alone
MIN_DIGIT_HEIGHT = 0.6  # × H: a shorter digit pays Weights.height per (0.1 H)² below it
MAX_DIGIT_WIDTH = 0.9  # × H: a wider digit pays Weights.width per (0.2 H)² beyond it…
MAX_RUN_WIDTH = 1.6  # × H: …and one wider than this is not considered at all
MIN_SPLIT_WIDTH = 0.45  # × H: components at least this wide are also tried as two or more digits
MIN_SLICE_WIDTH = 0.12  # × H: a cut leaves at least this much on either side (a narrow 1)
SEAM_SIDESTEP = 0.3  # a seam's step sideways costs as much as crossing this many ink pixels: straight if free
MAX_CUT_STROKES = 2.5  # cuts crossing more ink than this many stroke widths are not tried
MAX_CUTS_PER_H = 3.0  # at most this many cuts per H of a component's width, the cheapest ones
MAX_ATOMS_PER_DIGIT = 4
JUNCTION_MIN_WIDTH = 0.6  # × H: components at least this wide are also tried split where two digits touch
CUT_BANDS = ((0.15, 0.15), (0.3, 0.15), (0.15, 0.3), (0.3, 0.3))  # min_cut's left and right ends (share of width)
CUT_WINDOW = 0.15  # × H: min_cut's ends also lie this far left and right of each seam minimum…
CUT_STEP = 0.15  # × H: …and of columns this far apart across the component
MAX_JUNCTION_STROKES = 4.0  # a minimum cut through more ink than this many stroke widths is not tried
MIN_PART_SHARE = 0.08  # each part of a junction split holds at least this share of the component's ink
JUNCTION_KEYS = 25  # junction splits dividing the ink alike (to 1/JUNCTION_KEYS) are one split
MAX_ORDERS = 64  # combinations of the components' partitions tried
PIECE_REACH = 0.15  # × H: a piece joins a digit when at most this far from it in x
STROKE_GAP = 0.1  # × H: two tall components this far apart in x may still be one digit's strokes
EPSILON = 1e-6  # probabilities are floored here before the log
# A line's ink components (line_components) need only reach this level (paper 0, ink 1) somewhere and hold this
# share of the largest one's pixels, where one digit's need normalise.STRONG_LEVEL (0.75) and SPECK_FRACTION
# (0.02): in a line, a thin-stroked digit beside bold ones stays grey once blurred (a 6 peaking at 0.73) and a
# faint one breaks into pieces of 0.7-3 % of the line's largest component (seen in 3 numbers of seed 2: a 1, a 4
# and a 7, the last beside a touching pair of 8s, 6,105 px). Measured with the reader of commit 6d0cb2f
# on 1,000 four-digit numbers of benchmarks.numbers: 92.2 -> 92.7 % read right on seed 2, 94.6 -> 94.8 % on seed 1,
# none read wrong that was right (2-core Intel Xeon, 2026-12-06); at 0.6 and 0.005, 92.6 % on seed 2. The reader
# retrained on the candidates this cuts read 92.8 % and 93.3 %: retraining alone moves these by a point or so.
LINE_STRONG_LEVEL = normalise.MID_LEVEL
LINE_SPECK_FRACTION = 0.005


@dataclass(frozen=True)
class Weights:
    """How the reading weighs its evidence, in nats (log-probability units). The defaults are for a ten-class
    classifier (a digit model read numbers with); READER_WEIGHTS for a number reader."""

    width: float = 0.5  # per (0.2 H)² of a digit's width beyond MAX_DIGIT_WIDTH
    height: float = 1.0  # per (0.1 H)² of a digit's height below MIN_DIGIT_HEIGHT
    cut: float = 0.2  # per stroke width of ink a cut crosses
    skip: float = 3.0  # per atom left out as a speck
    digit: float = 0.3  # a bonus per digit: > 0 favours more, narrower digits (touching ones read as one)
    sharpness: float = 0.35  # the classifier's log-probabilities are scaled by this (see softened_top)
    not_digit: float = 2.0  # × log(1 − p(NOT_A_DIGIT)), for a number reader
    not_pair: float = 2.0  # × log(1 − p(NOT_A_PAIR)), for a pair
    # × log p(NOT_A_PAIR) for a candidate read as one digit that the pair classifier also read: one it calls a pair
    # is unlikely to be one digit
    single_not_pair: float = 0.0
    pair: float = -3.0  # added to a pair's score


# A number reader's: it tells half a digit from a whole one (NOT_A_DIGIT), so its probabilities need no softening.
# Chosen by a coordinate search over these nine weights on 1,000 four-digit numbers of seed 2, then checked on
# seed 1's (benchmarks.numbers' draws; its own seed 0 was not looked at): 89.8 → 92.2 % read right on seed 2,
# 92.6 → 94.6 % on seed 1, the reader of commit bef4b5f's full-data pipeline (2-core Intel Xeon, 2026-12-05).
# The pair penalty then −2.5 → −1.5 for the reader that train_reader of commit b5a3170 fitted (after
# LINE_STRONG_LEVEL), by the same search on seed 2 (92.8 → 93.3 %; seed 1 93.3 → 93.5 %; 2-core Intel Xeon,
# 2026-12-06). Weights suit one reader: bef4b5f's (and segmenting) read 92.2 → 91.9 %, 94.6 → 93.9 % with −1.5.
# For the mean of two readers (reader.members, commit 10bfa7e) the search on seed 2 moved five: skip 3 → 2,
# sharpness 1 → 1.3, not_digit 1 → 0.75, not_pair 2 → 3, single_not_pair 1 → 1.5 (93.3 → 93.9 %); seed 1 read
# 93.8 → 94.5 %, and each change alone read as many or more there (2-core Intel Xeon, 2026-12-06).
READER_WEIGHTS = Weights(skip=2.0, digit=0.6, sharpness=1.3, not_digit=0.75, not_pair=3.0, single_not_pair=1.5,
                         pair=-1.5)


class NumberError(DataError):
    """An image holds no readable number: too many parts, or none that can be a digit."""


class TooManyDigitsError(NumberError):
    """More digit-like parts than one number of MAX_DIGITS digits holds."""


@dataclass(frozen=True)
class DigitRead:
    """One digit of a number."""

    digit: int  # the classifier's top class
    confidence: float  # its probability
    box: tuple[int, int, int, int]  # the digit's ink in the input image's pixels: x0, y0, x1, y1 (exclusive)
    normalised: np.ndarray  # uint8 (28, 28): what the classifier saw
    probabilities: np.ndarray  # (n_classes,)


@dataclass(frozen=True)
class NumberRead:
    """A number, left to right."""

    digits: tuple[DigitRead, ...]

    @property
    def number(self) -> str:
        return "".join(str(d.digit) for d in self.digits)

    @property
    def confidence(self) -> float:
        """The product of the digits' confidences: the chance that every digit is right, if each is calibrated."""
        return float(np.prod([d.confidence for d in self.digits]))


@dataclass(frozen=True)
class Line:
    """The cleaned-up ink of a line of digits, at the working size."""

    flat: np.ndarray  # float (h, w): ink bright, the paper's background removed (normalise.flatten_paper)
    levels: normalise.InkLevels
    ink: np.ndarray  # bool (h, w): the ink's kept components
    scale: float  # working pixels per input pixel (≤ 1)
    height_px: float  # H: the digits' typical height
    stroke_px: float  # the strokes' typical width


@dataclass(frozen=True)
class Atom:
    """A piece of ink: a whole component, or a part of one between cuts."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), working pixels
    mask: np.ndarray  # bool (y1 - y0, x1 - x0)
    whole: bool  # the whole component (not a part)
    cut_strokes: float  # ink the cut before it (to its left) removes, in stroke widths crossed (0: no cut)


@dataclass(frozen=True)
class Candidate:
    """Atoms read as one digit."""

    atoms: frozenset[int]  # indices into Segmentation.atoms
    box: tuple[int, int, int, int]  # its ink in the input image's pixels: x0, y0, x1, y1 (exclusive)
    width: float  # its width / H
    height: float  # its height / H
    pixels: np.ndarray | None  # uint8 (28, 28); None when segmented for pairs alone (segment_number's digits=False)


@dataclass(frozen=True)
class Segmentation:
    """A line's atoms, the orders they may be read in, and the candidate digits: all but the classifier's verdict.

    Each order is one way to partition every component (whole, sliced by seams, or split at a junction), its
    atoms sorted left to right; a reading covers one order's atoms with runs of neighbours, each run a candidate.
    """

    line: Line
    atoms: tuple[Atom, ...]
    orders: tuple[tuple[int, ...], ...]
    candidates: tuple[Candidate, ...]
    pairs: tuple[int, ...]  # the candidates (indices) also offered as a pair of digits: PAIR_MIN_WIDTH × H or wider
    pair_pixels: np.ndarray  # uint8 (len(pairs), 28, 56): what a pair classifier is asked about

    @property
    def pixels(self) -> np.ndarray:
        """uint8 (n_candidates, 28, 28): what the classifier is asked about."""
        if any(c.pixels is None for c in self.candidates):
            raise ValueError("segmented for pairs alone (segment_number's digits=False): no candidate's 28×28 "
                             "was made")
        return np.stack([c.pixels for c in self.candidates])


def read_number(image: Image.Image, classify: Classify, weights: Weights | None = None,
                classify_pairs: ClassifyPairs | None = None) -> NumberRead:
    """The digits of the number in `image`, left to right; wide candidates are also read as pairs of digits when
    a pair classifier is given. weights None: choose_digits' default.

    Raises normalise.NoInkError (no ink), TooManyDigitsError (more than MAX_DIGITS digit-like parts) or
    NumberError (no part can be a digit).
    """
    segmentation = segment_number(image)
    return choose_digits(segmentation, np.asarray(classify(segmentation.pixels), dtype=np.float64), weights,
                         classify_pair_candidates(segmentation, classify_pairs))


def classify_pair_candidates(segmentation: Segmentation, classify_pairs: ClassifyPairs | None) -> np.ndarray | None:
    """The pair classifier's (len(segmentation.pairs), 101) probabilities, for choose_digits; None without a pair
    classifier or without a candidate wide enough to be a pair."""
    if classify_pairs is None or not segmentation.pairs:
        return None
    return np.asarray(classify_pairs(segmentation.pair_pixels), dtype=np.float64)


def segment_number(image: Image.Image, digits: bool = True) -> Segmentation:
    """Steps 1–5 without the classifier: the line's ink, its atoms and the candidate digits, normalised.
    digits=False: for the pairs alone (mnist_transfer.data.fragments' pair numbers), the candidates' 28×28s are not
    made (Candidate.pixels None: 0.56 of the time on 80 pair numbers, 2-core Intel Xeon, 2026-12-05); the
    candidates and the pairs' 28×56s are the same."""
    line = line_ink(image)
    components = line_components_of(line)
    check_digit_like_parts([box for _, box in components], line)
    atoms, orders = atom_orders([component_partitions(mask, box, line) for mask, box in components])
    candidates = digit_candidates(line, atoms, orders, normalised=digits)
    if not candidates:
        raise NumberError("no number found: no part of the ink has the size of a digit")
    pairs = tuple(k for k, candidate in enumerate(candidates) if candidate.width >= PAIR_MIN_WIDTH)
    pixels = [pair_pixels([atoms[a] for a in candidates[k].atoms]) for k in pairs]
    return Segmentation(line, tuple(atoms), tuple(orders), tuple(candidates), pairs,
                        np.stack(pixels) if pixels else np.empty((0, *PAIR_SHAPE), np.uint8))


def choose_digits(segmentation: Segmentation, probabilities: np.ndarray, weights: Weights | None = None,
                  pair_probabilities: np.ndarray | None = None) -> NumberRead:
    """Step 6: the best reading, given the classifier's (n_candidates, 10) probabilities, or a number reader's
    (n_candidates, 11) with NOT_A_DIGIT last; and a pair classifier's (len(segmentation.pairs), 101) for the
    candidates also offered as pairs (None: none read as a pair). weights None: READER_WEIGHTS for a number
    reader's probabilities, Weights() for a ten-class classifier's."""
    if weights is None:
        weights = READER_WEIGHTS if probabilities.shape[1] == NOT_A_DIGIT + 1 else Weights()
    line, atoms, candidates = segmentation.line, segmentation.atoms, segmentation.candidates
    probabilities, not_digit = digit_probabilities(probabilities)
    not_a_pair = np.ones(len(candidates))  # p(NOT_A_PAIR) of each candidate: 1 for those not read as a pair
    if pair_probabilities is not None:
        not_a_pair[list(segmentation.pairs)] = pair_probabilities[:, NOT_A_PAIR]
    readings: dict[frozenset[int], list[RunReading]] = {}  # by the run's atoms: as one digit, and as a pair
    for candidate, p, q, r in zip(candidates, probabilities, not_digit, not_a_pair):
        score = (candidate_score(candidate, p, weights) + weights.not_digit * np.log(max(1 - q, EPSILON))
                 + weights.single_not_pair * np.log(max(r, EPSILON)))
        readings.setdefault(candidate.atoms, []).append(RunReading(score, (digit_read(candidate, p),)))
    if pair_probabilities is not None:
        for k, pixels, p in zip(segmentation.pairs, segmentation.pair_pixels, pair_probabilities):
            candidate = candidates[k]
            readings[candidate.atoms].append(RunReading(pair_score(candidate, p, weights),
                                                        pair_reads(candidate, pixels, p)))
    best: tuple[float, list[DigitRead]] = (-np.inf, [])
    for order in segmentation.orders:
        runs = [(start, stop, reading) for start in range(len(order)) for stop in range(start + 1, len(order) + 1)
                for reading in readings.get(frozenset(order[start:stop]), [])]
        try:
            total, path = best_path(len(order), [(start, stop) for start, stop, _ in runs],
                                    [reading.score for _, _, reading in runs],
                                    [weights.cut * atoms[a].cut_strokes for a in order],
                                    [weights.skip if atoms[a].whole and is_piece(atoms[a], line) else None for a in order],
                                    [len(reading.digits) for _, _, reading in runs])
        except NumberError:
            continue
        if total > best[0]:
            best = (total, [digit for k in path for digit in runs[k][2].digits])
    if not best[1]:
        raise NumberError(f"no number found: the ink cannot be read as {MAX_DIGITS} digits or fewer")
    return NumberRead(tuple(best[1]))


class RunReading(NamedTuple):
    """A run of atoms read as one digit, or as a pair."""

    score: float
    digits: tuple[DigitRead, ...]


def digit_probabilities(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((n, 10) probabilities of the digits, (n,) probability of NOT_A_DIGIT): a 10-class classifier's as they are
    (and 0); a number reader's first ten renormalised, and its 11th."""
    if probabilities.shape[1] == NOT_A_DIGIT:
        return probabilities, np.zeros(len(probabilities))
    if probabilities.shape[1] != NOT_A_DIGIT + 1:
        raise ValueError(f"expected (n, 10) or (n, 11) probabilities, got {probabilities.shape}")
    digits = probabilities[:, :NOT_A_DIGIT]
    return digits / np.maximum(digits.sum(axis=1, keepdims=True), EPSILON), probabilities[:, NOT_A_DIGIT]


def candidate_score(candidate: Candidate, probabilities: np.ndarray, weights: Weights) -> float:
    """log(top probability, softened) + the width and height priors (≤ 0) + the digit bonus."""
    return softened_top(probabilities, weights.sharpness) + shape_priors(candidate, weights, 1) + weights.digit


def shape_priors(candidate: Candidate, weights: Weights, n_digits: int) -> float:
    """The width and height priors (≤ 0) of a candidate read as n_digits digits: wider than n_digits ×
    MAX_DIGIT_WIDTH, or lower than MIN_DIGIT_HEIGHT, costs the square of the excess."""
    too_wide = max(0.0, candidate.width - n_digits * MAX_DIGIT_WIDTH) / 0.2
    too_low = max(0.0, MIN_DIGIT_HEIGHT - candidate.height) / 0.1
    return -weights.width * too_wide**2 - weights.height * too_low**2


def softened_top(probabilities: np.ndarray, sharpness: float) -> float:
    """log of the top class's probability once every probability is raised to `sharpness` (< 1: softer) and
    they are renormalised. A calibrated classifier is near-certain of half a 0 and of a whole 0 alike, so
    log(top) hardly tells them apart; softened, the margin over the runner-up classes counts."""
    from scipy.special import log_softmax

    return float(log_softmax(sharpness * np.log(np.maximum(probabilities, EPSILON))).max())


def digit_read(candidate: Candidate, probabilities: np.ndarray) -> DigitRead:
    best = int(np.argmax(probabilities))
    return DigitRead(best, float(probabilities[best]), candidate.box, candidate.pixels, probabilities.astype(np.float32))


def pair_marginals(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A pair classifier's (101,) probabilities → each digit's (10,) probabilities, the other summed out, given
    that the candidate is a pair (NOT_A_PAIR left out)."""
    joint = probabilities[:NOT_A_PAIR].reshape(10, 10)
    joint = joint / max(float(joint.sum()), EPSILON)
    return joint.sum(axis=1), joint.sum(axis=0)


def pair_score(candidate: Candidate, probabilities: np.ndarray, weights: Weights) -> float:
    """A candidate read as two digits: each digit's softened top as a digit's, the priors for two digits' width,
    two digit bonuses, Weights.not_pair × log(1 − p(NOT_A_PAIR)) and Weights.pair."""
    left, right = pair_marginals(probabilities)
    return (softened_top(left, weights.sharpness) + softened_top(right, weights.sharpness)
            + shape_priors(candidate, weights, 2) + 2 * weights.digit
            + weights.not_pair * np.log(max(1 - float(probabilities[NOT_A_PAIR]), EPSILON)) + weights.pair)


def pair_reads(candidate: Candidate, pixels: np.ndarray, probabilities: np.ndarray) -> tuple[DigitRead, DigitRead]:
    """The two digits of a candidate read as a pair: the most likely pair, each digit with its probability (the
    other summed out), the left and right half of the candidate's box and of the 28×56 the classifier saw."""
    left, right = pair_marginals(probabilities)
    first, second = divmod(int(np.argmax(probabilities[:NOT_A_PAIR])), 10)
    x0, y0, x1, y1 = candidate.box
    middle = (x0 + x1) // 2
    half = PAIR_SHAPE[1] // 2
    return (DigitRead(first, float(left[first]), (x0, y0, middle, y1), pixels[:, :half].copy(), left.astype(np.float32)),
            DigitRead(second, float(right[second]), (middle, y0, x1, y1), pixels[:, half:].copy(),
                      right.astype(np.float32)))


# --- 1, 2: the line's ink ---------------------------------------------------------------------------------


def line_ink(image: Image.Image) -> Line:
    """Clean up the image as normalise_digit does, keeping every digit-like component (not just one)."""
    grey, scale = line_grey_levels(image)
    grey, light_paper = normalise.ink_bright(grey)  # normalise_digit's steps, up to where it picks one digit
    flat = normalise.flatten_paper(grey, light_paper)
    levels = normalise.ink_levels(flat)
    ink = line_components(flat, levels)
    if not ink.any():
        raise normalise.NoInkError("no digit found: no ink above the paper's level")
    return Line(flat, levels, ink, scale, digit_height_px(ink), stroke_width_px(ink))


def line_grey_levels(image: Image.Image) -> tuple[np.ndarray, float]:
    """EXIF-upright grey levels (0..255 float), at most MAX_LINE_SIDE_PX on the longer side; and the scale."""
    image = grey_image(ImageOps.exif_transpose(image))
    scale = min(1.0, MAX_LINE_SIDE_PX / max(image.size))
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.convert("F").resize(size, Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float64), scale


def line_components(flat: np.ndarray, levels: normalise.InkLevels) -> np.ndarray:
    """Ink components that reach LINE_STRONG_LEVEL somewhere (not faint lines), minus specks (LINE_SPECK_FRACTION)
    and, on a photo, page edges and shadows along the frame: bool (h, w)."""
    from skimage.measure import label

    components = label(flat > levels.threshold, connectivity=2)
    sizes = np.bincount(components.ravel())
    keep = np.zeros(sizes.size, dtype=bool)
    keep[components[flat >= levels.paper + LINE_STRONG_LEVEL * (levels.ink - levels.paper)]] = True
    keep[0] = False
    if normalise.photo_sized(flat.shape):
        contact = normalise.frame_contact(components, sizes.size)
        keep &= contact <= normalise.FRAME_CONTACT_FRACTION * 2 * sum(flat.shape)
    if not keep.any():
        return np.zeros(flat.shape, dtype=bool)
    keep &= sizes >= LINE_SPECK_FRACTION * sizes[keep].max()
    return keep[components]


def digit_height_px(ink: np.ndarray) -> float:
    """H: the median height of the components at least TALL_FRACTION as tall as the tallest."""
    from scipy import ndimage
    from skimage.measure import label

    heights = np.array([s[0].stop - s[0].start for s in ndimage.find_objects(label(ink, connectivity=2))])
    return float(np.median(heights[heights >= TALL_FRACTION * heights.max()]))


def stroke_width_px(ink: np.ndarray) -> float:
    """Twice the median distance from the ink's skeleton to the paper (≥ 1)."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    skeleton = skeletonize(ink)
    return max(1.0, 2.0 * float(np.median(ndimage.distance_transform_edt(ink)[skeleton]))) if skeleton.any() else 1.0


# --- 3: atoms -----------------------------------------------------------------------------------------------


def line_components_of(line: Line) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """The ink's connected components: (bool mask of the box, box x0, y0, x1, y1)."""
    from scipy import ndimage
    from skimage.measure import label

    components = label(line.ink, connectivity=2)
    return [(components[window] == index, (window[1].start, window[0].start, window[1].stop, window[0].stop))
            for index, window in enumerate(ndimage.find_objects(components), start=1)]


def component_partitions(mask: np.ndarray, box: tuple[int, int, int, int], line: Line) -> list[list[Atom]]:
    """Ways to cut a component into atoms: its slices between seams (the whole component if it is narrow),
    then splits at a junction where two digits touch (each part sliced again if still wide)."""
    whole = [Atom(box, mask, True, 0.0)]
    if mask.shape[1] < MIN_SPLIT_WIDTH * line.height_px or mask.shape[0] < PIECE_HEIGHT * line.height_px:
        return [whole]
    costs = seam_costs(mask)
    partitions = [seam_slices(mask, box, line, whole=True, costs=costs)]
    if mask.shape[1] >= JUNCTION_MIN_WIDTH * line.height_px:
        for left, right, cut_strokes in junction_splits(mask, line, costs[0]):
            atoms = []
            for part, cut in ((left, 0.0), (right, cut_strokes)):
                part_mask, part_box = crop_atom(part, box)
                sliced = seam_slices(part_mask, part_box, line, whole=False) \
                    if part_mask.shape[1] > MAX_DIGIT_WIDTH * line.height_px else [Atom(part_box, part_mask, False, 0.0)]
                atoms += [replace(sliced[0], cut_strokes=cut), *sliced[1:]]
            partitions.append(atoms)
    return partitions


def seam_slices(mask: np.ndarray, box: tuple[int, int, int, int], line: Line, whole: bool,
                costs: SeamCosts | None = None) -> list[Atom]:
    """The slices of (a part of) a component between its cheapest seams; itself when there are none.
    costs: the mask's seam_costs, if already known."""
    wide = mask.shape[1] >= MIN_SPLIT_WIDTH * line.height_px
    seams = cheapest_seams(mask, line, seam_costs(mask) if costs is None else costs) if wide else []
    if not seams:
        return [Atom(box, mask, whole, 0.0)]
    columns = np.arange(mask.shape[1])[None, :]
    bounds = [np.zeros(mask.shape[0], dtype=np.int64)] + [path for path, _ in seams] \
        + [np.full(mask.shape[0], mask.shape[1])]
    costs = [0.0] + [crossed / line.stroke_px for _, crossed in seams]
    atoms = []
    for left, right, cut_strokes in zip(bounds, bounds[1:], costs):
        piece = mask & (columns >= left[:, None]) & (columns < right[:, None])
        if piece.any():
            piece_mask, piece_box = crop_atom(piece, box)
            atoms.append(Atom(piece_box, piece_mask, False, cut_strokes))
    return atoms


def crop_atom(piece: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A part (bool, in `box`'s coordinates) cropped to its own ink: (mask, box)."""
    rows, cols = np.nonzero(piece)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    return piece[y0:y1, x0:x1], (box[0] + int(x0), box[1] + int(y0), box[0] + int(x1), box[1] + int(y1))


def junction_splits(mask: np.ndarray, line: Line, seam_total: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Where the component is thinnest between its left and right ends: the minimum set of ink pixels whose
    removal disconnects its leftmost from its rightmost ink (a minimum vertex cut, by maximum flow), for a few
    widths of those ends (CUT_BANDS). Touching digits come apart at their contacts there, however many and
    however slanted (a 1 under a 5's bar, a 9's tail along an 8), where no straight seam separates them.
    Returns (left part, right part, the cut's size in stroke widths), both parts as tall as digits, each
    division of the ink once (with its smallest cut). seam_total: the mask's seam costs (seam_costs)."""
    total_ink, width = int(mask.sum()), mask.shape[1]
    ends = [(left * width, (1 - right) * width) for left, right in CUT_BANDS]
    reach = CUT_WINDOW * line.height_px  # and cuts within a window around each minimum of the seams' costs
    ends += [(column - reach, column + reach) for column in seam_minima(seam_total, line)]
    step = CUT_STEP * line.height_px  # and around columns every CUT_STEP × H: contacts where no seam is cheap
    ends += [(column - reach, column + reach) for column in np.arange(step, width - step / 2, step)]
    graph = ink_graph(mask)
    found: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
    for left_x, right_x in ends:
        split = min_cut(graph, left_x, right_x, max_cut_px=int(MAX_JUNCTION_STROKES * line.stroke_px))
        if split is None:
            continue
        left, right, n_cut = split
        if min(left.sum(), right.sum()) < MIN_PART_SHARE * total_ink:
            continue
        if min(box_of(left)[3] - box_of(left)[1], box_of(right)[3] - box_of(right)[1]) < PIECE_HEIGHT * line.height_px:
            continue
        key = round(JUNCTION_KEYS * int(right.sum()) / total_ink)
        if key not in found or n_cut / line.stroke_px < found[key][2]:
            found[key] = (left, right, n_cut / line.stroke_px)
    return sorted(found.values(), key=lambda split: split[2])


@dataclass(frozen=True)
class InkGraph:
    """A component's ink as a flow network, built once and cut by min_cut between many pairs of ends: pixel k is
    two nodes, 2k (in) → 2k + 1 (out) with capacity 1, so that cutting a pixel costs 1 and a link between
    8-neighbours (out → in, both ways) nothing; node 2n is the source, 2n + 1 the sink. The source reaches every
    in-node and every out-node reaches the sink, each link at capacity 0 until min_cut opens those of its ends."""

    shape: tuple[int, int]  # the component's mask's
    rows: np.ndarray  # (n,) the ink pixels, row-major
    cols: np.ndarray
    capacities: np.ndarray  # int32: the CSR graph's data, terminal links closed
    indices: np.ndarray  # the CSR graph's structure, sorted within each row
    indptr: np.ndarray
    from_source: np.ndarray  # (n,) where in `capacities` the link source → pixel k's in-node lies
    to_sink: np.ndarray  # (n,) where the link pixel k's out-node → sink lies

    @property
    def n_nodes(self) -> int:
        return 2 * len(self.rows) + 2


def ink_graph(mask: np.ndarray) -> InkGraph:
    """The flow network of a component's ink (bool mask): see InkGraph."""
    from scipy.sparse import csr_array

    rows, cols = np.nonzero(mask)
    n_pixels = len(rows)
    index = np.full(mask.shape, -1, dtype=np.int64)
    index[rows, cols] = np.arange(n_pixels)
    unlimited = n_pixels + 1
    pixels, source, sink = np.arange(n_pixels), 2 * n_pixels, 2 * n_pixels + 1
    sources, targets, capacities = [2 * pixels], [2 * pixels + 1], [np.ones(n_pixels)]
    for d_row, d_col in ((0, 1), (1, -1), (1, 0), (1, 1)):
        r, c = rows + d_row, cols + d_col
        inside = (r < mask.shape[0]) & (c >= 0) & (c < mask.shape[1])
        inside[inside] &= mask[r[inside], c[inside]]
        a, b = np.flatnonzero(inside), index[r[inside], c[inside]]
        sources += [2 * a + 1, 2 * b + 1]
        targets += [2 * b, 2 * a]
        capacities += [np.full(len(a), unlimited)] * 2
    sources += [np.full(n_pixels, source), 2 * pixels + 1]  # the terminal links: the last 2n edges
    targets += [2 * pixels, np.full(n_pixels, sink)]
    capacities += [np.zeros(n_pixels)] * 2
    capacity = np.concatenate(capacities).astype(np.int32)
    n_edges, n_nodes = len(capacity), 2 * n_pixels + 2
    # the CSR structure, with each edge's number as its value: where every edge lands in the CSR's data
    numbered = csr_array((np.arange(1, n_edges + 1), (np.concatenate(sources), np.concatenate(targets))),
                         shape=(n_nodes, n_nodes))
    numbered.sort_indices()
    edge_at = numbered.data - 1
    position = np.empty(n_edges, dtype=np.int64)
    position[edge_at] = np.arange(n_edges)
    return InkGraph(mask.shape, rows, cols, capacity[edge_at], numbered.indices, numbered.indptr,
                    position[n_edges - 2 * n_pixels : n_edges - n_pixels], position[n_edges - n_pixels :])


def min_cut(graph: InkGraph, left_x: float, right_x: float, max_cut_px: int
            ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The fewest ink pixels separating the ink left of column left_x from the ink from column right_x on
    (8-connected): (the left part, the right part: bool masks of the component, both holding the pixels cut,
    which are the contact and so both digits' ink; pixels cut); None when no cut of at most max_cut_px exists."""
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import breadth_first_order, maximum_flow

    n_pixels = len(graph.rows)
    left_end, right_end = np.flatnonzero(graph.cols < left_x), np.flatnonzero(graph.cols >= right_x)
    if not len(left_end) or not len(right_end):
        return None
    capacities = graph.capacities.copy()
    capacities[graph.from_source[left_end]] = n_pixels + 1
    capacities[graph.to_sink[right_end]] = n_pixels + 1
    network = csr_array((capacities, graph.indices, graph.indptr), shape=(graph.n_nodes, graph.n_nodes))
    source = 2 * n_pixels
    flow = maximum_flow(network, source, source + 1)
    if not 0 < flow.flow_value <= max_cut_px:
        return None
    residual = (network - flow.flow).tocsr()  # what can still flow; a reverse edge carries the flow back
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    reached = np.zeros(graph.n_nodes, dtype=bool)
    reached[breadth_first_order(residual, source, directed=True, return_predecessors=False)] = True
    # a pixel entered (its in-node reached) lies left of the cut or on it, one not wholly reached (its out-node)
    # right of it or on it
    entered, passed = reached[0 : 2 * n_pixels : 2], reached[1 : 2 * n_pixels : 2]
    left, right = np.zeros(graph.shape, dtype=bool), np.zeros(graph.shape, dtype=bool)
    left[graph.rows[entered], graph.cols[entered]] = True
    right[graph.rows[~passed], graph.cols[~passed]] = True
    return left, right, int(flow.flow_value)


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def atom_orders(partitions: Sequence[list[list[Atom]]]) -> tuple[list[Atom], list[tuple[int, ...]]]:
    """All atoms, and each combination of the components' partitions as a left-to-right order of atom indices
    (at most MAX_ORDERS: components keep fewer alternatives, from the last, until they fit)."""
    import itertools

    kept = [len(p) for p in partitions]
    while int(np.prod(kept)) > MAX_ORDERS:
        kept[int(np.argmax(kept))] -= 1
    atoms: list[Atom] = []
    choices = []  # per component: per kept partition, its atoms' indices
    for component, n_kept in zip(partitions, kept):
        options = []
        for partition in component[:n_kept]:
            options.append(range(len(atoms), len(atoms) + len(partition)))
            atoms.extend(partition)
        choices.append(options)
    orders = [tuple(sorted((a for chosen in combination for a in chosen), key=lambda a: (atom_centre(atoms[a]), a)))
              for combination in itertools.product(*choices)]
    return atoms, orders


def atom_centre(atom: Atom) -> float:
    return (atom.box[0] + atom.box[2]) / 2


def cheapest_seams(mask: np.ndarray, line: Line, costs: SeamCosts) -> list[tuple[np.ndarray, float]]:
    """The cheapest top-to-bottom seams through a component, up to MAX_CUTS_PER_H per H of its width, left to
    right, each as (column per row, ink pixels crossed); they never cross each other.

    A seam moves at most 1 px sideways per row (SEAM_SIDESTEP each), so it can follow the slanted gap between
    touching digits that overlap in x, where the vertical ink profile has no minimum. costs: seam_costs(mask).
    """
    height_px, width = line.height_px, mask.shape[1]
    margin = max(2, round(MIN_SLICE_WIDTH * height_px))
    total, steps = costs
    seams: list[tuple[np.ndarray, float]] = []
    for end in seam_minima(total, line):
        path = backtrack(steps, end)
        crossed = float(mask[np.arange(len(path)), path].sum())
        if crossed > MAX_CUT_STROKES * line.stroke_px or not (margin <= path.mean() <= width - margin):
            continue
        if any(np.abs(path - other).mean() < line.stroke_px for other, _ in seams):
            continue  # the same cut as one found already
        seams.append((path, crossed))
    seams = sorted(seams, key=lambda s: s[1])[: max(1, int(MAX_CUTS_PER_H * width / height_px))]
    seams.sort(key=lambda s: float(s[0].mean()))
    for previous, current in zip(seams, seams[1:]):  # seams never cross: each stays right of the one before
        np.maximum(current[0], previous[0], out=current[0])
    return seams


def seam_minima(total: np.ndarray, line: Line) -> list[int]:
    """The columns where the cheapest seams end (local minima of their cost `total`, seam_costs' first part), away
    from the component's ends."""
    margin = max(2, round(MIN_SLICE_WIDTH * line.height_px))
    reach = max(2, round(line.stroke_px))
    ends = [c for c in range(margin, len(total) - margin) if total[c] <= total[max(0, c - reach) : c + reach + 1].min()]
    return dedupe_columns(ends, reach)


def seam_costs(mask: np.ndarray) -> SeamCosts:
    """Seam carving's dynamic programme, top to bottom: (the cheapest cost of a seam ending at each bottom
    column, (w,); each row's step from the row above, int8 (h, w), -1/0/+1)."""
    cost = mask.astype(np.float64)
    total = cost[0].copy()
    steps = np.zeros(mask.shape, dtype=np.int8)
    from_left, from_right = np.full(total.size, np.inf), np.full(total.size, np.inf)
    for row in range(1, len(cost)):
        # arriving at column c from c - 1, c or c + 1 of the row above; on a tie the leftmost of those
        from_left[1:], from_right[:-1] = total[:-1] + SEAM_SIDESTEP, total[1:] + SEAM_SIDESTEP
        left = (from_left <= total) & (from_left <= from_right)
        right = ~left & (from_right < total)
        steps[row] = right.astype(np.int8) - left.astype(np.int8)
        total = np.where(left, from_left, np.where(right, from_right, total)) + cost[row]
    return total, steps


def backtrack(steps: np.ndarray, end: int) -> np.ndarray:
    """The columns, top to bottom, of the seam that ends at bottom column `end`."""
    path = np.empty(len(steps), dtype=np.int64)
    path[-1] = end
    for row in range(len(steps) - 1, 0, -1):
        path[row - 1] = path[row] + steps[row, path[row]]
    return path


def dedupe_columns(columns: Sequence[int], min_gap: int) -> list[int]:
    """Runs of neighbouring columns (a flat minimum) → one column each, the run's middle."""
    runs: list[list[int]] = []
    for column in columns:
        if runs and column - runs[-1][-1] <= min_gap:
            runs[-1].append(column)
        else:
            runs.append([column])
    return [run[len(run) // 2] for run in runs]


def is_piece(atom: Atom, line: Line) -> bool:
    return atom.mask.shape[0] < PIECE_HEIGHT * line.height_px


def check_digit_like_parts(boxes: Sequence[tuple[int, int, int, int]], line: Line) -> None:
    """TooManyDigitsError when more than MAX_DIGITS components are digit-like (tall, apart in x)."""
    tall = sorted((b[0], b[2]) for b in boxes if b[3] - b[1] >= PIECE_HEIGHT * line.height_px)
    n_parts, right = 0, -1
    for x0, x1 in tall:
        if x0 >= right - 0.5 * (x1 - x0):  # overlapping by more than half its width: a part of the one before
            n_parts += 1
        right = max(right, x1)
    if n_parts > MAX_DIGITS:
        raise TooManyDigitsError(
            f"too many digits: found {n_parts} digit-like parts, a number here has at most {MAX_DIGITS} "
            "(write one line of digits, or crop the image to it)"
        )


# --- 4, 5: candidates -------------------------------------------------------------------------------------------


def digit_candidates(line: Line, atoms: Sequence[Atom], orders: Sequence[tuple[int, ...]], normalised: bool = True
                     ) -> list[Candidate]:
    """Every run of up to MAX_ATOMS_PER_DIGIT neighbours in some order that could be one digit (contiguous in x,
    tall enough, not too wide), once each, normalised to 28×28 (runs of different atoms holding the same ink,
    from different partitions of a component, are normalised once); normalised=False: pixels None."""
    candidates, seen = [], set()
    made: dict[tuple[tuple[int, int, int, int], bytes], np.ndarray] = {}
    for order in orders:
        for start in range(len(order)):
            for stop in range(start + 1, min(len(order), start + MAX_ATOMS_PER_DIGIT) + 1):
                key = frozenset(order[start:stop])
                run = [atoms[a] for a in order[start:stop]]
                box = union_box(run)
                width, height = (box[2] - box[0]) / line.height_px, (box[3] - box[1]) / line.height_px
                if width > MAX_RUN_WIDTH:
                    break  # longer runs are wider still
                if key in seen or height < PIECE_HEIGHT or not contiguous(run, line):
                    continue
                seen.add(key)
                input_box = (int(box[0] / line.scale), int(box[1] / line.scale),
                             int(np.ceil(box[2] / line.scale)), int(np.ceil(box[3] / line.scale)))
                pixels = None
                if normalised:
                    window, own = run_ink(line, run, box)
                    ink_key = (window, own.tobytes())
                    if ink_key not in made:
                        made[ink_key] = run_pixels(line, window, own)
                    pixels = made[ink_key]
                candidates.append(Candidate(key, input_box, width, height, pixels))
    return candidates


def union_box(atoms: Sequence[Atom]) -> tuple[int, int, int, int]:
    return (min(a.box[0] for a in atoms), min(a.box[1] for a in atoms),
            max(a.box[2] for a in atoms), max(a.box[3] for a in atoms))


def contiguous(atoms: Sequence[Atom], line: Line) -> bool:
    """Whether the atoms leave no gap in x: slices of one component meet, other components overlap the rest or
    lie up to STROKE_GAP × H away (a 4 drawn in two strokes), a piece may be up to PIECE_REACH × H away."""
    ordered = sorted(atoms, key=lambda a: a.box[0])
    right = ordered[0].box[2]
    for atom in ordered[1:]:
        reach = (PIECE_REACH if is_piece(atom, line) or is_piece(ordered[0], line) else STROKE_GAP) * line.height_px
        if atom.box[0] > right + reach:
            return False
        right = max(right, atom.box[2])
    return True


def run_ink(line: Line, atoms: Sequence[Atom], box: tuple[int, int, int, int]
            ) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The window that normalising a run looks at, (top, left, bottom, right): its box and a halo's margin; and the
    run's ink there: bool."""
    x0, y0, x1, y1 = box
    margin = int(np.ceil(max(2.0, normalise.HALO_FRACTION * max(x1 - x0, y1 - y0)))) + 1
    top, left = max(0, y0 - margin), max(0, x0 - margin)
    bottom, right = min(line.flat.shape[0], y1 + margin), min(line.flat.shape[1], x1 + margin)
    own = np.zeros((bottom - top, right - left), dtype=bool)
    for atom in atoms:
        ax0, ay0, ax1, ay1 = atom.box
        own[ay0 - top : ay1 - top, ax0 - left : ax1 - left] |= atom.mask
    return (top, left, bottom, right), own


def run_pixels(line: Line, window: tuple[int, int, int, int], own: np.ndarray) -> np.ndarray:
    """A run's ink (`own`, in `window`: run_ink's) normalised as normalise_digit does a digit: its grey edges
    (those nearer to it than to other ink), a 20 px box, the centre of mass at the centre: uint8 (28, 28)."""
    from scipy import ndimage

    top, left, bottom, right = window
    flat = line.flat[top:bottom, left:right]
    to_own = ndimage.distance_transform_edt(~own)
    keep = normalise.ink_halo(flat, line.levels, own, to_own)
    other = line.ink[top:bottom, left:right] & ~own
    if other.any():  # a neighbour's ink and grey edges stay out
        keep &= to_own < ndimage.distance_transform_edt(~other)
    strokes = normalise.stroke_intensity(flat, line.levels) * keep
    return np.rint(normalise.paste_centred(normalise.fit_box(strokes)) * 255).astype(np.uint8)


def pair_pixels(atoms: Sequence[Atom]) -> np.ndarray:
    """A run's ink, read as two digits: its box scaled (area average, the aspect kept) to fit PAIR_BOX and centred
    in PAIR_SHAPE, ink bright: uint8 (28, 56)."""
    x0, y0, x1, y1 = union_box(atoms)
    ink = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    for atom in atoms:
        ax0, ay0, ax1, ay1 = atom.box
        window = ink[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
        np.maximum(window, atom.mask, out=window)  # atoms cut apart share the cut's pixels
    scale = min(PAIR_BOX[0] / ink.shape[0], PAIR_BOX[1] / ink.shape[1])
    width, height = max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale))
    small = np.asarray(Image.fromarray(ink, mode="F").resize((width, height), Image.Resampling.BOX))
    pixels = np.zeros(PAIR_SHAPE, dtype=np.float32)
    top, left = (PAIR_SHAPE[0] - height) // 2, (PAIR_SHAPE[1] - width) // 2
    pixels[top : top + height, left : left + width] = small
    return np.rint(pixels * 255).astype(np.uint8)


# --- 6: the best path ---------------------------------------------------------------------------------------


def best_path(
    n_atoms: int, runs: Sequence[tuple[int, int]], scores: Sequence[float], cut_costs: Sequence[float],
    skip_costs: Sequence[float | None], sizes: Sequence[int] | None = None,
) -> tuple[float, list[int]]:
    """(total, the runs (indices into `runs`, each (start, stop) of atoms)) that cover atoms 0..n_atoms - 1 left to right,
    each atom in one run or skipped, with the highest total: the runs' scores, minus cut_costs[i] wherever a run
    starts at atom i, minus skip_costs[i] for a skipped atom i (None: it cannot be skipped). Run k counts
    sizes[k] digits (None: 1 each: a pair counts 2); at most MAX_DIGITS digits; NumberError when no path exists.
    """
    sizes = [1] * len(runs) if sizes is None else sizes
    ending_at: dict[int, list[int]] = {}
    for index, (_, stop) in enumerate(runs):
        ending_at.setdefault(stop, []).append(index)
    # best[j, k]: the best total covering atoms 0..j-1 with k digits; back[j, k]: (previous j, previous k, run)
    best = np.full((n_atoms + 1, MAX_DIGITS + 1), -np.inf)
    back: dict[tuple[int, int], tuple[int, int, int | None]] = {}
    best[0, 0] = 0.0
    for stop in range(1, n_atoms + 1):
        if skip_costs[stop - 1] is not None:
            best[stop] = best[stop - 1] - skip_costs[stop - 1]
            back.update({(stop, k): (stop - 1, k, None) for k in range(MAX_DIGITS + 1)})
        for index in ending_at.get(stop, []):
            start, size = runs[index][0], sizes[index]
            total = best[start, : MAX_DIGITS + 1 - size] + scores[index] - cut_costs[start]
            for k in np.flatnonzero(total > best[stop, size:]):
                best[stop, k + size] = total[k]
                back[stop, k + size] = (start, int(k), index)
    if not np.isfinite(best[n_atoms, 1:]).any():
        raise NumberError(f"no number found: the ink cannot be read as {MAX_DIGITS} digits or fewer")
    position, count = n_atoms, int(np.argmax(best[n_atoms, 1:])) + 1
    total = float(best[n_atoms, count])
    chosen = []
    while position > 0:
        position, count, index = back[position, count]
        if index is not None:
            chosen.append(index)
    return total, chosen[::-1]
