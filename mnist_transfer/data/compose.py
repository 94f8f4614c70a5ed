"""Photos of handwritten numbers composed from single digits (MNIST's, or drawn), with the known answer.

For the tests and benchmarks/numbers.py: digits placed left to right with random gaps (0 px included),
overlapping boxes and touching pairs (1–3 px of ink shared), size variation and a slight baseline slope,
then rendered as a phone photo (dark ink on grey paper, faint grid lines, noise, blur, JPEG) as
tests/conftest.py's photo_of_digit does for one digit. Deterministic for a numpy Generator.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

SPACINGS = ("gap", "zero", "overlap", "touch")  # between two neighbours: see place_next
SPACING_WEIGHTS = (0.55, 0.1, 0.15, 0.2)  # how often each is drawn by random_number
INK_LEVEL = 0.5  # a source pixel at or above this share of full ink is ink (for contacts and boxes)
STRONG_LEVEL = 0.8  # a digit's true box holds the ink components that reach this level somewhere…
SPECK_FRACTION = 0.05  # …and hold at least this share of the largest one's pixels
MAX_CONTACT = 0.2  # touching digits meet over at most this share of the digit's height (not side by side)
ORACLE_TOLERANCE = 0.15  # box_oracle: edges this share of the digit height off cost a factor e
MATCH_DISTANCE = 0.12  # failure_cause: a candidate whose edges all lie within this share of a digit's height is it


@dataclass(frozen=True)
class PhotoStyle:
    """How a composed number is drawn and photographed (ranges are drawn uniformly per number)."""

    unit_px: tuple[float, float] = (3.0, 5.0)  # photo pixels per source pixel (a 28 px frame): digits ~55-110 px tall
    size_variation: float = 0.12  # each digit scaled by 1 ± up to this
    slope: float = 0.04  # baseline slope, up to ± this (dy/dx)
    jitter: float = 0.04  # each digit moved up or down by up to this share of the digit height
    gap: tuple[float, float] = (0.08, 0.45)  # "gap": box gap, as a share of the digit height
    paper: tuple[float, float] = (150.0, 210.0)
    ink: tuple[float, float] = (20.0, 70.0)
    grid_probability: float = 0.5  # squared paper
    noise_sigma: float = 6.0
    blur_px: tuple[float, float] = (0.8, 1.5)
    jpeg_quality: int = 85


@dataclass(frozen=True)
class ComposedNumber:
    """A photo of a number and its truth."""

    jpeg: bytes  # the photo as a JPEG file
    digits: str  # e.g. "2026"
    boxes: tuple[tuple[int, int, int, int], ...]  # each digit's ink box in the photo: x0, y0, x1, y1 (x1, y1 exclusive)
    spacings: tuple[str, ...]  # (len(digits) - 1,) how each neighbour pair was placed (SPACINGS)
    touches: tuple[bool, ...]  # (len(digits) - 1,) whether digit k + 1's ink meets ink already there

    @property
    def touching(self) -> bool:
        """Whether two digits share ink (placed to touch, or met anyway)."""
        return any(self.touches)

    def image(self) -> Image.Image:
        """The photo, decoded ('L')."""
        return Image.open(io.BytesIO(self.jpeg)).convert("L")


@dataclass
class Canvas:
    """Ink (0..1) of the digits placed so far, on a sheet larger than they need."""

    ink: np.ndarray  # float (h, w)
    boxes: list[tuple[int, int, int, int]]  # placed digits' ink boxes, canvas coordinates

    @property
    def right_px(self) -> int:
        return max(box[2] for box in self.boxes)


def ink_patch(source: np.ndarray, scale: float) -> np.ndarray:
    """A source digit (white on black, any size) cropped to its ink and scaled: float (h, w) in 0..1."""
    rows, cols = np.nonzero(source > 0)
    crop = source[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].astype(np.float32) / 255
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return np.clip(np.asarray(Image.fromarray(crop, mode="F").resize(size, Image.Resampling.BILINEAR)), 0.0, 1.0)


def ink_box(patch: np.ndarray) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 (exclusive) of the patch's pen strokes: its ink components that reach STRONG_LEVEL
    somewhere and are not specks (faint strokes and dots of MNIST's scans are no part of the visible digit)."""
    from skimage.measure import label

    components = label(patch >= INK_LEVEL, connectivity=2)
    sizes = np.bincount(components.ravel())
    keep = np.zeros(sizes.size, dtype=bool)
    keep[components[patch >= STRONG_LEVEL]] = True
    keep[0] = False
    keep &= sizes >= SPECK_FRACTION * sizes[keep].max()
    rows, cols = np.nonzero(keep[components])
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def contacts(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> int:
    """How many of the patch's ink pixels would land on ink already on the canvas at (top, left)."""
    region = canvas[top : top + patch.shape[0], left : left + patch.shape[1]]
    return int(np.count_nonzero((region >= INK_LEVEL) & (patch >= INK_LEVEL)))


def first_free_left(canvas: Canvas, patch: np.ndarray, top: int) -> int:
    """The leftmost x from the previous box's right edge leftwards at which the patch's ink touches nothing."""
    left = canvas.right_px
    while left > 0 and contacts(canvas.ink, patch, top, left - 1) == 0 and left - 1 > canvas.boxes[-1][0]:
        left -= 1
    return left


def place_next(canvas: Canvas, patch: np.ndarray, top: int, spacing: str, gap_px: int, rng: np.random.Generator) -> int:
    """The left edge for the next digit.

    gap: box gap_px right of the previous digits; zero: boxes adjacent; overlap: as far left as the inks stay
    apart (by 2 px), which makes the boxes overlap when the shapes allow it; touch: where the inks first meet,
    then 1–3 px further (ink shared), as long as they meet over at most MAX_CONTACT of the digit's height —
    strokes that run side by side touch where they first meet, they are not merged along their length.
    """
    if spacing == "gap":
        return canvas.right_px + gap_px
    if spacing == "zero":
        return canvas.right_px
    free = first_free_left(canvas, patch, top)
    if spacing == "overlap":
        return min(free + 2, canvas.right_px)
    left = free - 1  # the inks meet here, unless first_free_left stopped at the previous box's left edge
    if contacts(canvas.ink, patch, top, left) == 0:
        return free
    for _ in range(int(rng.integers(0, 3))):
        if left <= 0 or contact_rows(canvas.ink, patch, top, left - 1) > MAX_CONTACT * patch.shape[0]:
            break
        left -= 1
    return left


def contact_rows(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> int:
    """Over how many rows the patch's ink would overlap ink already on the canvas at (top, left)."""
    region = canvas[top : top + patch.shape[0], left : left + patch.shape[1]]
    return int(np.count_nonzero(((region >= INK_LEVEL) & (patch >= INK_LEVEL)).any(axis=1)))


def compose_number(
    sources: Sequence[np.ndarray], labels: Sequence[int], spacings: Sequence[str], rng: np.random.Generator,
    style: PhotoStyle = PhotoStyle(),
) -> ComposedNumber:
    """Lay out the digits (uint8 white-on-black frames, any size; MNIST's are 28×28) with the given spacings
    between neighbours and photograph them."""
    if len(spacings) != len(sources) - 1 or not set(spacings) <= set(SPACINGS):
        raise ValueError(f"need {len(sources) - 1} spacings out of {SPACINGS}, got {list(spacings)}")
    unit_px = rng.uniform(*style.unit_px)
    patches = [ink_patch(s, unit_px * 28 / s.shape[0] * rng.uniform(1 - style.size_variation, 1 + style.size_variation))
               for s in sources]
    height_px = round(28 * unit_px)  # a digit's frame height on the photo: scales gaps and margins
    canvas = Canvas(np.zeros((3 * height_px, sum(p.shape[1] for p in patches) + 2 * height_px * len(patches))), [])
    slope = rng.uniform(-style.slope, style.slope)
    touches: list[bool] = []
    for index, patch in enumerate(patches):
        x_px = canvas.right_px if index else height_px  # about where it goes: the slope needs no more
        centre_y = 1.5 * height_px + slope * (x_px - height_px) + rng.uniform(-style.jitter, style.jitter) * height_px
        top = int(round(centre_y - patch.shape[0] / 2))
        gap_px = round(rng.uniform(*style.gap) * height_px)
        left = place_next(canvas, patch, top, spacings[index - 1], gap_px, rng) if index else height_px
        if index:
            touches.append(contacts(canvas.ink, patch, top, left) > 0)
        region = canvas.ink[top : top + patch.shape[0], left : left + patch.shape[1]]
        np.maximum(region, patch, out=region)
        x0, y0, x1, y1 = ink_box(patch)
        canvas.boxes.append((left + x0, top + y0, left + x1, top + y1))
    jpeg, boxes = photograph(canvas, height_px, rng, style)
    return ComposedNumber(jpeg, "".join(str(label) for label in labels), boxes, tuple(spacings), tuple(touches))


def photograph(canvas: Canvas, height_px: int, rng: np.random.Generator, style: PhotoStyle
               ) -> tuple[bytes, tuple[tuple[int, int, int, int], ...]]:
    """The canvas cropped to the digits plus a margin, as a JPEG photo; the boxes in its coordinates."""
    x0, y0 = min(b[0] for b in canvas.boxes), min(b[1] for b in canvas.boxes)
    x1, y1 = max(b[2] for b in canvas.boxes), max(b[3] for b in canvas.boxes)
    margin = [round(rng.uniform(0.25, 0.6) * height_px) for _ in range(4)]  # left, top, right, bottom
    ink = np.pad(canvas.ink[y0:y1, x0:x1], ((margin[1], margin[3]), (margin[0], margin[2])))
    page = np.full(ink.shape, rng.uniform(*style.paper))
    if rng.random() < style.grid_probability:
        step = int(rng.integers(18, 30))
        page[int(rng.integers(0, step)) :: step, :] -= 25
        page[:, int(rng.integers(0, step)) :: step] -= 25
    page = page - (page - rng.uniform(*style.ink)) * ink
    page += rng.normal(0, style.noise_sigma, page.shape)
    photo = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(*style.blur_px)))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=style.jpeg_quality)
    shift_x, shift_y = margin[0] - x0, margin[1] - y0
    boxes = tuple((b[0] + shift_x, b[1] + shift_y, b[2] + shift_x, b[3] + shift_y) for b in canvas.boxes)
    return buffer.getvalue(), boxes


