"""Read an image file or upload into 8-bit grey levels, whatever its format and colour mode, at a bounded cost.

PNG, JPEG, GIF, BMP, TIFF, WebP and HEIC/HEIF (via pillow-heif) in any Pillow mode become one EXIF-upright
'L' image at most MAX_DECODED_SIDE_PX on its longer side: transparency flattened onto a contrasting paper,
16-bit and float levels scaled to 0..255, LAB by its L channel, animations by their first frame. The pixel
count is checked from the header before decoding, JPEGs decode straight to the working size, and the decodes
in flight share a memory budget, so a burst of large uploads cannot exhaust a server.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_transfer.errors import DataError

MAX_PIXELS = 50_000_000  # width × height, from the header; a 48 Mpx phone photo (8064×6048) passes
MAX_DECODED_SIDE_PX = 2048  # larger images are reduced right after decoding (JPEGs while decoding)
DECODE_BUDGET_BYTES = 512 * 2**20  # the decodes in flight hold at most about this much together
# MPO: a camera's JPEG with a second picture; PPM: PGM/PBM scans. Pillow's other readers (EPS runs
# Ghostscript, for one) are more attack surface than an upload of a digit needs.
ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "TIFF", "WEBP", "HEIF", "PPM")
TRANSPARENT_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
# Pillow's readers raise any of these on a malformed file: all mean "cannot decode it"
DECODE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, EOFError, IndexError, KeyError, struct.error,
                 ZeroDivisionError)
TRANSPOSE_OF_ORIENTATION = {  # EXIF orientation → what makes the stored pixels upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageReadError(DataError):
    """A file (or upload) is missing, empty, not an image, or truncated; the message names it."""

    def __init__(self, name: str | Path, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = str(name)
        self.reason = reason  # without the name, for reports that show it already


class ImageTooLargeError(ImageReadError):
    """An image with more than MAX_PIXELS pixels: refused from its header, before decoding."""


class DecodeBudget:
    """Bytes that the decodes in flight may hold together; a decode waits until its share is free."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._in_use_bytes = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, n_bytes: int) -> Iterator[None]:
        n_bytes = min(n_bytes, self.limit_bytes)  # an image that needs more than the whole budget runs alone
        with self._changed:
            self._changed.wait_for(lambda: self._in_use_bytes + n_bytes <= self.limit_bytes)
            self._in_use_bytes += n_bytes
        try:
            yield
        finally:
            with self._changed:
                self._in_use_bytes -= n_bytes
                self._changed.notify_all()


DECODE_BUDGET = DecodeBudget(DECODE_BUDGET_BYTES)  # one per process: the web app's threads share it


@functools.cache
def open_formats() -> tuple[str, ...]:
    """The accepted formats this Pillow can open; registers HEIC/HEIF (pillow-heif) on the first call."""
    with contextlib.suppress(ImportError):  # without pillow-heif, HEIC is "not an image"
        import pillow_heif

        pillow_heif.register_heif_opener()
    # MAX_PIXELS refuses every image Pillow would warn about (over 89 Mpx): its warning would only be noise
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    Image.init()
    return tuple(name for name in ACCEPTED_FORMATS if name in Image.OPEN)


def image_extensions() -> set[str]:
    """File extensions ('.png', '.heic', …, lower case) of the formats read here."""
    formats = open_formats()
    return {extension for extension, name in Image.registered_extensions().items() if name in formats}


def read_image(path: Path) -> Image.Image:
    """Read an image file into EXIF-upright grey levels ('L'), at most MAX_DECODED_SIDE_PX on its longer side."""
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    return decode_grey(path, str(path))


def image_from_bytes(payload: bytes, name: str) -> Image.Image:
    """As read_image, for an encoded image in memory (an upload); errors name it as `name`."""
    if not payload:
        raise ImageReadError(name, "empty file (0 bytes)")
    return decode_grey(io.BytesIO(payload), name)


def decode_grey(source: Path | BinaryIO, name: str) -> Image.Image:
    """Open (the header only), check the size, decode within the budget, reduce, turn upright and grey."""
    try:
        with Image.open(source, formats=open_formats()) as image:
            header_pixels = check_pixel_count(image, name)
            draft_jpeg(image)
            with DECODE_BUDGET.reserve(decode_cost_bytes(image, header_pixels)):
                image.load()  # decode now: a truncated file fails here, not later
                orientation = exif_orientation(image)
                grey = grey_image(working_size(image))
            source_format = image.format
    except ImageReadError:
        raise
    except UnidentifiedImageError as error:
        raise ImageReadError(name, "not an image (Pillow cannot identify its format)") from error
    except Image.DecompressionBombError as error:  # over Pillow's own limit: refused before the header check
        raise ImageTooLargeError(name, too_large_reason(bomb_pixels(error))) from error
    except DECODE_ERRORS as error:
        raise ImageReadError(name, f"cannot decode the image ({error})") from error
    grey = grey.transpose(TRANSPOSE_OF_ORIENTATION[orientation]) if orientation in TRANSPOSE_OF_ORIENTATION else grey
    grey.info = {}  # the orientation is applied: nothing downstream may apply it again
    grey.format = source_format  # the web app names saved copies after the original's format
    return grey


