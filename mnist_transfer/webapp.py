"""The draw-a-digit web app: a page to draw or upload a digit, a JSON API, and a way to teach the model.

Models are loaded once, before the app is built (`create_app` takes them); every request only normalises
one image and runs the already-loaded models. Routes:
- GET  /             the page (templates/draw.html.j2): canvas, upload, bars per model, "Teach it"
- POST /api/predict  multipart `image` → {"digit", "confidence", "probabilities", "normalised", "models": {…}}
- POST /api/own      multipart `image`, `digit` (0–9), optional `split` → 201 {"path"} under data/own/<split>/<digit>/
- GET  /healthz      the loaded models' identities
Bad input is a JSON 4xx: 400 not an image, 413 too large, 422 no digit found or digit outside 0–9.
Imported only by `mnist-transfer serve` and the tests (FastAPI resolves the routes' annotations from
this module's globals, so its imports stay at the top).
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse

from mnist_transfer.inference import DigitModel
from mnist_transfer.normalise import ImageReadError, NoInkError, image_from_bytes, normalise_digit
from mnist_transfer.report_html import template_environment

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
SUFFIX_OF_FORMAT = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


@dataclass(frozen=True)
class AppConfig:
    models: dict[str, DigitModel]  # "transfer" first (its answer is the top-level one), then "cnn" if loaded
    own_dir: Path  # data/own: where taught digits are saved
    max_upload_bytes: int = MAX_UPLOAD_BYTES


class ApiError(Exception):
    """A client error with its HTTP status; answered as {"detail": message}."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def png_data_uri(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def checked_upload(payload: bytes, filename: str, limit_bytes: int) -> tuple[Any, np.ndarray]:
    """(the decoded image, its normalised uint8 (28, 28)); ApiError 413 / 400 / 422 for bad uploads."""
    if len(payload) > limit_bytes:
        raise ApiError(413, f"the image is {len(payload):,} bytes; the limit is {limit_bytes:,}")
    try:
        image = image_from_bytes(payload, filename or "upload")
        return image, normalise_digit(image)
    except ImageReadError as error:
        raise ApiError(400, str(error)) from error
    except NoInkError as error:
        raise ApiError(422, str(error)) from error


def model_answer(probabilities: np.ndarray, model: DigitModel) -> dict[str, Any]:
    digit = int(np.argmax(probabilities))
    return {
        "digit": int(model.labels[digit]),
        "confidence": float(probabilities[digit]),
        "probabilities": [float(p) for p in probabilities],
        "model": model.identity,
    }


def predict_payload(normalised: np.ndarray, models: dict[str, DigitModel]) -> dict[str, Any]:
    """The /api/predict answer: one entry per model; the top-level fields are the first (transfer) model's."""
    answers = {name: model_answer(model.predict(normalised[None])[0], model) for name, model in models.items()}
    first = next(iter(answers.values()))
    return {**{k: first[k] for k in ("digit", "confidence", "probabilities")}, "normalised": png_data_uri(normalised), "models": answers}


def save_own_image(payload: bytes, suffix: str, folder: Path) -> Path:
    """Write the upload under folder with a new unique name, atomically; never overwrite anything."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}{suffix}"
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", suffix=".partial", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp_name, final)  # fails if the name exists: an existing file is never replaced
    finally:
        os.unlink(tmp_name)
    return final


def create_app(config: AppConfig) -> FastAPI:
    """The FastAPI app on already-loaded models."""
    app = FastAPI(title="mnist-transfer", summary="Draw a digit; both models read it; teach it your handwriting.")
    page = template_environment().get_template("draw.html.j2").render(
        models=list(config.models), max_upload_mb=config.max_upload_bytes / 2**20
    )

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(status_code=error.status_code, content={"detail": error.message})

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": {name: model.identity for name, model in config.models.items()}}

    @app.post("/api/predict")
    def predict(image: Annotated[UploadFile, File(description="an image file with one digit")]) -> dict[str, Any]:
        _, normalised = checked_upload(image.file.read(config.max_upload_bytes + 1), image.filename or "", config.max_upload_bytes)
        return predict_payload(normalised, config.models)

    @app.post("/api/own", status_code=201)
    def teach(
        image: Annotated[UploadFile, File(description="an image file with one digit")],
        digit: Annotated[int, Form(ge=0, le=9, description="the digit it shows")],
        split: Annotated[Literal["training", "testing"], Form()] = "training",
    ) -> dict[str, Any]:
        payload = image.file.read(config.max_upload_bytes + 1)
        decoded, _ = checked_upload(payload, image.filename or "", config.max_upload_bytes)
        saved = save_own_image(payload, SUFFIX_OF_FORMAT.get(decoded.format or "", ".png"), config.own_dir / split / str(digit))
        return {"path": saved.as_posix(), "digit": digit, "split": split}

    return app
