"""The normaliser: known answers on drawn strokes, polarity, paper, formats, errors, and MNIST round trips."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.draw import line_aa
from skimage.morphology import skeletonize

from mnist_transfer.data.idx import read_images
from mnist_transfer.data.normalise import ImageReadError, NoInkError, normalise_digit, read_image, thicken_thin_strokes
from mnist_transfer.data.photos import PAGE_COLS, PAGE_ROWS, PHOTO_CASES, clean_photo
from tests.conftest import REPO_ROOT


def drawn_strokes(shape: tuple[int, int], segments: list[tuple[float, float, float, float]], width_px: int) -> np.ndarray:
    """uint8 white strokes on black: anti-aliased segments (fractions of the height/width) thickened to width_px."""
    height, width = shape
    ink = np.zeros(shape, dtype=np.float64)
    for r0, c0, r1, c1 in segments:
        rows, cols, value = line_aa(round(r0 * (height - 1)), round(c0 * (width - 1)), round(r1 * (height - 1)), round(c1 * (width - 1)))
        ink[rows, cols] = np.maximum(ink[rows, cols], value)
    ink = ndimage.grey_dilation(ink, size=(width_px, width_px))
    return np.rint(ink * 255).astype(np.uint8)


SEVEN = [(0.2, 0.3, 0.2, 0.7), (0.2, 0.7, 0.8, 0.45)]
PLUS_OFF_CENTRE = [(0.1, 0.2, 0.5, 0.2), (0.3, 0.05, 0.3, 0.35)]
TALL_BAR = [(0.1, 0.5, 0.9, 0.5)]
WIDE_BAR = [(0.5, 0.1, 0.5, 0.9)]


def ink_box(image: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(image)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


@pytest.mark.parametrize(
    "shape, segments, width_px",
    [
        ((28, 28), SEVEN, 2),
        ((120, 90), SEVEN, 9),
        ((200, 300), PLUS_OFF_CENTRE, 12),  # far off-centre in a wide image
        ((160, 160), TALL_BAR, 14),  # aspect ratio kept: a tall, narrow box
        ((90, 150), WIDE_BAR, 8),
        ((1500, 2000), SEVEN, 60),  # larger than the working size
    ],
)
def test_strokes_come_out_mnist_sized_and_centred(shape: tuple[int, int], segments: list, width_px: int) -> None:
    out = normalise_digit(Image.fromarray(drawn_strokes(shape, segments, width_px)))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert max(ink_box(out)) <= 20
    assert max(ink_box(out)) >= 19  # the longer side fills the box
    com_row, com_col = ndimage.center_of_mass(out.astype(np.float64))
    assert abs(com_row - 14) <= 0.5 and abs(com_col - 14) <= 0.5
    assert out.max() == 255 and out[0, 0] == 0  # white ink on black


def test_aspect_ratio_is_kept() -> None:
    out = normalise_digit(Image.fromarray(drawn_strokes((160, 160), TALL_BAR, 14)))
    rows, cols = ink_box(out)
    assert rows == 20 and cols <= 4


@pytest.mark.parametrize("size", [(28, 28), (140, 110)])
def test_polarity_is_detected_both_ways(size: tuple[int, int]) -> None:
    light_on_dark = drawn_strokes(size, SEVEN, max(2, size[0] // 12))
    from_light = normalise_digit(Image.fromarray(light_on_dark))
    from_dark = normalise_digit(Image.fromarray(255 - light_on_dark))  # dark ink on white paper
    assert np.abs(from_light.astype(int) - from_dark.astype(int)).max() <= 2
    assert from_dark[0, 0] == 0 and from_dark.max() == 255


def photo_of(strokes: np.ndarray, seed: int, grid: bool = True) -> np.ndarray:
    """Dark ink on grey noisy paper with faint grid lines: uint8."""
    rng = np.random.default_rng(seed)
    page = np.full(strokes.shape, 185.0)
    if grid:
        page[5::16, :] -= 22
        page[:, 9::16] -= 22
    page -= (page - 40.0) * strokes / 255.0
    return np.clip(page + rng.normal(0, 5, strokes.shape), 0, 255).astype(np.uint8)


def test_paper_noise_grid_lines_and_specks_are_suppressed() -> None:
    strokes = drawn_strokes((160, 140), SEVEN, 12)
    clean = normalise_digit(Image.fromarray(255 - strokes))
    page = photo_of(strokes, seed=1)
    page[150:153, 5:8] = 40  # a speck of dust far from the digit
    noisy = normalise_digit(Image.fromarray(page))
    gap = np.abs(noisy.astype(int) - clean.astype(int)).mean()
    assert gap < 6, f"mean gap {gap:.1f} grey levels"
    assert (noisy[clean == 0] > 40).mean() < 0.01  # no grid line or speck survives as visible ink
    assert max(ink_box(noisy)) <= 20


@pytest.mark.parametrize("width_px, expected_px", [(1, 12), (5, 12), (16, 16)])
def test_thin_strokes_grow_to_mnist_width_and_thick_ones_stay(width_px: int, expected_px: int) -> None:
    """A horizontal bar 100 px long: 12 % of its length is MNIST's typical stroke width."""
    bar = np.zeros((40, 100), dtype=bool)
    bar[20 - width_px // 2 : 20 - width_px // 2 + width_px, :] = True
    grown = thicken_thin_strokes(bar)
    assert abs(int(grown[:, grown.shape[1] // 2].sum()) - expected_px) <= 1
    assert grown.dtype == np.float32 and set(np.unique(grown)) <= {0.0, 1.0}


def stroke_width_px(out: np.ndarray) -> float:
    """Ink mass / skeleton length of a normalised digit: MNIST's test digits have a median of 2.6 px."""
    return float(out.sum() / 255 / skeletonize(out > 0).sum())


def test_a_thin_pen_digit_gets_mnist_stroke_width(monkeypatch: pytest.MonkeyPatch) -> None:
    ballpoint = Image.fromarray(255 - drawn_strokes((240, 200), SEVEN, 3))  # strokes 2 % of the digit's size
    assert 1.8 <= stroke_width_px(normalise_digit(ballpoint)) <= 3.2
    monkeypatch.setattr("mnist_transfer.data.normalise.MIN_STROKE_FRACTION", 0.0)  # without growing: a hairline
    assert stroke_width_px(normalise_digit(ballpoint)) < 1.2


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((28, 28), np.uint8),
        np.full((100, 80), 255, np.uint8),
        np.full((50, 50), 128, np.uint8),
        np.clip(np.random.default_rng(0).normal(128, 8, (120, 120)), 0, 255).astype(np.uint8),  # noise only
        photo_of(np.zeros((150, 150), np.uint8), seed=2),  # empty squared paper
    ],
    ids=["black", "white", "grey", "noise", "empty-grid-paper"],
)
def test_no_ink_is_an_error(pixels: np.ndarray) -> None:
    with pytest.raises(NoInkError, match="no digit found"):
        normalise_digit(Image.fromarray(pixels))


def encoded(image: Image.Image, fmt: str, **options: object) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    buffer.seek(0)
    reopened = Image.open(buffer)
    reopened.load()
    return reopened


def test_colour_transparency_16_bit_and_palette_images_read_like_grey() -> None:
    strokes = drawn_strokes((120, 100), SEVEN, 10)
    expected = normalise_digit(Image.fromarray(255 - strokes))
    blue_on_cream = np.stack([255 - strokes * 0.9, 245 - strokes * 0.8, 220 - strokes * 0.1], axis=-1).astype(np.uint8)
    black_on_transparent = np.zeros((*strokes.shape, 4), np.uint8)
    black_on_transparent[..., 3] = strokes
    variants = {
        "rgb": Image.fromarray(blue_on_cream),
        "rgba": encoded(Image.fromarray(black_on_transparent), "PNG"),
        "16-bit": encoded(Image.fromarray((255 - strokes).astype(np.uint16) * 257), "PNG"),
        "palette": encoded(Image.fromarray(255 - strokes).convert("P"), "GIF"),
    }
    for name, image in variants.items():
        gap = np.abs(normalise_digit(image).astype(int) - expected.astype(int)).mean()
        assert gap < 4, f"{name} (mode {image.mode}): mean gap {gap:.1f}"


def test_exif_orientation_is_honoured() -> None:
    upright = Image.fromarray(255 - drawn_strokes((120, 90), SEVEN, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the stored pixels lie on their side
    stored = encoded(upright.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif)
    assert np.array_equal(normalise_digit(stored), normalise_digit(upright))


@pytest.fixture(scope="module")
def mnist_test_digits(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The first 500 official MNIST test digits, uint8 (500, 28, 28)."""
    idx_path = tmp_path_factory.mktemp("idx") / "t10k-images-idx3-ubyte"
    idx_path.write_bytes(gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes()))
    return read_images(idx_path)[:500]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_mnist_digits_round_trip(mnist_test_digits: np.ndarray, fmt: str) -> None:
    """Already MNIST-like: (almost) unchanged. Faint levels near black are cleared (≤ 5 % of the ink's level)
    and a digit whose centre of mass MNIST left more than half a pixel off centre moves by one pixel."""
    gaps = []
    for digit in mnist_test_digits:
        stored = encoded(Image.fromarray(digit), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        gaps.append(np.abs(normalise_digit(stored).astype(int) - np.asarray(stored, dtype=int)))
    gaps = np.stack(gaps)
    assert gaps.mean() < 1.0
    assert (gaps.max(axis=(1, 2)) <= 16).mean() >= 0.95


def test_a_shifted_mnist_digit_is_recentred(mnist_test_digits: np.ndarray) -> None:
    digit = mnist_test_digits[0]
    shifted = np.roll(digit, (-4, 3), axis=(0, 1))
    assert np.abs(normalise_digit(Image.fromarray(shifted)).astype(int) - digit).mean() < 1.0


# Synthetic phone photos of MNIST test digits (mnist_transfer.data.photos): each case normalised like the clean one.
N_PHOTO_DIGITS = 10  # the first test digits (7 2 1 0 4 1 4 9 5 9: a 5 with a detached bar among them)
MIN_SIMILARITY = 0.8  # the old normaliser fell below this on every case but pencil-grey strokes


def similarity(out: np.ndarray, expected: np.ndarray) -> float:
    """Correlation of two 28×28 outputs, each blurred by 1 px (a one-pixel shift of a thin stroke is no error);
    0 for a blank output."""
    out, expected = (ndimage.gaussian_filter(image.astype(float), 1.0).ravel() for image in (out, expected))
    return float(np.corrcoef(out, expected)[0, 1]) if out.std() > 0 else 0.0


def normalised_or_blank(pixels: np.ndarray | Image.Image) -> np.ndarray:
    """normalise_digit's output, or a black 28×28 where it found no digit (similarity 0, not an error)."""
    try:
        return normalise_digit(pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels))
    except NoInkError:
        return np.zeros((28, 28), np.uint8)


@pytest.fixture(scope="module")
def clean_photos_normalised(mnist_test_digits: np.ndarray) -> list[np.ndarray]:
    """The known answers: the first N_PHOTO_DIGITS digits photographed on evenly lit paper, normalised."""
    return [normalise_digit(Image.fromarray(clean_photo(digit, np.random.default_rng(seed))))
            for seed, digit in enumerate(mnist_test_digits[:N_PHOTO_DIGITS])]


@pytest.mark.parametrize("case", list(PHOTO_CASES))
def test_a_distorted_photo_reads_like_the_clean_one(mnist_test_digits: np.ndarray, clean_photos_normalised: list,
                                                     case: str) -> None:
    scores = [similarity(normalised_or_blank(PHOTO_CASES[case](digit, np.random.default_rng(seed))), clean)
              for seed, (digit, clean) in enumerate(zip(mnist_test_digits, clean_photos_normalised))]
    assert min(scores) >= MIN_SIMILARITY, f"{case}: similarities {np.round(scores, 2).tolist()}"


def dim_shaded_crop(digit: np.ndarray, seed: int) -> Image.Image:
    """A 28×28 JPEG: the digit in ink that darkens grey paper (180) by 35 %, under lighting from 70 % to 100 %."""
    lighting = np.linspace(0.7, 1.0, 28)[:, None]
    pixels = 180.0 * lighting * (1.0 - 0.35 * digit / 255.0) + np.random.default_rng(seed).normal(0.0, 3.0, digit.shape)
    return encoded(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG", quality=85)


def test_a_dim_shaded_28_px_crop_reads_like_the_digit(mnist_test_digits: np.ndarray) -> None:
    """Contrast of about 50 grey levels on paper from 126 to 180: the old normaliser found no digit in any."""
    scores = [similarity(normalised_or_blank(dim_shaded_crop(digit, seed)), digit)
              for seed, digit in enumerate(mnist_test_digits[:N_PHOTO_DIGITS])]
    assert min(scores) >= MIN_SIMILARITY, f"similarities {np.round(scores, 2).tolist()}"


@pytest.mark.parametrize(
    "pixels",
    [
        np.clip(217 * (0.5 + 0.5 * PAGE_ROWS) + np.random.default_rng(3).normal(0, 2.5, PAGE_ROWS.shape), 0, 255),
        np.where(PAGE_COLS < 0.4, 45.0, 217.0),  # the table beside the page
        np.where(PAGE_ROWS + PAGE_COLS < 0.3, 45.0, 217.0),
    ],
    ids=["2:1-lighting-gradient", "page-edge", "page-corner"],
)
def test_an_unevenly_lit_or_framed_blank_page_has_no_digit(pixels: np.ndarray) -> None:
    with pytest.raises(NoInkError, match="no digit found"):
        normalise_digit(Image.fromarray(pixels.astype(np.uint8)))


REAL_DIGITS_DIR = REPO_ROOT.parent / "shared" / "real_digits"  # the development set (never copied here)


@pytest.mark.slow  # 88 images of up to 1000 px: about 8 s
def test_no_real_digit_photo_is_refused() -> None:
    """Each of the development set's photos, scans and drawings (88 by 9 writers) holds a digit."""
    if not REAL_DIGITS_DIR.is_dir():
        pytest.skip(f"development set {REAL_DIGITS_DIR} not found")
    paths = sorted(path for path in REAL_DIGITS_DIR.iterdir() if path.suffix.lower() in {".png", ".jpg", ".jpeg"})
    refused = []
    for path in paths:
        try:
            normalise_digit(read_image(path))
        except NoInkError as error:
            refused.append(f"{path.name}: {error}")
    assert paths and not refused, "\n".join(refused)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "empty file"),
        (b"these are not the pixels you are looking for", "not an image"),
        ("truncated-jpeg", "cannot decode"),
    ],
)
def test_unreadable_files_are_named(tmp_path: Path, payload: bytes | str, reason: str) -> None:
    if payload == "truncated-jpeg":
        buffer = io.BytesIO()
        Image.fromarray(drawn_strokes((200, 200), SEVEN, 10)).save(buffer, format="JPEG")
        payload = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    path = tmp_path / "digit.jpg"
    path.write_bytes(payload)
    with pytest.raises(ImageReadError, match=reason) as error:
        read_image(path)
    assert str(path) in str(error.value) and error.value.reason in str(error.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file") as error:
        read_image(tmp_path / "absent.png")
    assert "absent.png" in str(error.value)


def test_read_image_decodes_what_it_reads(tmp_path: Path) -> None:
    pixels = drawn_strokes((40, 30), SEVEN, 3)
    Image.fromarray(pixels).save(tmp_path / "seven.png")
    assert np.array_equal(np.asarray(read_image(tmp_path / "seven.png")), pixels)
