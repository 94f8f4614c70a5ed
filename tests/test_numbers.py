"""Reading numbers for people: `mnist-transfer predict --number` and `POST /api/read-number` with a stand-in model
(output, CSV, saved 28×28s, bad input as errors or JSON 4xx, the page's number mode), and end to end with a
small CNN trained here on photos composed from MNIST test digits."""

from __future__ import annotations

import base64
import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_transfer.app import cli
from mnist_transfer.app.numbers import CSV_COLUMNS
from mnist_transfer.app.webapp import AppConfig, create_app
from tests.drawn_digits import bars

fastapi_testclient = pytest.importorskip("fastapi.testclient")


@dataclass(frozen=True)
class SureModel:
    """Stands in for a loaded DigitModel: every digit is a 1, with `confidence`."""

    confidence: float = 0.91
    name: str = "fake"
    identity: str = "fake@0"
    labels: tuple[str, ...] = tuple(str(d) for d in range(10))
    batch_size: int = 256
    pair_classifier: None = None  # no pair classifier (a DigitModel's, for a number reader that has one)

    def predict(self, images: np.ndarray) -> np.ndarray:
        assert images.ndim == 3 and images.shape[1:] == (28, 28) and images.dtype == np.uint8
        probabilities = np.full((len(images), 10), (1 - self.confidence) / 9, np.float32)
        probabilities[:, 1] = self.confidence
        return probabilities


@dataclass(frozen=True)
class ReaderModel(SureModel):
    """Stands in for a loaded number reader: 11 classes, the digit 7 at `confidence` among the digits, and
    "not one digit" at `not_digit` (so the digits' probabilities, renormalised, give the 7 `confidence`)."""

    name: str = "reader"
    not_digit: float = 0.2
    labels: tuple[str, ...] = (*(str(d) for d in range(10)), "not-a-digit")

    def predict(self, images: np.ndarray) -> np.ndarray:
        digits = np.full((len(images), 10), (1 - self.confidence) / 9, np.float32)
        digits[:, 7] = self.confidence
        return np.hstack([digits * (1 - self.not_digit), np.full((len(images), 1), self.not_digit, np.float32)])


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- predict --number -------------------------------------------------------------------------------------


@pytest.fixture
def numbers_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "numbers"
    (folder / "sub").mkdir(parents=True)
    bars(3).save(folder / "three.png")
    bars(13).save(folder / "thirteen.png")
    Image.new("L", (300, 100), 255).save(folder / "sub" / "blank.png")
    (folder / "sub" / "torn.png").write_bytes(png_bytes(bars(2))[:60])
    return folder


def predict(monkeypatch, model, *argv) -> int:
    from mnist_transfer.models import inference

    monkeypatch.setattr(inference.DigitModel, "load", classmethod(lambda cls, folder, tflite=False: model))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", "--model", "unused", *map(str, argv)])
    return exit_info.value.code


def test_predict_number_prints_each_number_and_errors(monkeypatch, numbers_folder: Path, tmp_path: Path, capsys):
    status = predict(monkeypatch, SureModel(), "--number", numbers_folder, "--csv", tmp_path / "digits.csv",
                     "--save-normalised", tmp_path / "seen")
    lines = {Path(line.split("  ")[0]).name: line.split("  ")[1:] for line in capsys.readouterr().out.splitlines()}
    assert status == 1  # some images failed
    assert lines["three.png"] == ["111", f"{0.91 ** 3:.3f}", "fake"]
    assert lines["thirteen.png"][0].startswith("error: too many digits: found 13 digit-like parts")
    assert lines["blank.png"][0].startswith("error: no digit found")
    assert lines["torn.png"][0].startswith("error: cannot decode")
    with open(tmp_path / "digits.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    assert [(Path(r["path"]).name, r["number"], r["position"], r["digit"], r["unsure"]) for r in rows] == [
        ("three.png", "111", str(k), "1", "0") for k in range(3)
    ]
    lefts = [int(r["x0"]) for r in rows]
    assert lefts == sorted(lefts) and all(int(r["x1"]) > int(r["x0"]) and int(r["y1"]) > int(r["y0"]) for r in rows)
    assert abs(lefts[1] - lefts[0] - 60) <= 2  # the boxes are in the image's pixels: the bars are 60 px apart
    saved = sorted(path.name for path in (tmp_path / "seen").rglob("*.png"))
    assert saved == ["three.png.0.png", "three.png.1.png", "three.png.2.png"]
    assert np.asarray(Image.open(tmp_path / "seen" / "three.png.0.png")).shape == (28, 28)


