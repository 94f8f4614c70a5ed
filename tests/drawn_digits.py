"""Digits drawn with straight lines and arcs (white on black, like MNIST), for hand-made segmentation cases:
a 1 next to a 7, a 5 whose hat is detached, "00", "111"."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SIDE_PX = 112  # one 28-unit frame at 4 px per unit
PEN_PX = 10

# strokes in frame units (0..1): ("line", x0, y0, x1, y1) or ("arc", left, top, right, bottom, start°, end°)
STROKES = {
    "0": [("arc", 0.28, 0.15, 0.72, 0.85, 0, 360)],
    "1": [("line", 0.56, 0.15, 0.46, 0.85)],
    "2": [("arc", 0.28, 0.15, 0.72, 0.5, 180, 20), ("line", 0.7, 0.4, 0.28, 0.85), ("line", 0.28, 0.85, 0.74, 0.85)],
    "4": [("line", 0.5, 0.15, 0.25, 0.6), ("line", 0.25, 0.6, 0.75, 0.6), ("line", 0.62, 0.35, 0.62, 0.85)],
    "5": [("line", 0.33, 0.15, 0.72, 0.15), ("line", 0.33, 0.15, 0.3, 0.46), ("arc", 0.27, 0.42, 0.72, 0.86, 210, 150)],
    "6": [("arc", 0.28, 0.48, 0.72, 0.86, 0, 360), ("arc", 0.28, 0.15, 0.95, 0.86, 180, 260)],
    "7": [("line", 0.25, 0.15, 0.75, 0.15), ("line", 0.75, 0.15, 0.42, 0.85)],
}
HAT_GAP = 0.14  # "5 with a detached hat": the hat drawn this far (frame units) above the rest


def drawn(digit: str, detached_hat: bool = False) -> np.ndarray:
    """uint8 (SIDE_PX, SIDE_PX), white strokes on black."""
    image = Image.new("L", (SIDE_PX, SIDE_PX), 0)
    pen = ImageDraw.Draw(image)
    for index, (kind, *numbers) in enumerate(STROKES[digit]):
        lift = HAT_GAP if detached_hat and index == 0 else 0.0
        x0, y0, x1, y1 = (v * SIDE_PX for v in numbers[:4])
        y0, y1 = y0 - lift * SIDE_PX, y1 - lift * SIDE_PX
        if kind == "line":
            pen.line([(x0, y0), (x1, y1)], fill=255, width=PEN_PX)
            for x, y in ((x0, y0), (x1, y1)):  # round caps
                pen.ellipse([x - PEN_PX / 2, y - PEN_PX / 2, x + PEN_PX / 2, y + PEN_PX / 2], fill=255)
        else:
            pen.arc([x0, y0, x1, y1], numbers[4], numbers[5], fill=255, width=PEN_PX)
    return np.asarray(image)


def bars(n_bars: int) -> Image.Image:
    """n_bars black vertical strokes on white, like the number canvas sends."""
    image = Image.new("L", (60 * n_bars + 40, 160), 255)
    pen = ImageDraw.Draw(image)
    for k in range(n_bars):
        pen.line([(40 + 60 * k, 30), (40 + 60 * k, 130)], fill=0, width=12)
    return image
