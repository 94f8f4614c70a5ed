"""Reading a number (mnist_transfer.data.segment) with stand-in classifiers: the best path's known answers, numbers
composed from MNIST digits and hand-made cases read by an oracle that knows where each digit is (so these test
the geometry, not a model), each digit normalised as a single digit is, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from mnist_transfer.data.compose import (
    MATCH_DISTANCE,
    box_distances,
    box_oracle,
    compose_number,
    pair_distances,
    random_number,
)
from mnist_transfer.data.normalise import InkLevels, NoInkError, normalise_digit
from mnist_transfer.data.segment import (
    MAX_DIGITS,
    NOT_A_PAIR,
    Atom,
    NumberError,
    TooManyDigitsError,
    best_path,
    choose_digits,
    digit_probabilities,
    ink_graph,
    line_components,
    min_cut,
    pair_marginals,
    pair_pixels,
    read_number,
    seam_costs,
    segment_number,
    softened_top,
)
from tests.drawn_digits import bars, drawn


def open_four() -> np.ndarray:
    """A 4 whose bar stops short of its stem (a gap of 5 % of the frame): two components, one digit."""
    image = Image.new("L", (112, 112), 0)
    pen = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in ((0.5, 0.15, 0.25, 0.6), (0.25, 0.6, 0.48, 0.6), (0.62, 0.35, 0.62, 0.85)):
        pen.line([(112 * x0, 112 * y0), (112 * x1, 112 * y1)], fill=255, width=10)
        for x, y in ((x0, y0), (x1, y1)):
            pen.ellipse([112 * x - 5, 112 * y - 5, 112 * x + 5, 112 * y + 5], fill=255)
    return np.asarray(image)


def oracle_reading(composed, image: Image.Image | None = None) -> str:
    """What segmentation reads with a classifier that knows each digit's box."""
    segmentation = segment_number(image or composed.image())
    return choose_digits(segmentation, box_oracle(composed, [c.box for c in segmentation.candidates])).number


def test_a_lines_grey_and_broken_strokes_are_ink_but_faint_lines_and_specks_are_not():
    """line_components keeps what reaches LINE_STRONG_LEVEL of the ink level (one digit needs 0.75) and holds
    LINE_SPECK_FRACTION of the largest component's pixels (one digit needs 0.02)."""
    flat = np.zeros((100, 200))
    flat[10:90, 10:20] = 200  # a bold stroke: 800 px at the ink level
    flat[10:90, 40:50] = 120  # a thin stroke blurred grey: 0.6 of the ink level
    flat[10:12, 70:73] = 200  # a piece of a broken stroke: 6 px, 0.75 % of the bold one
    flat[10:11, 90:93] = 200  # a speck: 3 px
    flat[10:90, 120:130] = 80  # a faint line: above the threshold, below the mid level
    levels = InkLevels(paper=0.0, floor=10.0, ink=200.0, threshold=60.0)
    expected = np.zeros(flat.shape, dtype=bool)
    expected[10:90, 10:20] = expected[10:90, 40:50] = expected[10:12, 70:73] = True
    assert (line_components(flat, levels) == expected).all()


# --- cutting a component ------------------------------------------------------------------------------------


def two_blobs(bridge_rows: int) -> np.ndarray:
    """Two 6×6 squares of ink 4 columns apart, joined by a horizontal bridge `bridge_rows` rows thick."""
    mask = np.zeros((6, 16), dtype=bool)
    mask[:, :6] = mask[:, 10:] = True
    mask[:bridge_rows, 6:10] = True
    return mask


@pytest.mark.parametrize("bridge_rows", [1, 2, 3])
def test_min_cut_cuts_the_bridge_where_it_is_thinnest(bridge_rows):
    mask = two_blobs(bridge_rows)
    on_left, on_right, n_cut = min_cut(ink_graph(mask), 3, 13, max_cut_px=10)
    assert n_cut == bridge_rows  # one pixel per row of the bridge
    assert on_left[:, :6].all() and not on_left[:, 10:].any()
    assert on_right[:, 10:].all() and not on_right[:, :6].any()
    assert (on_left | on_right).sum() == mask.sum()  # every pixel goes somewhere…
    assert (on_left & on_right).sum() == n_cut  # …and the cut pixels to both sides
    assert (on_left & on_right)[bridge_rows:].sum() == 0


