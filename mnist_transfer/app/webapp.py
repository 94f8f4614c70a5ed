"""The draw-a-digit web app: a page to draw or upload a digit, a JSON API, and a way to teach the model.

Models are loaded once, before the app is built (`create_app` takes them); every request only normalises
one image and runs the already-loaded models. Routes:
- GET  /             the page (templates/draw.html.j2): canvas, upload, bars per model, "Teach it"
- POST /api/predict  multipart `image` → {"digit", "confidence", "probabilities", "model", "unsure", "top2",
                     "normalised", "models": {name: {the same fields, "identity"}}}: the top-level answer is the
                     first model's (serve puts first the better by validation accuracy); confidences are
                     calibrated; "unsure" is true below AppConfig.min_confidence, "top2" the two likeliest
                     digits [{"digit", "confidence"}, …]
- POST /api/read-number  multipart `image` (one line of 1–12 digits) → {"number", "confidence", "digits": [{"digit",
                     "confidence", "box", "normalised", …}, …], …} read by the number reader (AppConfig.reader),
                     else by the first model (app/number_api.py)
- POST /api/own      multipart `image`, `digit` (0–9), optional `split` → 201 {"path"} under data/own/<split>/<digit>/
- GET  /healthz      the loaded models' identities (and the number reader's, when there is one)
Bad input is a JSON 4xx: 400 not an image (or undecodable), 413 too many bytes or pixels (data/images.py's
MAX_PIXELS, checked from the header), 422 no digit found or digit outside 0–9 (or, for a number, more than 12 digits).
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

from mnist_transfer.app.number_api import number_answer
from mnist_transfer.data.images import ImageReadError, ImageTooLargeError, image_from_bytes
from mnist_transfer.data.normalise import NoInkError, normalise_digit
from mnist_transfer.data.segment import NumberError
from mnist_transfer.evaluation.report_html import template_environment
from mnist_transfer.models.calibration import DEFAULT_MIN_CONFIDENCE, top_two
from mnist_transfer.models.inference import DigitModel

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
FORM_OVERHEAD_BYTES = 64 * 1024  # a multipart body is the file plus boundaries, headers and the small fields
SUFFIX_OF_FORMAT = {
    "PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp",
    "HEIF": ".heic", "PPM": ".ppm",
}


@dataclass(frozen=True)
class AppConfig:
    models: dict[str, DigitModel]  # name → model; the first one's answer is the top-level one
    own_dir: Path  # data/own: where taught digits are saved
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # calibrated confidences below it are answered as unsure
    reader: DigitModel | None = None  # the number reader (data/reader) for /api/read-number; None: the first model


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
    """(the decoded grey image, its normalised uint8 (28, 28)); ApiError 413 / 400 / 422 for bad uploads."""
    if len(payload) > limit_bytes:
        raise ApiError(413, too_many_bytes(len(payload), limit_bytes))
    try:
        image = image_from_bytes(payload, filename or "upload")
        return image, normalise_digit(image)
    except ImageTooLargeError as error:
        raise ApiError(413, str(error)) from error
    except ImageReadError as error:
        raise ApiError(400, str(error)) from error
    except NoInkError as error:
        raise ApiError(422, str(error)) from error


def read_number_upload(payload: bytes, filename: str, config: AppConfig) -> dict[str, Any]:
    """The /api/read-number answer by the number reader (else the first model); ApiError 413 / 400 / 422 as
    checked_upload's, and 422 for more than 12 digit-like parts."""
    if len(payload) > config.max_upload_bytes:
        raise ApiError(413, too_many_bytes(len(payload), config.max_upload_bytes))
    name, model = ("reader", config.reader) if config.reader is not None else next(iter(config.models.items()))
    try:
        return number_answer(image_from_bytes(payload, filename or "upload"), model, name, config.min_confidence)
    except ImageTooLargeError as error:
        raise ApiError(413, str(error)) from error
    except ImageReadError as error:
        raise ApiError(400, str(error)) from error
    except (NoInkError, NumberError) as error:
        raise ApiError(422, str(error)) from error


def too_many_bytes(n_bytes: int, limit_bytes: int) -> str:
    return f"the upload is {n_bytes:,} bytes; the limit is {limit_bytes:,}: send a smaller image"


ANSWER_FIELDS = ("digit", "confidence", "probabilities", "model", "unsure", "top2")  # also the top level's


def model_answer(probabilities: np.ndarray, model: DigitModel, name: str, min_confidence: float = 0.0) -> dict[str, Any]:
    """One model's answer: its top digit (even when unsure), calibrated confidence, probabilities, name, whether
    it is unsure (confidence < min_confidence) and its two likeliest digits."""
    digit = int(np.argmax(probabilities))
    return {
        "digit": int(model.labels[digit]),
        "confidence": float(probabilities[digit]),
        "probabilities": [float(p) for p in probabilities],
        "model": name,
        "unsure": bool(probabilities[digit] < min_confidence),
        "top2": [{"digit": int(model.labels[k]), "confidence": p} for k, p in top_two(probabilities)],
        "identity": model.identity,
    }


def predict_payload(normalised: np.ndarray, models: dict[str, DigitModel], min_confidence: float = 0.0) -> dict[str, Any]:
    """The /api/predict answer: one entry per model; the top-level fields are the first model's."""
    answers = {
        name: model_answer(model.predict(normalised[None])[0], model, name, min_confidence) for name, model in models.items()
    }
    first = next(iter(answers.values()))
    return {**{k: first[k] for k in ANSWER_FIELDS}, "normalised": png_data_uri(normalised), "models": answers}


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
    page = template_environment("mnist_transfer.app").get_template("draw.html.j2").render(
        models=list(config.models), max_upload_mb=config.max_upload_bytes / 2**20, min_confidence=config.min_confidence
    )

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(status_code=error.status_code, content={"detail": error.message})

    @app.middleware("http")
    async def refuse_oversized_bodies(request: Request, call_next: Any) -> Any:
        # a declared length over the limit is refused before the body is read (and spooled to disk)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > config.max_upload_bytes + FORM_OVERHEAD_BYTES:
            return JSONResponse(status_code=413, content={"detail": too_many_bytes(int(declared), config.max_upload_bytes)})
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        reader = {"reader": config.reader.identity} if config.reader is not None else {}
        return {"status": "ok", "models": {name: model.identity for name, model in config.models.items()}, **reader}

    @app.post("/api/predict")
    def predict(image: Annotated[UploadFile, File(description="an image file with one digit")]) -> dict[str, Any]:
        _, normalised = checked_upload(image.file.read(config.max_upload_bytes + 1), image.filename or "", config.max_upload_bytes)
        return predict_payload(normalised, config.models, config.min_confidence)

    @app.post("/api/read-number")
    def read_number(image: Annotated[UploadFile, File(description="an image of a number: one line of 1-12 digits")]) -> dict[str, Any]:
        return read_number_upload(image.file.read(config.max_upload_bytes + 1), image.filename or "", config)

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