def test_unsure_digits_are_marked(monkeypatch, numbers_folder: Path, capsys):
    status = predict(monkeypatch, SureModel(confidence=0.45), "--number", numbers_folder / "three.png",
                     "--min-confidence", "0.5")
    line = capsys.readouterr().out.strip()
    assert status == 0
    assert line.endswith("  unsure (digit 1: 1 0.45, 0 0.06; digit 2: 1 0.45, 0 0.06; digit 3: 1 0.45, 0 0.06)")
    assert line.split("  ")[1:3] == ["111", f"{0.45 ** 3:.3f}"]


def test_predict_number_reads_with_the_number_reader_when_there_is_one(monkeypatch, numbers_folder: Path, tmp_path,
                                                                       capsys):
    from mnist_transfer.models import inference

    loaded = []
    monkeypatch.setattr(inference.DigitModel, "load",
                        classmethod(lambda cls, folder, tflite=False: loaded.append(folder) or ReaderModel()))
    monkeypatch.chdir(tmp_path)
    for folder in ("data/model", "data/reader"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "labels.txt").write_text("0\n")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", "--number", str(numbers_folder / "three.png")])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0 and loaded == [Path("data/reader")]
    assert out.strip().split("  ")[1:4] == ["777", f"{0.91 ** 3:.3f}", "reader"]  # the 7's share of the ten digits
    assert "reading numbers with the number reader data/reader" in err
    (tmp_path / "data/reader/labels.txt").unlink()  # no reader: the digit model, saying so
    with pytest.raises(SystemExit):
        cli.main(["predict", "--number", str(numbers_folder / "three.png")])
    assert loaded[-1] == Path("data/model") and "no number reader in data/reader" in capsys.readouterr().err


def test_a_number_reader_does_not_read_single_digits(monkeypatch, numbers_folder: Path, capsys):
    assert predict(monkeypatch, ReaderModel(), numbers_folder / "three.png") == 2
    assert "is a number reader (11 classes" in capsys.readouterr().err


# --- POST /api/read-number --------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path):
    config = AppConfig({"cnn": SureModel(name="cnn"), "transfer": SureModel(0.5, "transfer")}, tmp_path / "own",
                       max_upload_bytes=200_000)
    with fastapi_testclient.TestClient(create_app(config)) as test_client:
        yield test_client


def test_read_number_answers_each_digit(client):
    image = bars(4)
    response = client.post("/api/read-number", files={"image": ("number.png", png_bytes(image), "image/png")})
    assert response.status_code == 200
    answer = response.json()
    assert answer["number"] == "1111" and answer["model"] == "cnn" and answer["unsure"] is False
    assert answer["confidence"] == pytest.approx(0.91**4, abs=1e-4)
    assert answer["image_size"] == [image.width, image.height]
    assert len(answer["digits"]) == 4
    for k, digit in enumerate(answer["digits"]):
        x0, y0, x1, y1 = digit["box"]
        assert abs((x0 + x1) / 2 - (40 + 60 * k)) <= 2 and 20 <= y0 < y1 <= 140
        assert digit["digit"] == 1 and digit["confidence"] == pytest.approx(0.91, abs=1e-4)
        assert digit["top2"][0] == {"digit": 1, "confidence": pytest.approx(0.91, abs=1e-4)}
        assert digit["normalised"].startswith("data:image/png;base64,")
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(digit["normalised"].split(",", 1)[1]))))
        assert pixels.shape == (28, 28) and pixels.max() == 255


