"""The draw-a-digit web app: every endpoint and bad input through FastAPI's test client, a concurrent
burst on loopback, and the page in a real headless Chromium."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_transfer.app.webapp import AppConfig, create_app, save_own_image

fastapi_testclient = pytest.importorskip("fastapi.testclient")


@dataclass(frozen=True)
class InkMassModel:
    """Stands in for an exported model: 'reads' digit = number of ink pixels // 40, capped at 9."""

    identity: str = "fake@ink-mass"
    labels: tuple[str, ...] = tuple(str(d) for d in range(10))

    def predict(self, images: np.ndarray) -> np.ndarray:
        digits = np.minimum((images > 127).sum(axis=(1, 2)) // 40, 9)
        return np.eye(10, dtype=np.float32)[digits] * 0.91 + 0.01


def png_bytes(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def drawn_bar() -> bytes:
    """A black vertical stroke on white, like the canvas sends."""
    pixels = np.full((280, 280), 255, np.uint8)
    pixels[60:220, 130:150] = 0
    return png_bytes(pixels)


@pytest.fixture
def client(tmp_path: Path):
    config = AppConfig({"transfer": InkMassModel(), "cnn": InkMassModel("fake@cnn")}, tmp_path / "own", max_upload_bytes=200_000)
    with fastapi_testclient.TestClient(create_app(config)) as test_client:
        yield test_client


def test_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and 'id="teach"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: works offline


def test_healthz_names_the_loaded_models(client):
    assert client.get("/healthz").json() == {"status": "ok", "models": {"transfer": "fake@ink-mass", "cnn": "fake@cnn"}}


def test_predict_answers_for_each_model(client):
    answer = client.post("/api/predict", files={"image": ("bar.png", drawn_bar(), "image/png")}).json()
    assert set(answer) == {"digit", "confidence", "probabilities", "model", "unsure", "top2", "normalised", "models"}
    assert set(answer["models"]) == {"transfer", "cnn"} and answer["models"]["cnn"]["identity"] == "fake@cnn"
    assert answer["model"] == "transfer" and answer["models"]["cnn"]["model"] == "cnn"  # every answer names its model
    assert answer["unsure"] is False and answer["top2"][0] == {"digit": answer["digit"], "confidence": pytest.approx(0.92)}
    assert len(answer["probabilities"]) == 10 and answer["confidence"] == pytest.approx(0.92)
    assert answer["digit"] == int(np.argmax(answer["probabilities"])) == answer["models"]["transfer"]["digit"]
    seen = np.asarray(Image.open(io.BytesIO(__import__("base64").b64decode(answer["normalised"].split(",")[1]))))
    assert seen.shape == (28, 28) and seen.max() > 200 and seen[0].max() < 40  # MNIST-like: white on black


@pytest.mark.parametrize(
    ("files", "data", "status", "detail"),
    [
        ({"image": ("notes.txt", b"just some text", "text/plain")}, {}, 400, "not an image"),
        ({"image": ("empty.png", b"", "image/png")}, {}, 400, "empty file"),
        ({"image": ("blank.png", png_bytes(np.full((64, 64), 200, np.uint8)), "image/png")}, {}, 422, "no digit found"),
        ({"image": ("huge.bmp", png_bytes(np.zeros((500, 500), np.uint8), "BMP"), "image/bmp")}, {}, 413, "limit"),
        ({}, {}, 422, None),  # missing field: the framework's own 422
    ],
)
def test_bad_uploads_get_json_4xx(client, files, data, status, detail):
    response = client.post("/api/predict", files=files, data=data)
    assert response.status_code == status
    if detail:
        assert response.json()["detail"].count(detail) == 1  # said once, not "no digit found: no digit found"


def test_wrong_method_is_a_4xx(client):
    assert client.get("/api/predict").status_code == 405


def test_teaching_saves_a_new_file_every_time(client, tmp_path: Path):
    paths = []
    for _ in range(2):
        response = client.post("/api/own", files={"image": ("bar.png", drawn_bar(), "image/png")}, data={"digit": "1"})
        assert response.status_code == 201
        paths.append(Path(response.json()["path"]))
    assert paths[0] != paths[1] and all(p.parent == tmp_path / "own" / "training" / "1" for p in paths)
    assert all(p.read_bytes() == drawn_bar() for p in paths) and all(p.suffix == ".png" for p in paths)
    test_split = client.post("/api/own", files={"image": ("bar.png", drawn_bar(), "image/png")}, data={"digit": "4", "split": "testing"})
    assert Path(test_split.json()["path"]).parent == tmp_path / "own" / "testing" / "4"
    assert not list((tmp_path / "own").rglob("*.partial"))  # no temporary file left behind


@pytest.mark.parametrize("form", [{"digit": "10"}, {"digit": "-1"}, {"digit": "seven"}, {"digit": "3", "split": "validation"}, {}])
def test_teaching_rejects_bad_digits_and_splits(client, tmp_path: Path, form):
    response = client.post("/api/own", files={"image": ("bar.png", drawn_bar(), "image/png")}, data=form)
    assert response.status_code == 422
    assert not (tmp_path / "own").exists() or not list((tmp_path / "own").rglob("*.png"))


def test_teaching_refuses_an_image_without_ink(client, tmp_path: Path):
    blank = png_bytes(np.full((64, 64), 255, np.uint8))
    response = client.post("/api/own", files={"image": ("blank.png", blank, "image/png")}, data={"digit": "2"})
    assert response.status_code == 422 and "no digit found" in response.json()["detail"]


def test_save_own_image_never_overwrites(tmp_path: Path, monkeypatch):
    import uuid

    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=7))  # the same "unique" name twice
    monkeypatch.setattr("time.strftime", lambda _fmt: "20261122-000000")
    first = save_own_image(b"one", ".png", tmp_path)
    with pytest.raises(FileExistsError):
        save_own_image(b"two", ".png", tmp_path)
    assert first.read_bytes() == b"one" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.slow
