"""Turn any digit image (a photo, a scan, a drawing) into what MNIST looks like, with MNIST's own recipe.

White ink on black, the ink's longer side scaled to 20 px keeping its aspect ratio (anti-aliased), pasted
into 28×28 with its centre of mass at the centre. Before that: EXIF orientation, grey levels, polarity
(ink darker than the paper around it is inverted), removal of the paper's background (uneven lighting,
shading), suppression of paper texture, noise and faint grid lines (Otsu threshold, a contrast stretch that
keeps anti-aliased grey edges), and the choice of the digit among the ink's connected components (one
cluster of strokes near the middle: not shadows, bleed-through, page edges or specks at the border).
An image that is already MNIST-like comes out (almost) unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from mnist_transfer.data.idx import IMAGE_SIDE_PX
from mnist_transfer.data.images import ImageReadError, ImageTooLargeError, grey_image, image_from_bytes, read_image  # noqa: F401 (re-exported)
from mnist_transfer.errors import DataError

BOX_SIDE_PX = 20  # MNIST fits each digit's longer side into a 20×20 box…
CENTRE_PX = 14.0  # …and puts its centre of mass here (scipy.ndimage.center_of_mass convention; MNIST's mean)
MAX_WORKING_SIDE_PX = 512  # larger images are reduced first: the output is 28 px anyway
MIN_CONTRAST = 32.0  # ink must stand out from the paper by this many grey levels (of 255)…
NOISE_SIGMAS = 6.0  # …and by this many times the paper's noise
FLOOR_SIGMAS = 3.0  # paper noise below median + this many sigmas is set to black
MIN_FLOOR_FRACTION = 0.05  # and at least this share of the ink contrast (JPEG ringing, faint grid lines)
INK_PERCENTILE = 90  # this percentile of the ink pixels becomes full white
SPECK_FRACTION = 0.02  # ink components smaller than this share of the digit's main one are specks
HALO_FRACTION = 0.1  # grey edges are kept within this share of the ink's size (px) of the ink
BINARISE_BELOW_SCALE = 0.5  # shrinking by 2× or more: cut the strokes at MID_LEVEL before area-averaging
MID_LEVEL = 0.5  # between paper (0) and ink (1): where a blurred stroke's true edge lies
MIN_STROKE_FRACTION = 0.12  # MNIST's median stroke width / the digit's longer side (1,000 test digits)
POLARITY_SIDE_PX = 32  # polarity is judged on a copy this small (fast; the lighting is smooth anyway)
BACKGROUND_FRACTION = 1 / 3  # the paper's background: a grey opening with a square this share of the shorter side
MAX_GAIN = 3.0  # shaded paper's ink contrast is raised at most this much (2:1 lighting needs 2)
STRONG_LEVEL = 0.75  # between paper (0) and ink (1): a pen's stroke reaches this level somewhere
CENTRE_SPREAD = 0.6  # a component this far off-centre (share of the half-frame) counts 1/e of its ink
CLUSTER_GAP_FRACTION = 0.2  # strokes closer than this share of the frame's shorter side belong together
FRAME_CONTACT_FRACTION = 0.1  # ink along more than this share of the image's border: a page edge


class NoInkError(DataError):
    """An image holds no digit: blank, uniform or noise only."""


@dataclass(frozen=True)
class InkLevels:
    """Grey levels (0..255, ink bright) that separate paper from ink."""

    paper: float  # the paper's median level
    floor: float  # at or below: paper (black in the output)
    ink: float  # at or above: full ink (white in the output)
    threshold: float  # above it, a pixel is ink for the component analysis (Otsu's; photos: at least mid-level)


def normalise_digit(image: Image.Image) -> np.ndarray:
    """Any digit image → uint8 (28, 28), white ink on black, MNIST's size normalisation and centring."""
    grey, light_paper = ink_bright(grey_levels(image))  # (h, w) float, 0..255, ink bright
    flat = flatten_paper(grey, light_paper)  # light paper's uneven lighting and shading removed
    levels = ink_levels(flat)
    ink = digit_components(flat, levels)
    strokes = stroke_intensity(flat, levels) * ink_halo(flat, levels, ink)  # (h, w) in 0..1
    box = fit_box(strokes)
    return np.rint(paste_centred(box) * 255).astype(np.uint8)


