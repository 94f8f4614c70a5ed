"""Turn any digit image (a photo, a scan, a drawing) into what MNIST looks like, with MNIST's own recipe.

White ink on black, the ink's longer side scaled to 20 px keeping its aspect ratio (anti-aliased), pasted
into 28×28 with its centre of mass at the centre. Before that: EXIF orientation, grey levels, polarity
(dark ink on light paper is inverted), and suppression of paper texture, noise and faint grid lines
(Otsu threshold, a contrast stretch that keeps anti-aliased grey edges, and the ink's connected components).
An image that is already MNIST-like comes out (almost) unchanged.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_transfer.common import DataError
from mnist_transfer.idx import IMAGE_SIDE_PX

BOX_SIDE_PX = 20  # MNIST fits each digit's longer side into a 20×20 box…
CENTRE_PX = 14.0  # …and puts its centre of mass here (scipy.ndimage.center_of_mass convention; MNIST's mean)
MAX_WORKING_SIDE_PX = 512  # larger images are reduced first: the output is 28 px anyway
BORDER_FRACTION = 0.05  # the frame of the image whose median is the paper's level
MIN_CONTRAST = 32.0  # ink must stand out from the paper by this many grey levels (of 255)…
NOISE_SIGMAS = 6.0  # …and by this many times the paper's noise
FLOOR_SIGMAS = 3.0  # paper noise below median + this many sigmas is set to black
MIN_FLOOR_FRACTION = 0.05  # and at least this share of the ink contrast (JPEG ringing, faint grid lines)
INK_PERCENTILE = 90  # this percentile of the ink pixels becomes full white
SPECK_FRACTION = 0.02  # ink components smaller than this share of the largest one are specks
HALO_FRACTION = 0.1  # grey edges are kept within this share of the ink's size (px) of the ink
BINARISE_BELOW_SCALE = 0.5  # shrinking by 2× or more: cut the strokes at MID_LEVEL before area-averaging
MID_LEVEL = 0.5  # between paper (0) and ink (1): where a blurred stroke's true edge lies
MIN_STROKE_FRACTION = 0.12  # MNIST's median stroke width / the digit's longer side (1,000 test digits)


class ImageReadError(DataError):
    """A file (or upload) is missing, empty, not an image, or truncated; the message names it."""

    def __init__(self, name: str | Path, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = str(name)
        self.reason = reason  # without the name, for reports that show it already


class NoInkError(DataError):
    """An image holds no digit: blank, uniform or noise only."""


@dataclass(frozen=True)
class InkLevels:
    """Grey levels (0..255, ink bright) that separate paper from ink."""

    paper: float  # the paper's median level
    floor: float  # at or below: paper (black in the output)
    ink: float  # at or above: full ink (white in the output)
    threshold: float  # Otsu's: above it, a pixel is ink for the component analysis


def read_image(path: Path) -> Image.Image:
    """Open and fully decode an image file of any format Pillow reads."""
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    return image_from_bytes(path.read_bytes(), str(path))


def image_from_bytes(payload: bytes, name: str) -> Image.Image:
    """Fully decode an encoded image (an upload, a file's bytes); errors name it as `name`."""
    if not payload:
        raise ImageReadError(name, "empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image.load()  # decode now: a truncated file fails here, not later
            return image
    except UnidentifiedImageError as error:
        raise ImageReadError(name, "not an image (Pillow cannot identify its format)") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageReadError(name, f"cannot decode the image ({error})") from error


def normalise_digit(image: Image.Image) -> np.ndarray:
    """Any digit image → uint8 (28, 28), white ink on black, MNIST's size normalisation and centring."""
    grey = grey_levels(image)  # (h, w) float, 0..255
    grey, levels = ink_levels(grey)
    ink = ink_components(grey, levels)
    strokes = stroke_intensity(grey, levels) * ink_halo(grey, levels, ink)  # (h, w) in 0..1
    box = fit_box(strokes)
    return np.rint(paste_centred(box) * 255).astype(np.uint8)


def grey_levels(image: Image.Image) -> np.ndarray:
    """EXIF-upright grey levels (0..255 float); transparency flattened onto a contrasting paper."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "P" or image.has_transparency_data:
        image = flatten_transparency(image.convert("RGBA"))
    elif image.mode.startswith("I;16"):
        image = Image.fromarray(np.asarray(image, dtype=np.float32) / 257.0, mode="F")
    elif image.mode in ("I", "F"):
        image = Image.fromarray(stretch_to_255(np.asarray(image, dtype=np.float32)), mode="F")
    elif image.mode != "L":
        image = image.convert("L")
    if max(image.size) > MAX_WORKING_SIDE_PX:
        scale = MAX_WORKING_SIDE_PX / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.convert("F").resize(size, Image.Resampling.BOX)  # area average: anti-aliased
    return np.asarray(image, dtype=np.float64)


def stretch_to_255(pixels: np.ndarray) -> np.ndarray:
    """Integer or float pixels of unknown range → 0..255 (min to max)."""
    low, high = float(pixels.min()), float(pixels.max())
    return (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)


def flatten_transparency(rgba: Image.Image) -> Image.Image:
    """Composite onto white for dark strokes, onto black for light ones (drawings on a transparent canvas)."""
    grey = np.asarray(rgba.convert("L"), dtype=np.float32)
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    opaque = alpha > 0.5
    paper = 255.0 if opaque.any() and grey[opaque].mean() < 128 else 0.0
    return Image.fromarray(grey * alpha + paper * (1.0 - alpha), mode="F")


def border_median(grey: np.ndarray) -> float:
    """Median level of the image's outer frame: the paper, wherever the digit is."""
    width = max(1, round(BORDER_FRACTION * min(grey.shape)))
    frame = np.ones(grey.shape, dtype=bool)
    frame[width:-width, width:-width] = False
    return float(np.median(grey[frame]))


def ink_levels(grey: np.ndarray) -> tuple[np.ndarray, InkLevels]:
    """Make the ink bright (invert when the paper is lighter than Otsu's threshold); measure paper and ink."""
    from skimage.filters import threshold_otsu

    if np.ptp(grey) < MIN_CONTRAST:
        raise NoInkError("no digit found: the image is (nearly) uniform")
    threshold = float(threshold_otsu(grey))
    if border_median(grey) > threshold:  # dark ink on light paper
        grey, threshold = 255.0 - grey, 255.0 - threshold
    paper_pixels, ink_pixels = grey[grey <= threshold], grey[grey > threshold]
    paper = float(np.median(paper_pixels))
    noise = 1.4826 * float(np.median(np.abs(paper_pixels - paper)))  # robust sigma (MAD) of the paper
    ink = float(np.percentile(ink_pixels, INK_PERCENTILE))
    contrast = ink - paper
    if contrast < max(MIN_CONTRAST, NOISE_SIGMAS * noise):
        raise NoInkError(f"no digit found: nothing stands out from the paper (contrast {contrast:.0f} of 255)")
    floor = paper + max(FLOOR_SIGMAS * noise, MIN_FLOOR_FRACTION * contrast)
    return grey, InkLevels(paper=paper, floor=floor, ink=ink, threshold=threshold)


def stroke_intensity(grey: np.ndarray, levels: InkLevels) -> np.ndarray:
    """Paper → 0, ink → 1, grey edges kept; levels just above the paper's noise ramp steeply to zero."""
    span = levels.ink - levels.paper
    stretched = np.clip((grey - levels.paper) / span, 0.0, 1.0)
    floor = (levels.floor - levels.paper) / span
    # below the floor: paper; from floor to 2·floor a ramp from 0 to 2·floor; above: unchanged (MNIST's greys)
    return np.where(stretched >= 2 * floor, stretched, np.clip(2 * (stretched - floor), 0.0, None))


def ink_components(grey: np.ndarray, levels: InkLevels) -> np.ndarray:
    """Pixels above Otsu's threshold in connected components that are not specks: bool (h, w)."""
    from skimage.measure import label

    components = label(grey > levels.threshold, connectivity=2)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0  # the background
    keep = sizes >= max(1.0, SPECK_FRACTION * sizes.max())
    keep[0] = False
    return keep[components]


def ink_halo(grey: np.ndarray, levels: InkLevels, ink: np.ndarray) -> np.ndarray:
    """The ink plus the grey edges attached to it (above the floor, connected, and near): bool (h, w).

    Texture, noise and grid lines away from the strokes are dropped: they are not connected to the ink,
    or (grid lines crossing a stroke) too far from it.
    """
    from scipy import ndimage
    from skimage.measure import label

    above_floor = label(grey > levels.floor, connectivity=2)
    attached = np.isin(above_floor, np.unique(above_floor[ink]))
    rows, cols = np.nonzero(ink)
    ink_size_px = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    near = ndimage.distance_transform_edt(~ink) <= max(2.0, HALO_FRACTION * ink_size_px)
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
