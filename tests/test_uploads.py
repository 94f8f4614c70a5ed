"""Decoding any image a person may send: every Pillow mode and format (HEIC too) reads as grey levels or gets
a clear 4xx, oversized images are refused from their header, and predict and the own stage say the same."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from PIL import Image, JpegImagePlugin

from mnist_transfer.app.predict import folder_images, label_all
from mnist_transfer.app.serve import return_freed_memory_to_the_os
from mnist_transfer.app.webapp import AppConfig, create_app
from mnist_transfer.data.images import (
    MAX_DECODED_SIDE_PX,
    DecodeBudget,
    ImageReadError,
    ImageTooLargeError,
    grey_image,
    image_from_bytes,
    open_formats,
    read_image,
)
from mnist_transfer.data.normalise import normalise_digit
from mnist_transfer.data.own import normalise_own, own_images
from mnist_transfer.errors import DataError

fastapi_testclient = pytest.importorskip("fastapi.testclient")
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # MAX_PIXELS refuses those

# (format, mode) pairs Pillow (and pillow-heif) can write; HSV goes into WebP as RGB
ENCODINGS = (
    [("PNG", mode) for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")]
    + [("JPEG", mode) for mode in ("L", "RGB", "CMYK", "YCbCr")]
    + [("GIF", mode) for mode in ("L", "P", "RGBA")]
    + [("BMP", mode) for mode in ("1", "L", "P", "RGB", "RGBA")]
    + [("TIFF", mode) for mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "I", "I;16", "F")]
    + [("WEBP", mode) for mode in ("L", "LA", "RGB", "RGBA", "HSV")]
    + [("HEIF", mode) for mode in ("L", "RGB", "RGBA", "I;16")]
)
LOSSLESS = {"WEBP": {"lossless": True}, "HEIF": {"quality": -1}}


@dataclass(frozen=True)
class InkMassModel:
    """Stands in for an exported model: 'reads' digit = number of ink pixels // 40, capped at 9."""

    identity: str = "fake@ink-mass"
    labels: tuple[str, ...] = tuple(str(d) for d in range(10))
    batch_size: int = 8
    name: str = "fake"  # DigitModel.name: the name each answer carries

    def predict(self, images: np.ndarray) -> np.ndarray:
        digits = np.minimum((images > 127).sum(axis=(1, 2)) // 40, 9)
        return np.eye(10, dtype=np.float32)[digits] * 0.91 + 0.01


def dark_bar(height: int, width: int) -> np.ndarray:
    """uint8 (height, width): a dark vertical bar on light paper, like a '1' drawn on the page's canvas."""
    pixels = np.full((height, width), 230, np.uint8)
    pixels[height // 5 : height - height // 5, width // 2 - max(1, width // 12) : width // 2 + max(1, width // 12)] = 20
    return pixels


def in_mode(grey: np.ndarray, mode: str, alpha: np.ndarray | None = None) -> Image.Image:
    """The grey levels in a Pillow mode (16-bit and float scaled, alpha from `alpha` or opaque)."""
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257)
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 1000 - 70_000)
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / 255.0)
    base = Image.fromarray(grey).convert("RGB")
    if mode in ("1", "P", "PA"):  # thresholded and an adaptive palette: no dithering specks
        base = base.convert("1", dither=Image.Dither.NONE) if mode == "1" else base.convert("P", palette=Image.Palette.ADAPTIVE)
    if mode in ("LA", "PA", "RGBA"):
        colour = base if mode == "PA" else base.convert(mode[:-1])
        opaque = np.full(grey.shape, 255, np.uint8) if alpha is None else alpha
        return Image.merge(mode, [*colour.split(), Image.fromarray(opaque)])
    return base.convert(mode)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    open_formats()  # registers HEIF, to write it as well
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width×height pixels (its data is for 1×1): refusing it proves the size
    is checked before decoding (decoding would fail as 'cannot decode')."""
    small = encoded(Image.new("L", (1, 1)), "PNG")
    chunk = b"IHDR" + struct.pack(">II", width, height) + small[24:29]  # depth, colour type, … kept
    return small[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + small[33:]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    own_dir = tmp_path_factory.mktemp("own")
    config = AppConfig({"transfer": InkMassModel()}, own_dir, max_upload_bytes=2_000_000)
    with fastapi_testclient.TestClient(create_app(config)) as test_client:
        yield test_client


@pytest.mark.parametrize(("fmt", "mode"), ENCODINGS)
def test_every_mode_and_format_reads_like_grey(fmt: str, mode: str) -> None:
    grey = dark_bar(120, 90)
    payload = encoded(in_mode(grey, mode), fmt, **LOSSLESS.get(fmt, {}))
    decoded = image_from_bytes(payload, f"bar.{fmt.lower()}")
    assert decoded.mode == "L" and decoded.size == (90, 120) and decoded.format == fmt
    pixels = np.asarray(decoded, dtype=int)
    paper, ink = pixels[5, 5], pixels[60, 45]
    assert paper > ink + 100, f"{fmt} {mode}: paper {paper}, ink {ink}"  # polarity and contrast survive
    assert np.abs(normalise_digit(decoded).astype(int) - normalise_digit(Image.fromarray(grey))).mean() < 8


@pytest.mark.parametrize("mode", ["LAB", "HSV", "CMYK", "YCbCr", "I;16", "I", "F"])
def test_grey_image_of_awkward_modes_keeps_black_grey_white(mode: str) -> None:
    levels = np.asarray(grey_image(in_mode(np.array([[0, 100, 160, 255]], np.uint8), mode)), dtype=int)[0]
    assert levels[0] <= 2 and levels[3] >= 253 and levels[0] < levels[1] < levels[2] < levels[3]


@pytest.mark.parametrize("paper", [0, 255])
def test_transparency_is_flattened_onto_a_contrasting_paper(paper: int) -> None:
    ink = 255 - paper
    alpha = np.zeros((60, 60), np.uint8)
    alpha[10:50, 25:35] = 255  # strokes of colour `ink` on a fully transparent canvas
    image = in_mode(np.full((60, 60), ink, np.uint8), "RGBA", alpha)
    pixels = np.asarray(image_from_bytes(encoded(image, "PNG"), "canvas.png"))
    assert pixels[30, 30] == ink and pixels[5, 5] == paper


def test_float_levels_with_nan_and_inf_are_stretched() -> None:
    levels = np.array([[np.nan, 0.5, 1.0, np.inf, -np.inf]], np.float32)
    assert np.asarray(grey_image(Image.fromarray(levels))).tolist() == [[0, 0, 255, 255, 0]]


@pytest.mark.parametrize(("fmt", "mode"), [("TIFF", mode) for mode in ("1", "LA", "P", "PA", "I", "I;16", "F", "LAB", "CMYK")]
                         + [("PNG", "P"), ("GIF", "P"), ("JPEG", "RGB"), ("WEBP", "RGBA")])
def test_long_images_are_reduced_to_the_working_size(fmt: str, mode: str) -> None:
    grey = dark_bar(40, 3000)  # over MAX_DECODED_SIDE_PX yet few pixels: the resize path, cheaply
    pixels = np.asarray(image_from_bytes(encoded(in_mode(grey, mode), fmt), "long"), dtype=float)
    assert pixels.shape == (27, MAX_DECODED_SIDE_PX)
    assert pixels[10:17, 1000:1048].mean() < 60 and pixels[:, :100].mean() > 180  # ink and paper, area-averaged


def test_a_large_jpeg_is_decoded_small_and_upright(monkeypatch: pytest.MonkeyPatch) -> None:
    drafted = []
    draft = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", lambda im, *a: (draft(im, *a), drafted.append(im.size))[0])
    upright = Image.fromarray(dark_bar(4500, 6000))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: rotate 90° clockwise to display
    stored = encoded(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif, quality=90)
    decoded = image_from_bytes(stored, "photo.jpg")
    assert drafted == [(2250, 3000)]  # libjpeg decoded it at half size, not 27 Mpx
    assert decoded.size == (2048, 1536) and decoded.getexif().get(0x0112) is None  # upright, and said so once
    expected = np.asarray(upright.resize(decoded.size, Image.Resampling.BOX), dtype=int)
    assert np.abs(np.asarray(decoded, dtype=int) - expected).mean() < 4


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_exif_orientation_is_applied_once(fmt: str) -> None:
    upright = dark_bar(30, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: rotate 90° clockwise to display
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    decoded = image_from_bytes(encoded(stored, fmt, exif=exif, **LOSSLESS.get(fmt, {})), f"turned.{fmt.lower()}")
    assert np.array_equal(np.asarray(normalise_digit(decoded)), normalise_digit(Image.fromarray(upright)))


def test_an_animation_reads_its_first_frame() -> None:
    frames = [Image.fromarray(dark_bar(80, 80)), Image.new("L", (80, 80), 230)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    assert np.asarray(image_from_bytes(buffer.getvalue(), "a.gif"), dtype=int)[40, 40] < 50


def test_heic_from_an_iphone_reads(client) -> None:
    payload = encoded(Image.fromarray(dark_bar(300, 200)).convert("RGB"), "HEIF", quality=90)
    decoded = image_from_bytes(payload, "IMG_0001.HEIC")
    assert decoded.format == "HEIF" and decoded.size == (200, 300)
    response = client.post("/api/own", files={"image": ("IMG_0001.HEIC", payload, "image/heic")}, data={"digit": "1"})
    assert response.status_code == 201 and response.json()["path"].endswith(".heic")
    assert read_image(Path(response.json()["path"])).size == (200, 300)  # the own stage reads what was taught


def test_heic_files_are_found_in_folders(tmp_path: Path) -> None:
    for name in ("a.HEIC", "b.heif", "c.png", "d.txt", "e.eps"):
        (tmp_path / name).write_bytes(b"")
    assert [path.name for path in folder_images(tmp_path)] == ["a.HEIC", "b.heif", "c.png"]


@pytest.mark.parametrize(
    ("width", "height", "reason"),
    [
        (12_000, 12_000, "is 12000×12000 = 144 Mpx, over the 50 Mpx limit: scale it down"),
        (7072, 7072, "is 7072×7072 = 50.01 Mpx, over the 50 Mpx limit"),
        (20_000, 20_000, "is 400 Mpx, over the 50 Mpx limit"),  # over Pillow's own bomb limit
    ],
)
def test_too_many_pixels_are_refused_from_the_header(client, width: int, height: int, reason: str) -> None:
    payload = png_claiming(width, height)
    with pytest.raises(ImageTooLargeError, match=reason):
        image_from_bytes(payload, "big.png")
    response = client.post("/api/predict", files={"image": ("big.png", payload, "image/png")})
    assert response.status_code == 413 and response.json()["detail"].startswith(f"big.png: the image {reason}")


def test_a_declared_body_over_the_limit_is_refused_unread(client) -> None:
    response = client.post("/api/predict", content=b"x" * 3_000_000, headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413 and "3,000,000 bytes; the limit is 2,000,000" in response.json()["detail"]


def test_predict_names_the_file_that_is_too_large(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "big.png").write_bytes(png_claiming(12_000, 12_000))
    Image.fromarray(dark_bar(280, 280)).save(tmp_path / "one.png")
    assert label_all([tmp_path / "big.png", tmp_path / "one.png"], InkMassModel(), None, None) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{tmp_path / 'big.png'}  error: the image is 12000×12000 = 144 Mpx, over the 50 Mpx limit: scale it down"
    assert lines[1].split("  ")[1].isdigit()


def test_the_own_stage_names_the_file_that_is_too_large(tmp_path: Path) -> None:
    own_root = tmp_path / "own"
    (own_root / "training" / "3").mkdir(parents=True)
    (own_root / "training" / "3" / "big.png").write_bytes(png_claiming(12_000, 12_000))
    with pytest.raises(DataError, match=r"training/3/big.png: the image is 12000×12000 = 144 Mpx, over the 50 Mpx limit"):
        normalise_own(own_images(own_root), own_root, tmp_path / "jpg", quality=95)


def test_unknown_and_risky_formats_are_not_images() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"  # Pillow would run Ghostscript on it
    with pytest.raises(ImageReadError, match="not an image"):
        image_from_bytes(eps, "digit.eps")


def test_the_budget_runs_decodes_that_do_not_fit_one_after_the_other() -> None:
    budget, active, peak = DecodeBudget(100), [0], [0]
    lock = threading.Lock()

    def decode(n_bytes: int) -> None:
        with budget.reserve(n_bytes):
            with lock:
                active[0] += min(n_bytes, 100)
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            with lock:
                active[0] -= min(n_bytes, 100)

    threads = [threading.Thread(target=decode, args=(n,)) for n in (60, 60, 30, 500)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in threads)
    assert peak[0] == 100  # the 500 (over the whole budget) ran alone; 60 + 60 never together


def test_the_server_returns_freed_image_memory_on_glibc() -> None:
    import platform

    assert return_freed_memory_to_the_os() == (platform.libc_ver()[0] == "glibc")


@st.composite
def uploads(draw: st.DrawFn) -> tuple[str, bytes]:
    """(format, bytes): a mode × format × size × content, sometimes damaged."""
    fmt, mode = draw(st.sampled_from(ENCODINGS))
    height, width = draw(st.one_of(
        st.tuples(st.integers(1, 300), st.integers(1, 300)),
        st.tuples(st.integers(1, 30), st.integers(2049, 2300)),  # wider than the working size
    ))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    content = draw(st.sampled_from(["bar", "inverted bar", "uniform", "noise"]))
    grey = {"bar": dark_bar(height, width), "inverted bar": 255 - dark_bar(height, width),
            "uniform": np.full((height, width), rng.integers(0, 256), np.uint8),
            "noise": rng.integers(0, 256, (height, width)).astype(np.uint8)}[content]
    alpha = draw(st.sampled_from([None, "strokes", "noise"]))
    alpha = None if alpha is None else (255 - grey if alpha == "strokes" else rng.integers(0, 256, grey.shape).astype(np.uint8))
    try:
        payload = encoded(in_mode(grey, mode, alpha), fmt)
    except (OSError, ValueError):  # a size this encoder refuses
        reject()
    damage = draw(st.sampled_from([None, None, None, "truncated", "flipped"]))
    if damage == "truncated":
        payload = payload[: draw(st.integers(1, max(1, len(payload) - 1)))]
    elif damage == "flipped":
        at = draw(st.integers(0, len(payload) - 1))
        payload = payload[:at] + bytes([payload[at] ^ 0xFF]) + payload[at + 1 :]
    return fmt, payload


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(upload=uploads())
def test_any_upload_gets_a_digit_or_a_4xx_with_a_reason(client, upload: tuple[str, bytes]) -> None:
    fmt, payload = upload
    response = client.post("/api/predict", files={"image": (f"upload.{fmt.lower()}", payload, "application/octet-stream")})
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
    if response.status_code == 200:
        assert response.json()["digit"] in range(10)
    else:
        assert isinstance(response.json()["detail"], str) and response.json()["detail"]