def grey_levels(image: Image.Image) -> np.ndarray:
    """EXIF-upright grey levels (0..255 float); transparency flattened onto a contrasting paper."""
    image = grey_image(ImageOps.exif_transpose(image))  # 'L': any mode, 16-bit, float, transparency
    if max(image.size) > MAX_WORKING_SIDE_PX:
        scale = MAX_WORKING_SIDE_PX / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.convert("F").resize(size, Image.Resampling.BOX)  # area average: anti-aliased
    return np.asarray(image, dtype=np.float64)


def ink_bright(grey: np.ndarray) -> tuple[np.ndarray, bool]:
    """(grey levels with the ink bright, whether they were inverted): ink darker than the paper is inverted.

    On a small copy, the residual from the local median (the paper) beyond the noise: the ink is the side
    that holds more of it (a brightness gradient or a page edge shifts the global levels, not this).
    """
    from scipy import ndimage

    if np.ptp(grey) < MIN_CONTRAST:
        raise NoInkError("no digit found: the image is (nearly) uniform")
    factor = max(1, int(np.ceil(max(grey.shape) / POLARITY_SIDE_PX)))
    row_factor, col_factor = min(factor, grey.shape[0]), min(factor, grey.shape[1])  # a thin strip keeps 1 px
    rows, cols = grey.shape[0] // row_factor, grey.shape[1] // col_factor
    small = grey[: rows * row_factor, : cols * col_factor].reshape(rows, row_factor, cols, col_factor).mean(axis=(1, 3))
    residual = small - ndimage.median_filter(small, size=background_window_px(small.shape), mode="nearest")
    noise = 1.4826 * float(np.median(np.abs(residual)))  # robust sigma (MAD): the paper is most of the image
    darker = np.clip(-residual - FLOOR_SIGMAS * noise, 0.0, None).sum()
    brighter = np.clip(residual - FLOOR_SIGMAS * noise, 0.0, None).sum()
    return (255.0 - grey, True) if darker > brighter else (grey, False)


def background_window_px(shape: tuple[int, ...]) -> int:
    """A square wider than any stroke, so that it always sees paper: a third of the shorter side."""
    return max(3, round(BACKGROUND_FRACTION * min(shape)))


def flatten_paper(grey: np.ndarray, light_paper: bool) -> np.ndarray:
    """Bright ink on light paper (inverted) → paper ≈ 0 everywhere, ink at its contrast on typical paper.

    1. The background is a grey opening with a square wider than any stroke: the ink goes, the lighting stays.
    2. The ink's contrast scales with the light, so where the paper is shaded it is raised to the typical
       paper's (at most MAX_GAIN×).
    Dark paper (screens, MNIST) is not lit unevenly: it is returned as it is (an opening would dim thick strokes).
    """
    from scipy import ndimage

    if not light_paper:
        return grey
    background = ndimage.grey_opening(grey, size=background_window_px(grey.shape))
    lit = np.maximum(255.0 - background, 1.0)  # the paper's brightness in the photo
    gain = np.clip(float(np.median(lit)) / lit, 1.0 / MAX_GAIN, MAX_GAIN)
    return (grey - background) * gain


def ink_levels(flat: np.ndarray) -> InkLevels:
    """Measure the flattened paper and ink; no digit when the ink does not stand out from the paper's noise."""
    from skimage.filters import threshold_otsu

    if np.ptp(flat) < MIN_CONTRAST:  # e.g. only a page edge: the background holds all the contrast
        raise NoInkError(f"no digit found: nothing stands out from the paper (contrast {np.ptp(flat):.0f} of 255)")
    otsu = float(threshold_otsu(flat))
    paper_pixels, ink_pixels = flat[flat <= otsu], flat[flat > otsu]
    paper = float(np.median(paper_pixels))
    noise = 1.4826 * float(np.median(np.abs(paper_pixels - paper)))  # robust sigma (MAD) of the paper
    # Otsu again within the ink: faint lines (grid, ruled, bleed-through) can outnumber thin strokes
    strong_pixels = ink_pixels[ink_pixels > threshold_otsu(ink_pixels)] if np.ptp(ink_pixels) > 0 else ink_pixels
    ink = max(float(np.percentile(ink_pixels, INK_PERCENTILE)), float(np.median(strong_pixels)))
    contrast = ink - paper
    if contrast < max(MIN_CONTRAST, NOISE_SIGMAS * noise):
        raise NoInkError(f"no digit found: nothing stands out from the paper (contrast {contrast:.0f} of 255)")
    floor = paper + max(FLOOR_SIGMAS * noise, MIN_FLOOR_FRACTION * contrast)
    # faint lines may pass Otsu's threshold, not the mid-level; fit_box cuts a photo's strokes there anyway
    threshold = max(otsu, paper + MID_LEVEL * contrast) if photo_sized(flat.shape) else otsu
    return InkLevels(paper=paper, floor=floor, ink=ink, threshold=threshold)