def random_spacings(n_digits: int, rng: np.random.Generator, weights: Sequence[float] = SPACING_WEIGHTS
                    ) -> tuple[str, ...]:
    return tuple(rng.choice(SPACINGS, size=n_digits - 1, p=weights).tolist())


def random_number(
    images: np.ndarray, labels: np.ndarray, n_digits: int, rng: np.random.Generator, style: PhotoStyle = PhotoStyle(),
    spacing_weights: Sequence[float] = SPACING_WEIGHTS,
) -> tuple[ComposedNumber, np.ndarray]:
    """A number of n_digits random digits of `images` (uint8 (n, 28, 28), e.g. MNIST's test set), neighbours spaced
    as drawn with spacing_weights (one per SPACINGS); and which digits."""
    chosen = rng.choice(len(images), size=n_digits, replace=False)
    spacings = random_spacings(n_digits, rng, spacing_weights)
    return compose_number(list(images[chosen]), labels[chosen].tolist(), spacings, rng, style), chosen


def box_distances(composed: ComposedNumber, boxes: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """How far each box is from each true digit's box: its worst edge's distance / that digit's height,
    (n_boxes, n_digits)."""
    truth = np.array(composed.boxes, dtype=np.float64)  # (n_digits, 4)
    found = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    return np.abs(found[:, None, :] - truth[None, :, :]).max(axis=2) / (truth[:, 3] - truth[:, 1])[None, :]


def pair_distances(composed: ComposedNumber, boxes: Sequence[tuple[int, int, int, int]], span: int = 2) -> np.ndarray:
    """How far each box is from each run of `span` neighbouring digits' joint box (the union of theirs): its worst
    edge's distance / the tallest one's height, (n_boxes, n_digits - span + 1)."""
    truth = np.array(composed.boxes, dtype=np.float64).reshape(-1, 4)
    runs = np.stack([truth[start:len(truth) - span + 1 + start] for start in range(span)])  # (span, n_runs, 4)
    joint = np.concatenate([runs[..., :2].min(axis=0), runs[..., 2:].max(axis=0)], axis=1)
    heights = (runs[..., 3] - runs[..., 1]).max(axis=0)
    found = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    return np.abs(found[:, None, :] - joint[None, :, :]).max(axis=2) / heights[None, :]


def box_oracle(composed: ComposedNumber, boxes: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """Probabilities from where candidate digits are, not what they look like: a box whose edges lie within a
    few % of the digit height of a true digit's box gets that digit, the surer the closer (exp(-(d / 0.15)²),
    d: box_distances), the rest spread evenly; (n, 10). An ideal classifier: what segmentation reads with it
    is the best it can do."""
    distance = box_distances(composed, boxes)  # (n, n_digits)
    best = distance.argmin(axis=1)
    confidence = np.clip(np.exp(-((distance.min(axis=1) / ORACLE_TOLERANCE) ** 2)), 1e-4, 0.999)
    probabilities = np.tile(((1 - confidence) / 9)[:, None], (1, 10))
    probabilities[np.arange(len(boxes)), np.array([int(d) for d in composed.digits])[best]] = confidence
    return probabilities


def failure_cause(composed: ComposedNumber, boxes: Sequence[tuple[int, int, int, int]], read: Sequence[int]) -> str:
    """Why a number was read wrong, given every candidate digit's box and the class the classifier gave it:
    "no candidate" (some true digit has no candidate within MATCH_DISTANCE: segmentation never offered it),
    "misread" (every digit has one, but the classifier misreads a digit's closest) or "path" (all of those read
    right: the reading chose other candidates)."""
    distance = box_distances(composed, boxes)
    closest = distance.argmin(axis=0)  # per true digit
    if (distance[closest, np.arange(len(closest))] > MATCH_DISTANCE).any():
        return "no candidate"
    if any(int(read[k]) != int(digit) for k, digit in zip(closest, composed.digits)):
        return "misread"
    return "path"