def test_min_cut_refuses_cuts_over_the_limit_and_ends_without_ink():
    graph = ink_graph(two_blobs(3))
    assert min_cut(graph, 3, 13, max_cut_px=2) is None  # the bridge needs 3
    assert min_cut(graph, 0, 13, max_cut_px=10) is None  # no ink left of column 0
    assert min_cut(graph, 3, 16, max_cut_px=10) is None  # none from column 16 on
    apart = np.zeros((4, 10), dtype=bool)
    apart[:, :3] = apart[:, 7:] = True
    assert min_cut(ink_graph(apart), 2, 8, max_cut_px=10) is None  # already apart: no cut to make


def test_a_diagonal_contact_is_cut_through_its_eight_connected_pixel():
    mask = np.zeros((4, 4), dtype=bool)
    mask[0:2, 0:2] = mask[2:4, 2:4] = True  # two squares meeting at one corner
    left, right, n_cut = min_cut(ink_graph(mask), 1, 3, max_cut_px=5)
    assert n_cut == 1
    assert (left & right).sum() == 1 and (left | right).sum() == mask.sum()
    assert left[:2, :2].all() and right[2:, 2:].all()


def test_seam_costs_known_answer():
    mask = np.array([[1, 0, 1],
                     [1, 1, 0],
                     [0, 1, 1]], dtype=bool)
    total, steps = seam_costs(mask)
    # row 1 from row 0's [1, 0, 1]: column 0 comes from column 1 (0 + 0.3 sideways + 1 ink), column 1 straight
    # down (0 + 1), column 2 from column 1 (0 + 0.3 + 0): [1.3, 1, 0.3]; row 2: column 0 ties straight down
    # (1.3 + 0) with coming from column 1 (1 + 0.3) and goes straight, column 1 comes from column 2 (0.3 + 0.3
    # + 1), column 2 straight down (0.3 + 1)
    assert total == pytest.approx([1.3, 1.6, 1.3])
    assert steps[1:].tolist() == [[1, 0, -1], [0, 1, 0]]


# --- the best path ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_atoms, runs, scores, expected",
    [
        (2, [(0, 1), (1, 2), (0, 2)], [-0.1, -0.1, -1.0], [0, 1]),  # two sure digits beat one unsure
        (2, [(0, 1), (1, 2), (0, 2)], [-2.0, -2.0, -0.5], [2]),  # one sure digit beats two unsure halves
        (3, [(0, 1), (1, 3), (0, 2), (2, 3)], [-0.1, -0.2, -0.1, -0.5], [0, 1]),  # overlapping choices
    ],
)
def test_best_path_known_answers(n_atoms, runs, scores, expected):
    total, chosen = best_path(n_atoms, runs, scores, [0.0] * n_atoms, [None] * n_atoms)
    assert chosen == expected and total == pytest.approx(sum(scores[k] for k in expected))


def test_best_path_pays_for_cuts_and_skips_only_pieces():
    runs, scores = [(0, 1), (1, 2), (0, 2)], [-0.1, -0.1, -0.5]
    assert best_path(2, runs, scores, [0.0, 1.0], [None, None])[1] == [2]  # the cut before atom 1 costs 1
    assert best_path(2, runs, scores, [0.0, 0.1], [None, None])[1] == [0, 1]
    # atom 1 is a speck: left out at a cost of 0.05 rather than read
    total, chosen = best_path(2, [(0, 1), (1, 2)], [-0.1, -3.0], [0.0, 0.0], [None, 0.05])
    assert chosen == [0] and total == pytest.approx(-0.15)
    with pytest.raises(NumberError):
        best_path(2, [(0, 1)], [-0.1], [0.0, 0.0], [None, None])  # atom 1 can be neither read nor skipped


def test_best_path_reads_at_most_max_digits():
    n = MAX_DIGITS + 1
    with pytest.raises(NumberError, match=str(MAX_DIGITS)):
        best_path(n, [(k, k + 1) for k in range(n)], [-0.1] * n, [0.0] * n, [None] * n)
    runs = [(k, k + 1) for k in range(n)] + [(0, 2)]
    assert len(best_path(n, runs, [-0.1] * n + [-5.0], [0.0] * n, [None] * n)[1]) == MAX_DIGITS