def stroke_intensity(grey: np.ndarray, levels: InkLevels) -> np.ndarray:
    """Paper → 0, ink → 1, grey edges kept; levels just above the paper's noise ramp steeply to zero."""
    span = levels.ink - levels.paper
    stretched = np.clip((grey - levels.paper) / span, 0.0, 1.0)
    floor = (levels.floor - levels.paper) / span
    # below the floor: paper; from floor to 2·floor a ramp from 0 to 2·floor; above: unchanged (MNIST's greys)
    return np.where(stretched >= 2 * floor, stretched, np.clip(2 * (stretched - floor), 0.0, None))


def digit_components(flat: np.ndarray, levels: InkLevels) -> np.ndarray:
    """The digit's ink, bool (h, w): one cluster of strokes near the middle of what the user framed.

    1. Candidates: connected components above the threshold that reach STRONG_LEVEL somewhere (a pen's
       stroke does; bleed-through, shadows and faint grid lines do not).
    2. The anchor: the candidate with the most ink, discounted by its distance from the frame's centre; on a
       photo, never one that runs along the frame (a page edge, the table).
    3. Specks go; on a photo so do other components touching the frame (page edges, fingers, dust).
    4. The rest joins the anchor if within CLUSTER_GAP_FRACTION of the frame of it, chain-wise (a 5's bar).
    """
    from scipy import ndimage
    from skimage.measure import label

    components = label(flat > levels.threshold, connectivity=2)
    sizes = np.bincount(components.ravel())  # (n_components + 1,); [0]: the paper
    strong = np.zeros(sizes.size, dtype=bool)
    strong[components[flat >= levels.paper + STRONG_LEVEL * (levels.ink - levels.paper)]] = True
    strong[0] = False
    contact = frame_contact(components, sizes.size) if photo_sized(flat.shape) else np.zeros_like(sizes)
    along_frame = contact > FRAME_CONTACT_FRACTION * 2 * sum(flat.shape)
    if not (strong & ~along_frame).any():
        raise NoInkError("no digit found: only page edges or shadows along the image's border")
    anchor = anchor_component(flat, components, strong & ~along_frame)
    keep = strong & (sizes >= SPECK_FRACTION * sizes[anchor]) & (contact == 0)
    keep[anchor] = True  # a tightly framed digit may touch the frame
    candidates = keep[components]
    if np.count_nonzero(keep) == 1:
        return candidates  # the anchor alone: nothing to join
    near = ndimage.distance_transform_edt(~candidates) <= CLUSTER_GAP_FRACTION * min(flat.shape) / 2
    clusters = label(near, connectivity=2)
    return candidates & (clusters == clusters[components == anchor][0])


def frame_contact(components: np.ndarray, n_labels: int) -> np.ndarray:
    """How many pixels of each component (by label, 0..n_labels-1) lie on the image's outermost ring."""
    ring = np.concatenate([components[0, :], components[-1, :], components[1:-1, 0], components[1:-1, -1]])
    return np.bincount(ring, minlength=n_labels)


def photo_sized(shape: tuple[int, ...]) -> bool:
    """Large enough that fit_box cuts the strokes at mid-level (an MNIST-sized image keeps its greys)."""
    return min(shape) * BINARISE_BELOW_SCALE >= BOX_SIDE_PX


def anchor_component(flat: np.ndarray, components: np.ndarray, candidate: np.ndarray) -> int:
    """The label of the candidate component with the most ink × closeness to the frame's centre."""
    labels, weights = components.ravel(), flat.ravel()
    rows, cols = np.indices(flat.shape)
    mass = np.bincount(labels, weights=weights)
    centre_row = np.bincount(labels, weights=rows.ravel() * weights) / np.maximum(mass, 1e-9)
    centre_col = np.bincount(labels, weights=cols.ravel() * weights) / np.maximum(mass, 1e-9)
    half_row, half_col = max(1.0, (flat.shape[0] - 1) / 2), max(1.0, (flat.shape[1] - 1) / 2)
    offset = np.hypot(centre_row / half_row - 1, centre_col / half_col - 1)  # 0: the centre, 1: an edge's middle
    score = np.where(candidate, mass * np.exp(-((offset / CENTRE_SPREAD) ** 2)), -np.inf)
    return int(np.argmax(score))