def test_read_number_answers_with_the_number_reader(tmp_path: Path):
    config = AppConfig({"cnn": SureModel(name="cnn")}, tmp_path / "own", reader=ReaderModel(confidence=0.8))
    with fastapi_testclient.TestClient(create_app(config)) as test_client:
        response = test_client.post("/api/read-number", files={"image": ("n.png", png_bytes(bars(2)), "image/png")})
        health = test_client.get("/healthz").json()
    answer = response.json()
    assert health == {"status": "ok", "models": {"cnn": "fake@0"}, "reader": "fake@0"}
    assert response.status_code == 200 and answer["number"] == "77" and answer["model"] == "reader"
    assert answer["confidence"] == pytest.approx(0.8**2, abs=1e-4)
    assert [d["top2"][0]["digit"] for d in answer["digits"]] == [7, 7]


@pytest.mark.parametrize(
    "payload, status, detail",
    [
        (png_bytes(Image.new("L", (300, 100), 255)), 422, "no digit found"),
        (png_bytes(bars(13)), 422, "too many digits"),
        (b"not an image at all", 400, "not an image"),
        (b"", 400, "empty file"),
        (png_bytes(bars(3))[:80], 400, "cannot decode"),
        (png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 600), np.uint8))), 413, "limit"),
    ],
)
def test_bad_numbers_get_json_4xx(client, payload: bytes, status: int, detail: str):
    response = client.post("/api/read-number", files={"image": ("upload.png", payload, "image/png")})
    assert response.status_code == status and detail in response.json()["detail"]


def test_read_number_needs_an_image(client):
    assert client.post("/api/read-number").status_code == 422
    assert client.get("/api/read-number").status_code == 405


@pytest.mark.parametrize("seed", range(6))
def test_odd_images_never_cause_a_500(client, seed: int):
    """Tiny, thin, noisy, striped and transparent images: a reading or a 4xx, never a server error."""
    rng = np.random.default_rng(seed)
    shape = [(1, 1), (3, 500), (500, 3), (40, 40), (200, 600), (64, 64)][seed]
    pixels = rng.integers(0, 256, shape, np.uint8) if seed % 2 else np.where(rng.random(shape) < 0.3, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert("LA" if seed == 5 else "L")
    response = client.post("/api/read-number", files={"image": ("odd.png", png_bytes(image), "image/png")})
    assert response.status_code in (200, 400, 413, 422), response.text


def test_page_has_a_number_mode(client):
    page = client.get("/").text
    for marker in ('id="mode-number"', 'id="number-canvas"', 'id="number-boxes"', 'id="number-result"',
                   'id="number-digits"', "api/read-number", 'id="canvas"'):
        assert marker in page
    assert "http://" not in page and "https://" not in page  # no CDN: works offline


# --- end to end with a small CNN --------------------------------------------------------------------------


@pytest.mark.slow
def test_composed_photos_are_read_by_a_small_cnn(small_cnn: Path, mnist_arrays, tmp_path: Path, capsys):
    from mnist_transfer.data.compose import compose_number

    images, labels = mnist_arrays["testing"]
    rng = np.random.default_rng(2026)
    folder = tmp_path / "photos"
    folder.mkdir()
    truths = {}
    for k in range(12):
        chosen = rng.choice(len(images), size=4, replace=False)
        composed = compose_number(list(images[chosen]), labels[chosen].tolist(), ["gap", "gap", "gap"], rng)
        (folder / f"{k:02d}.jpg").write_bytes(composed.jpeg)
        truths[f"{k:02d}.jpg"] = composed.digits
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", "--number", str(folder), "--model", str(small_cnn)])
    assert exit_info.value.code == 0
    answers = {Path(line.split("  ")[0]).name: line.split("  ")[1] for line in capsys.readouterr().out.splitlines()}
    right = sum(answers[name] == truth for name, truth in truths.items())
    print(f"\n{right} of {len(truths)} composed 4-digit photos read right by the small CNN")
    assert right >= 9