def test_best_path_counts_a_pair_as_two_digits():
    # atoms 0-1 read as one digit (-3), as two digits apart (-2 each) or as a pair (-1): the pair
    total, chosen = best_path(2, [(0, 1), (1, 2), (0, 2), (0, 2)], [-2.0, -2.0, -3.0, -1.0], [0.0, 0.0], [None, None],
                              [1, 1, 1, 2])
    assert chosen == [3] and total == -1.0
    # a pair of atom 0 is the best reading of it, but with a digit for each other atom it makes MAX_DIGITS + 1
    n = MAX_DIGITS
    runs, scores, sizes = [(k, k + 1) for k in range(n)] + [(0, 1)], [-0.1] * n + [5.0], [1] * n + [2]
    assert best_path(n, runs, scores, [0.0] * n, [None] * n, sizes)[1] == list(range(n))
    assert best_path(n - 1, runs[: n - 1] + [(0, 1)], scores[: n - 1] + [5.0], [0.0] * n, [None] * n,
                     [1] * (n - 1) + [2])[1] == [n - 1, *range(1, n - 1)]


def test_pair_pixels_fit_the_ink_into_the_pair_box_known_answer():
    """Ink 10 × 40 px is scaled by min(22/10, 52/40) = 1.3 to 13 × 52 and centred in 28 × 56: rows 7-19, columns
    2-53. Two atoms cut apart (sharing the cut's column) give the same pixels as the whole."""
    whole = Atom((5, 3, 45, 13), np.ones((10, 40), bool), True, 0.0)
    expected = np.zeros((28, 56), np.uint8)
    expected[7:20, 2:54] = 255
    np.testing.assert_array_equal(pair_pixels([whole]), expected)
    left = Atom((5, 3, 26, 13), np.ones((10, 21), bool), False, 0.0)
    right = Atom((25, 3, 45, 13), np.ones((10, 20), bool), False, 1.0)
    np.testing.assert_array_equal(pair_pixels([right, left]), expected)


def test_pair_marginals_known_answer():
    probabilities = np.zeros(NOT_A_PAIR + 1)
    probabilities[[26, 25, 31, NOT_A_PAIR]] = 0.4, 0.2, 0.2, 0.2
    left, right = pair_marginals(probabilities)
    assert left[[2, 3]] == pytest.approx([0.75, 0.25]) and right[[6, 5, 1]] == pytest.approx([0.5, 0.25, 0.25])
    assert left.sum() == pytest.approx(1) and right.sum() == pytest.approx(1)


def test_pair_distances_known_answer():
    composed = compose_number([drawn("1"), drawn("7"), drawn("4")], [1, 7, 4], ["touch", "gap"], np.random.default_rng(0))
    (a, b, c) = composed.boxes
    joint = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    distance = pair_distances(composed, [joint, a])
    assert distance.shape == (2, 2) and distance[0, 0] == 0.0
    height = max(a[3] - a[1], b[3] - b[1])
    assert distance[1, 0] == pytest.approx(max(abs(a[k] - joint[k]) for k in range(4)) / height)
    (triple,) = pair_distances(composed, [(min(a[0], c[0]), min(a[1], b[1], c[1]), max(b[2], c[2]),
                                           max(a[3], b[3], c[3]))], span=3)
    assert triple.shape == (1,) and triple[0] == 0.0