def ink_halo(grey: np.ndarray, levels: InkLevels, ink: np.ndarray, to_ink: np.ndarray | None = None) -> np.ndarray:
    """The ink plus the grey edges attached to it (above the floor, connected, and near): bool (h, w).

    Texture, noise and grid lines away from the strokes are dropped: they are not connected to the ink,
    or (grid lines crossing a stroke) too far from it. to_ink: each pixel's distance to the ink
    (distance_transform_edt(~ink)), if the caller has it already.
    """
    from scipy import ndimage
    from skimage.measure import label

    above_floor = label(grey > levels.floor, connectivity=2)
    touched = np.zeros(int(above_floor.max()) + 1, dtype=bool)  # by label: a component holding some of the ink
    touched[above_floor[ink]] = True
    attached = touched[above_floor]
    rows, cols = np.nonzero(ink)
    ink_size_px = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    if to_ink is None:
        to_ink = ndimage.distance_transform_edt(~ink)
    near = to_ink <= max(2.0, HALO_FRACTION * ink_size_px)
    return attached & near


def fit_box(strokes: np.ndarray) -> np.ndarray:
    """Crop to the ink and scale its longer side to 20 px keeping the aspect ratio.

    Shrinking averages areas (anti-aliased, as MNIST did). From 2× larger on, the strokes are first cut at
    the mid-level between paper and ink, like the binary NIST scans MNIST was made from: the blur of a photo
    then does not widen them, faint grid lines touching them do not widen the box, and the area average
    makes the grey edges; strokes thinner than MNIST's are grown to its typical width. Smaller images keep
    their grey levels (an MNIST digit stays as it is).
    """
    crop = crop_to_ink(strokes)
    if BOX_SIDE_PX / max(crop.shape) <= BINARISE_BELOW_SCALE:
        crop = crop_to_ink(thicken_thin_strokes(crop >= MID_LEVEL))
    scale = BOX_SIDE_PX / max(crop.shape)
    if scale == 1.0:
        return crop
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))  # (width, height)
    resample = Image.Resampling.BOX if scale < 1.0 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(size, resample), dtype=np.float64)


def thicken_thin_strokes(ink: np.ndarray) -> np.ndarray:
    """Grow strokes thinner than MNIST's typical width (pen on paper: often a third of it) to that width.

    Stroke width = twice the median distance from the skeleton to the paper. Returns float32 0/1, padded
    by the growth so nothing is cut.
    """
    from scipy import ndimage
    from skimage.morphology import skeletonize

    skeleton = skeletonize(ink)
    width_px = 2.0 * float(np.median(ndimage.distance_transform_edt(ink)[skeleton])) if skeleton.any() else 0.0
    grow_px = (MIN_STROKE_FRACTION * max(ink.shape) - width_px) / 2
    if grow_px <= 0:
        return ink.astype(np.float32)
    padded = np.pad(ink, int(np.ceil(grow_px)) + 1)
    return (ndimage.distance_transform_edt(~padded) <= grow_px).astype(np.float32)


def crop_to_ink(strokes: np.ndarray) -> np.ndarray:
    """The bounding box of the non-zero pixels."""
    rows, cols = np.nonzero(strokes)
    if rows.size == 0:
        raise NoInkError("no digit found: no ink above the paper's level")
    return strokes[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def paste_centred(box: np.ndarray) -> np.ndarray:
    """Paste into 28×28 with an integer shift that brings the centre of mass to (14, 14), ink never cut."""
    from scipy import ndimage

    canvas = np.zeros((IMAGE_SIDE_PX, IMAGE_SIDE_PX), dtype=np.float64)
    com_row, com_col = ndimage.center_of_mass(box)
    top = int(np.clip(np.floor(CENTRE_PX - com_row + 0.5), 0, IMAGE_SIDE_PX - box.shape[0]))
    left = int(np.clip(np.floor(CENTRE_PX - com_col + 0.5), 0, IMAGE_SIDE_PX - box.shape[1]))
    canvas[top : top + box.shape[0], left : left + box.shape[1]] = box
    return canvas