def test_a_concurrent_burst_is_answered_correctly(client):
    """200 requests, 8 at a time: every answer complete and right (the app holds no per-request state)."""
    from PIL import Image, ImageDraw

    pages = {name: Image.new("L", (280, 280), 255) for name in ("bar", "seven", "zero")}  # pen-width strokes
    ImageDraw.Draw(pages["bar"]).line([(140, 40), (140, 240)], fill=0, width=20)
    ImageDraw.Draw(pages["seven"]).line([(60, 50), (220, 50), (110, 240)], fill=0, width=20)
    ImageDraw.Draw(pages["zero"]).ellipse((70, 40, 210, 240), outline=0, width=20)
    strokes = {name: np.asarray(page) for name, page in pages.items()}
    expected = {n: client.post("/api/predict", files={"image": ("x.png", png_bytes(p), "image/png")}).json()["digit"] for n, p in strokes.items()}
    assert len(set(expected.values())) > 1  # the burst mixes different answers

    def ask(k: int) -> bool:
        n = ("bar", "seven", "zero")[k % 3]
        response = client.post("/api/predict", files={"image": ("x.png", png_bytes(strokes[n]), "image/png")})
        return response.status_code == 200 and response.json()["digit"] == expected[n]

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(ask, range(200)))


def test_answers_below_min_confidence_are_unsure_with_the_top_two(tmp_path: Path):
    config = AppConfig({"cnn": InkMassModel("fake@cnn"), "transfer": InkMassModel()}, tmp_path / "own", min_confidence=0.95)
    with fastapi_testclient.TestClient(create_app(config)) as test_client:
        page = test_client.get("/").text
        answer = test_client.post("/api/predict", files={"image": ("bar.png", drawn_bar(), "image/png")}).json()
    assert answer["model"] == "cnn"  # the first model in the config answers (serve puts the better one first)
    assert answer["unsure"] is True and answer["models"]["transfer"]["unsure"] is True
    top, second = answer["top2"]
    assert top == {"digit": answer["digit"], "confidence": pytest.approx(0.92)}  # digit stays the top digit
    assert second["digit"] != top["digit"] and second["confidence"] == pytest.approx(0.01)
    assert "under 95 % an answer is marked" in page and 'id="unsure"' in page and "answer.top2" in page


def test_serve_puts_the_better_model_first(tmp_path: Path, monkeypatch):
    from mnist_transfer.app.serve import load_models
    from mnist_transfer.models.inference import DigitModel
    from mnist_transfer.models.metadata import ModelMetadata

    accuracy = {"model": 0.96, "cnn": 0.99}
    monkeypatch.setattr(
        DigitModel, "load",
        classmethod(lambda cls, folder: DigitModel(folder, (), "x", None, metadata=ModelMetadata(folder.name, accuracy[folder.name], 10))),
    )
    (tmp_path / "cnn").mkdir()
    assert list(load_models(tmp_path / "model", tmp_path / "cnn")) == ["cnn", "transfer"]
    accuracy["cnn"] = 0.96  # a tie: the transfer model
    assert list(load_models(tmp_path / "model", tmp_path / "cnn")) == ["transfer", "cnn"]
    assert list(load_models(tmp_path / "model", tmp_path / "no-cnn")) == ["transfer"]
