"""Synthetic phone photos of MNIST digits: dark ink on light paper, each with one thing that goes wrong.

Each case is a function `(digit, rng) -> photo`: the digit uint8 (28, 28), white on black as MNIST stores it;
the photo uint8 (PAGE_PX, PAGE_PX), grey, dark ink on paper, the digit DIGIT_SCALE× larger in the middle. The
rng draws only the camera's noise. Shared by the normaliser's tests (tests/test_normalise.py) and its benchmark
(benchmarks/photos.py): the tests check that each case normalises like the clean photo, the benchmark how a model
reads them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

PAGE_PX, DIGIT_SCALE = 160, 4  # the 28 px digit, 4× larger, in the middle of a 160 px page
PAGE_ROWS, PAGE_COLS = np.mgrid[0:PAGE_PX, 0:PAGE_PX] / (PAGE_PX - 1)  # 0..1 down and across
PAPER_REFLECTANCE, INK_REFLECTANCE = 0.85, 0.12  # shares of the lighting: paper about 217 grey levels, ink 31
PENCIL_REFLECTANCE = 0.68  # pencil-grey strokes: 43 grey levels of contrast
NOISE_LEVELS = 2.5  # the camera's noise, sigma in grey levels

GRADIENT = 0.5 + 0.5 * PAGE_ROWS  # 2:1 lighting, dark at the top
SHADOW = 0.45 * np.exp(-(((PAGE_ROWS - 0.5) / 0.12) ** 2 + ((PAGE_COLS - 0.08) / 0.07) ** 2) / 2)  # left of the digit
RING = 0.45 * np.exp(-(((np.hypot(PAGE_ROWS - 0.5, 1.4 * (PAGE_COLS - 0.1)) - 0.12) / 0.02) ** 2) / 2)
PAGE_CORNER = PAGE_ROWS + PAGE_COLS < 0.3  # the table (grey level 45) shows in the top-left corner
TABLE_LEVEL = 45
_grid = np.zeros((PAGE_PX, PAGE_PX))
_grid[::12, :] = _grid[:, 3::12] = 1.0
GRID = 0.3 * ndimage.grey_dilation(_grid, size=2)  # 2 px lines every 12 px that darken the paper by 30 %


def ink_on_page(digit: np.ndarray, thin: bool = False) -> np.ndarray:
    """The digit's ink (0..1, float) enlarged into the middle of the page; thin: a ballpoint's ~3 px line."""
    big = ndimage.zoom(digit / 255.0, DIGIT_SCALE, order=1)
    if thin:
        skeleton = ndimage.binary_dilation(skeletonize(big > 0.5))  # 3 px wide, along the strokes' middle
        big = np.clip(1.3 * ndimage.gaussian_filter(skeleton.astype(float), 0.7), 0.0, 1.0)  # a camera's blur
    page = np.zeros((PAGE_PX, PAGE_PX))
    top = (PAGE_PX - big.shape[0]) // 2
    page[top : top + big.shape[0], top : top + big.shape[1]] = big
    return page


def photographed(ink: np.ndarray, rng: np.random.Generator, lighting: np.ndarray | float = 1.0,
                 stain: np.ndarray | float = 0.0, ink_reflectance: float = INK_REFLECTANCE) -> np.ndarray:
    """uint8 photo: paper reflects 85 % and ink ink_reflectance of the lighting; a stain darkens by its share."""
    reflectance = (PAPER_REFLECTANCE - (PAPER_REFLECTANCE - ink_reflectance) * ink) * (1.0 - stain)
    noise = rng.normal(0.0, NOISE_LEVELS, ink.shape)
    return np.clip(255.0 * reflectance * lighting + noise, 0, 255).astype(np.uint8)


def clean_photo(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The reference: the digit photographed on evenly lit plain paper."""
    return photographed(ink_on_page(digit), rng)


def lighting_gradient(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return photographed(ink_on_page(digit), rng, lighting=GRADIENT)


def thin_ballpoint_on_gradient(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return photographed(ink_on_page(digit, thin=True), rng, lighting=GRADIENT)


def shadow_beside_digit(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return photographed(ink_on_page(digit), rng, lighting=1.0 - SHADOW)


def bleed_through_ring(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return photographed(ink_on_page(digit), rng, stain=RING)


def page_edge_in_corner(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.where(PAGE_CORNER, TABLE_LEVEL, photographed(ink_on_page(digit), rng)).astype(np.uint8)


def pencil_grey_strokes(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return photographed(ink_on_page(digit), rng, ink_reflectance=PENCIL_REFLECTANCE)


def grid_lines_across_digit(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return photographed(ink_on_page(digit), rng, stain=GRID)


PhotoCase = Callable[[np.ndarray, np.random.Generator], np.ndarray]

PHOTO_CASES: dict[str, PhotoCase] = {
    "2:1 lighting gradient": lighting_gradient,
    "thin ballpoint, 2:1 gradient": thin_ballpoint_on_gradient,
    "shadow blob beside the digit": shadow_beside_digit,
    "bleed-through ring beside the digit": bleed_through_ring,
    "page edge in a corner": page_edge_in_corner,
    "pencil-grey strokes": pencil_grey_strokes,
    "grid lines crossing the digit": grid_lines_across_digit,
}

# The "lighting, shadow and edge" set: uneven light on the page, a shadow, the page's edge.
LIGHTING_SHADOW_EDGE = ("2:1 lighting gradient", "thin ballpoint, 2:1 gradient", "shadow blob beside the digit",
                        "page edge in a corner")