def check_pixel_count(image: Image.Image, name: str) -> int:
    """width × height from the header; ImageTooLargeError over MAX_PIXELS, ImageReadError if zero."""
    n_pixels = image.width * image.height
    if n_pixels > MAX_PIXELS:
        raise ImageTooLargeError(name, too_large_reason(n_pixels, image.size))
    if n_pixels == 0:
        raise ImageReadError(name, f"the image has no pixels ({image.width}×{image.height})")
    return n_pixels


def too_large_reason(n_pixels: int | None, size: tuple[int, int] | None = None) -> str:
    """'the image is 12000×12000 = 144 Mpx, over the 50 Mpx limit: scale it down'."""
    dimensions = f"{size[0]}×{size[1]} = " if size else ""
    count = f"{dimensions}{n_pixels / 1e6:.4g} Mpx" if n_pixels else "larger than Pillow opens"
    return f"the image is {count}, over the {MAX_PIXELS / 1e6:.4g} Mpx limit: scale it down"


def bomb_pixels(error: Image.DecompressionBombError) -> int | None:
    """The pixel count in Pillow's decompression-bomb message, if it says one."""
    match = re.search(r"\((\d+) pixels\)", str(error))
    return int(match.group(1)) if match else None


def draft_jpeg(image: Image.Image) -> None:
    """Let libjpeg decode a JPEG in grey, scaled by 1/2, 1/4 or 1/8 yet ≥ MAX_DECODED_SIDE_PX on its longer side."""
    if image.format not in ("JPEG", "MPO"):
        return
    scale = min(1.0, MAX_DECODED_SIDE_PX / max(image.size))
    image.draft("L", (max(1, math.ceil(image.width * scale)), max(1, math.ceil(image.height * scale))))


def decode_cost_bytes(image: Image.Image, header_pixels: int) -> int:
    """An upper bound of the memory decoding and reducing `image` holds at its peak (JPEGs: after draft)."""
    stored = 1 if image.mode in ("1", "L", "P") else 2 if image.mode.startswith("I;16") else 4  # Pillow's bytes/px
    cost = image.width * image.height * (stored + 8)  # + an RGBA copy and the premultiplied one resizing makes
    if image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        cost += header_pixels * 6  # libjpeg holds every DCT coefficient of the full-size image (2 bytes × 3)
    return cost


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8; 1 = upright), 1 when the EXIF data is absent or unreadable."""
    try:
        return int(image.getexif().get(0x0112, 1))
    except DECODE_ERRORS:  # a broken EXIF block should not make the picture unreadable
        return 1


def working_size(image: Image.Image) -> Image.Image:
    """At most MAX_DECODED_SIDE_PX on its longer side (area average), in a mode whose pixels can be averaged."""
    image = averageable(image)
    if max(image.size) <= MAX_DECODED_SIDE_PX:
        return image
    scale = MAX_DECODED_SIDE_PX / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX)


def averageable(image: Image.Image) -> Image.Image:
    """The image in a mode that resizing can average: palette indices, bits and hues cannot be (nor a colour key)."""
    if (image.has_transparency_data and image.mode not in TRANSPARENT_MODES) or image.mode == "PA":
        return image.convert("RGBA")
    if image.mode in ("1", "P"):
        return image.convert("L")
    if image.mode == "HSV":
        return image.convert("RGB")
    return image


def grey_image(image: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit grey ('L'): alpha flattened, 16-bit and float levels scaled to 0..255."""
    if image.has_transparency_data:
        return uint8_image(flatten_transparency(image.convert("RGBA")))
    if image.mode == "LAB":
        return image.getchannel("L")  # CIELab's lightness, already 0..255
    if image.mode.startswith("I;16"):
        return uint8_image(np.asarray(image, dtype=np.float32) / 257.0)
    if image.mode in ("I", "F"):
        return uint8_image(stretch_to_255(np.asarray(image, dtype=np.float64)))
    if image.mode == "HSV":
        image = image.convert("RGB")  # Pillow has no HSV → L
    return image if image.mode == "L" else image.convert("L")


def uint8_image(levels: np.ndarray) -> Image.Image:
    """Grey levels (0..255 float) → an 'L' image."""
    return Image.fromarray(np.rint(np.clip(levels, 0.0, 255.0)).astype(np.uint8), mode="L")


def stretch_to_255(pixels: np.ndarray) -> np.ndarray:
    """Integer or float pixels of unknown range → 0..255 (min to max); NaN and -inf count as min, +inf as max."""
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        return np.zeros(pixels.shape)
    low, high = float(finite.min()), float(finite.max())
    pixels = np.nan_to_num(pixels, nan=low, posinf=high, neginf=low)
    return (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros(pixels.shape)


def flatten_transparency(rgba: Image.Image) -> np.ndarray:
    """Composite onto white for dark strokes, onto black for light ones (drawings on a transparent canvas).

    Returns float (h, w) grey levels, 0..255.
    """
    grey = np.asarray(rgba.convert("L"), dtype=np.float32)
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    opaque = alpha > 0.5
    paper = 255.0 if opaque.any() and grey[opaque].mean() < 128 else 0.0
    return grey * alpha + paper * (1.0 - alpha)
