"""The web app's `POST /api/read-number` answer: a handwritten number read by one model.

{"number": "2026", "confidence": 0.97, "model": "cnn", "unsure": false, "image_size": [width, height],
 "digits": [{"digit": 2, "confidence": 0.99, "box": [x0, y0, x1, y1], "normalised": "data:image/png;base64,…",
             "unsure": false, "top2": [{"digit", "confidence"}, …]}, …]}
The confidence is the product of the digits' (calibrated) confidences; each box is in the decoded image's
pixels (image_size; x1, y1 exclusive), left to right; "normalised" is the 28×28 the model saw (for a digit read
as half of a pair by a number reader's pair classifier: half of its box and of the 28×56 it saw).
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from mnist_transfer.models.inference import DigitModel


def number_answer(image: Image.Image, model: DigitModel, name: str, min_confidence: float = 0.0) -> dict[str, Any]:
    """Read the number in a decoded image; raises NoInkError / NumberError (segment.py) when there is none."""
    from mnist_transfer.data.segment import read_number
    from mnist_transfer.models.calibration import top_two

    reading = read_number(image, model.predict, classify_pairs=model.pair_classifier)
    digits = [
        {
            "digit": int(model.labels[d.digit]),
            "confidence": d.confidence,
            "box": [int(v) for v in d.box],
            "normalised": png_data_uri(d.normalised),
            "unsure": bool(d.confidence < min_confidence),
            "top2": [{"digit": int(model.labels[k]), "confidence": p} for k, p in top_two(d.probabilities)],
        }
        for d in reading.digits
    ]
    return {
        "number": "".join(str(d["digit"]) for d in digits),
        "confidence": reading.confidence,
        "model": name,
        "unsure": any(d["unsure"] for d in digits),
        "image_size": [image.width, image.height],
        "digits": digits,
    }


def png_data_uri(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