def test_a_pair_classifier_reads_two_digits_no_cut_separates():
    """A 1 touching a 7, a number reader that calls every candidate not one digit (90 %; the rest spread evenly
    over the digits), and a pair classifier sure that the candidate holding both is "17" and every other is not a
    pair: the reading is 1, 7, each in half the pair's box; called not pairs, the reading is what it is without
    them."""
    composed = compose_number([drawn("1"), drawn("7")], [1, 7], ["touch"], np.random.default_rng(0))
    segmentation = segment_number(composed.image())
    assert segmentation.pair_pixels.shape == (len(segmentation.pairs), 28, 56)
    boxes = [segmentation.candidates[k].box for k in segmentation.pairs]
    is_both = pair_distances(composed, boxes)[:, 0] <= MATCH_DISTANCE
    assert is_both.any() and not is_both.all()
    n_candidates = len(segmentation.candidates)
    uniform = np.hstack([np.full((n_candidates, 10), 0.01), np.full((n_candidates, 1), 0.9)])
    pairs = np.zeros((len(boxes), NOT_A_PAIR + 1))
    pairs[is_both, 17], pairs[~is_both, NOT_A_PAIR] = 0.99, 0.99
    pairs += 0.01 / NOT_A_PAIR
    reading = choose_digits(segmentation, uniform, pair_probabilities=pairs)
    assert reading.number == "17" and all(d.confidence > 0.98 for d in reading.digits)
    (x0, y0, x1, y1) = boxes[int(np.flatnonzero(is_both)[0])]
    assert [d.box for d in reading.digits] == [(x0, y0, (x0 + x1) // 2, y1), ((x0 + x1) // 2, y0, x1, y1)]
    assert all(d.normalised.shape == (28, 28) and d.probabilities.shape == (10,) for d in reading.digits)
    not_pairs = np.zeros_like(pairs)
    not_pairs[:, NOT_A_PAIR] = 1.0
    without = choose_digits(segmentation, uniform)
    called_not_pairs = choose_digits(segmentation, uniform, pair_probabilities=not_pairs)
    assert [(d.digit, d.box) for d in called_not_pairs.digits] == [(d.digit, d.box) for d in without.digits]


def test_a_single_digit_the_pair_classifier_calls_a_pair_is_charged_for_it():
    """A 1 touching a 7; the number reader sure that the candidate holding both is one 4 (95 %) and that every
    other is not one digit; the pair classifier sure it is "17". Without Weights.single_not_pair the single 4
    outscores the pair (the pair pays Weights.pair); charged log p(NOT_A_PAIR) ≈ −9 for it, the 4 loses to 1, 7.
    A number reader's probabilities get READER_WEIGHTS by default, which charge it."""
    from dataclasses import replace

    from mnist_transfer.data.segment import NOT_A_DIGIT, READER_WEIGHTS

    composed = compose_number([drawn("1"), drawn("7")], [1, 7], ["touch"], np.random.default_rng(0))
    segmentation = segment_number(composed.image())
    boxes = [segmentation.candidates[k].box for k in segmentation.pairs]
    is_both = pair_distances(composed, boxes)[:, 0] <= MATCH_DISTANCE
    n_candidates = len(segmentation.candidates)
    reader = np.hstack([np.full((n_candidates, 10), 0.01), np.full((n_candidates, 1), 0.9)])
    for k in np.array(segmentation.pairs)[is_both]:
        reader[k] = 0.04 / 9
        reader[k, 4], reader[k, NOT_A_DIGIT] = 0.95, 0.01
    pairs = np.full((len(boxes), NOT_A_PAIR + 1), 0.01 / NOT_A_PAIR)
    pairs[is_both, 17], pairs[~is_both, NOT_A_PAIR] = 0.99, 0.99
    uncharged = choose_digits(segmentation, reader, replace(READER_WEIGHTS, single_not_pair=0.0), pairs)
    assert uncharged.number == "4"
    assert choose_digits(segmentation, reader, READER_WEIGHTS, pairs).number == "17"
    assert choose_digits(segmentation, reader, pair_probabilities=pairs).number == "17"


def test_softened_top_known_answers():
    probabilities = np.array([0.8, 0.2] + [0.0] * 8)
    assert softened_top(probabilities, 1.0) == pytest.approx(np.log(0.8), abs=1e-4)  # floored zeros barely count
    assert softened_top(probabilities, 0.5) == pytest.approx(np.log(2 / 3), abs=0.01)  # √0.8 : √0.2 = 2 : 1
    sure, unsure = np.array([0.999, 0.001] + [0.0] * 8), np.array([0.9, 0.1] + [0.0] * 8)
    # a calibrated classifier's near-certainties differ little in log(top); softened, the margin counts
    assert softened_top(sure, 1.0) - softened_top(unsure, 1.0) == pytest.approx(0.104, abs=0.001)
    assert softened_top(sure, 0.35) - softened_top(unsure, 0.35) > 0.25


# --- composed numbers, the oracle --------------------------------------------------------------------


def test_spaced_numbers_of_every_length_are_read(mnist_arrays):
    images, labels = mnist_arrays["testing"]
    rng = np.random.default_rng(7)
    for length in (1, 2, 3, 5, 8, 12):
        chosen = rng.choice(len(images), size=length, replace=False)
        composed = compose_number(list(images[chosen]), labels[chosen].tolist(), ["gap"] * (length - 1), rng)
        assert oracle_reading(composed) == composed.digits


def test_most_random_numbers_are_read(mnist_arrays):
    """Random gaps, 0 px gaps, overlapping boxes and touching pairs: the right segmentation is among the
    candidates and chosen for most (with a real classifier: benchmarks/numbers.py)."""
    images, labels = mnist_arrays["testing"]
    rng = np.random.default_rng(11)
    numbers = [random_number(images, labels, 4, rng)[0] for _ in range(12)]
    right = [oracle_reading(composed) == composed.digits for composed in numbers]
    touching = [composed.touching for composed in numbers]
    assert np.mean(right) >= 0.6
    assert np.mean([r for r, t in zip(right, touching) if not t]) >= 0.8


@pytest.mark.parametrize(
    "digits, spacings, sources",
    [
        ("17", ["zero"], None),  # a 1 right next to a 7: two digits, not one
        ("71", ["overlap"], None),  # the 1 under the 7's bar
        ("5", [], [drawn("5", detached_hat=True)]),  # the hat joins its 5
        ("552", ["gap", "gap"], [drawn("5", detached_hat=True)] * 2 + [drawn("2")]),
        ("00", ["touch"], None),
        ("14", ["touch"], None),  # the 1 against the 4's arm: a contact no seam minimum points at
        ("111", ["gap", "zero"], None),
        ("4", [], None),
        ("4", [], [open_four()]),  # drawn in two strokes that do not meet: one digit, not two
        ("404", ["gap", "gap"], [open_four(), drawn("0"), open_four()]),
    ],
)
def test_hand_made_cases(digits: str, spacings: list[str], sources):
    sources = sources or [drawn(d) for d in digits]
    composed = compose_number(sources, [int(d) for d in digits], spacings, np.random.default_rng(5))
    assert oracle_reading(composed) == digits


def test_light_ink_on_dark_reads_the_same(mnist_arrays):
    images, labels = mnist_arrays["testing"]
    composed, _ = random_number(images, labels, 4, np.random.default_rng(2))
    assert oracle_reading(composed, ImageOps.invert(composed.image())) == oracle_reading(composed)


def test_boxes_are_in_the_input_images_pixels(mnist_arrays):
    """A photo larger than the working size is reduced; the boxes come back in its own pixels."""
    images, labels = mnist_arrays["testing"]
    composed, _ = random_number(images, labels, 3, np.random.default_rng(4))
    photo = composed.image()
    factor = 3
    large = photo.resize((photo.width * factor, photo.height * factor), Image.Resampling.BICUBIC)
    segmentation = segment_number(large)
    truth = [tuple(factor * v for v in box) for box in composed.boxes]
    scaled = type(composed)(composed.jpeg, composed.digits, tuple(truth), composed.spacings, composed.touches)
    reading = choose_digits(segmentation, box_oracle(scaled, [c.box for c in segmentation.candidates]))
    assert reading.number == composed.digits
    height = truth[0][3] - truth[0][1]
    for found, true in zip((d.box for d in reading.digits), truth):
        assert np.abs(np.array(found) - np.array(true)).max() <= 0.1 * height


def test_each_digit_is_normalised_as_a_single_digit(mnist_arrays):
    """The 28×28 of a digit read in a number is (nearly) what normalise_digit makes of that digit alone."""
    images, labels = mnist_arrays["testing"]
    rng = np.random.default_rng(8)
    chosen = [0, 1, 2]
    composed = compose_number(list(images[chosen]), labels[chosen].tolist(), ["gap", "gap"], rng)
    reading = read_number(composed.image(), lambda batch: box_oracle(composed, boxes_of(batch, composed)))
    assert reading.number == composed.digits
    photo = composed.image()
    boxes = [d.box for d in reading.digits]
    for k, digit in enumerate(reading.digits):
        x0, y0, x1, y1 = digit.box
        left = (boxes[k - 1][2] + x0) // 2 if k else 0  # halfway to the neighbours: the digit alone
        right = (x1 + boxes[k + 1][0]) // 2 if k + 1 < len(boxes) else photo.width
        alone = normalise_digit(photo.crop((left, 0, right, photo.height)))
        assert shifted_difference(alone, digit.normalised) < 6


def shifted_difference(first: np.ndarray, second: np.ndarray) -> float:
    """Mean absolute difference of two 28×28s, at the best of the shifts by up to 1 px (centring rounds)."""
    return min(float(np.abs(np.roll(first.astype(int), (dy, dx), axis=(0, 1)) - second.astype(int)).mean())
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def boxes_of(batch: np.ndarray, composed) -> list[tuple[int, int, int, int]]:
    """For a classify() stand-in: the last segmentation's candidate boxes (read_number classifies those)."""
    segmentation = segment_number(composed.image())
    assert batch.shape == (len(segmentation.candidates), 28, 28) and batch.dtype == np.uint8
    return [c.box for c in segmentation.candidates]


def test_reading_reports_each_digit_left_to_right():
    composed = compose_number([drawn("7"), drawn("4"), drawn("1")], [7, 4, 1], ["gap", "gap"], np.random.default_rng(1))
    reading = read_number(composed.image(), lambda batch: box_oracle(composed, boxes_of(batch, composed)))
    assert reading.number == "741"
    assert [d.box[0] for d in reading.digits] == sorted(d.box[0] for d in reading.digits)
    assert reading.confidence == pytest.approx(np.prod([d.confidence for d in reading.digits]))
    assert all(d.normalised.shape == (28, 28) and d.normalised.dtype == np.uint8 for d in reading.digits)
    assert all(d.probabilities.shape == (10,) for d in reading.digits)


# --- errors -----------------------------------------------------------------------------------------------


def uniform_classifier(batch: np.ndarray) -> np.ndarray:
    return np.full((len(batch), 10), 0.1)


def test_a_blank_image_has_no_number():
    with pytest.raises(NoInkError, match="no digit found"):
        read_number(Image.new("L", (300, 100), 240), uniform_classifier)


def test_more_than_twelve_digits_is_an_error():
    assert len(read_number(bars(MAX_DIGITS), uniform_classifier).digits) == MAX_DIGITS
    with pytest.raises(TooManyDigitsError, match=f"found {MAX_DIGITS + 1} digit-like parts.*at most {MAX_DIGITS}"):
        read_number(bars(MAX_DIGITS + 1), uniform_classifier)


def test_specks_are_not_digits():
    image = bars(2)
    pen = ImageDraw.Draw(image)
    pen.ellipse([170, 70, 176, 76], fill=0)  # a dot of ink beside the second bar
    assert len(read_number(image, uniform_classifier).digits) == 2


# --- a number reader's 11th class ---------------------------------------------------------------------------


def test_digit_probabilities_known_answers():
    ten = np.array([[0.5, 0.5] + [0.0] * 8])
    digits, not_digit = digit_probabilities(ten)
    assert digits is ten and not_digit.tolist() == [0.0]
    digits, not_digit = digit_probabilities(np.array([[0.3, 0.1] + [0.0] * 8 + [0.6]]))
    assert digits[0, :2] == pytest.approx([0.75, 0.25]) and not_digit == pytest.approx([0.6])
    with pytest.raises(ValueError, match="expected"):
        digit_probabilities(np.ones((1, 12)) / 12)


def test_the_not_a_digit_class_vetoes_a_candidate():
    """A 1 touching a 7, and a classifier sure that every candidate other than the true digits' is a 4 but only
    60 % sure of the true ones: with 10 classes that reads 4s; the same digit probabilities with those candidates
    called not one digit read "17", and with none called so, the 4s again."""
    composed = compose_number([drawn("1"), drawn("7")], [1, 7], ["touch"], np.random.default_rng(0))
    segmentation = segment_number(composed.image())
    distance = box_distances(composed, [c.box for c in segmentation.candidates])
    true_digit = np.where(distance.min(axis=1) <= MATCH_DISTANCE, distance.argmin(axis=1), -1)
    assert set(true_digit.tolist()) == {-1, 0, 1}
    digits = np.full((len(true_digit), 10), 0.02 / 9)
    digits[true_digit < 0, 4] = 0.98
    digits[true_digit >= 0] = 0.4 / 9
    digits[true_digit == 0, 1] = digits[true_digit == 1, 7] = 0.6
    assert set(choose_digits(segmentation, digits).number) == {"4"}
    read = lambda p_other: choose_digits(segmentation, np.hstack([digits * (1 - p_other), p_other])).number  # noqa: E731
    assert read(np.where(true_digit < 0, 0.99, 0.0)[:, None]) == "17"
    assert set(read(np.zeros((len(digits), 1)))) == {"4"}
    reading = choose_digits(segmentation, np.hstack([digits * 0.99, np.full((len(digits), 1), 0.01)]))
    assert all(d.probabilities.shape == (10,) and d.probabilities.sum() == pytest.approx(1) for d in reading.digits)
