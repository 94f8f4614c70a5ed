"""The self-contained HTML page of the report stage, rendered with Jinja2 from templates/report.html.j2.

Opens from disk with no network: nothing is fetched, every image is a data: URI, the charts (per-digit
accuracy, reliability diagrams, risk–coverage curves) are inline SVG.
This module only prepares numbers, colours and images; the markup lives in the template.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mnist_transfer.evaluation.report import raw_confidences
from mnist_transfer.models.calibration import expected_calibration_error, reliability_bins, risk_coverage
from mnist_transfer.models.metadata import choose_model

CHART_BAR_PX, CHART_WIDTH_PX, CHART_LEFT_PX = 11, 520, 40
PLOT_PX, PLOT_MARGIN_PX = 220, 36  # the square plot area of a reliability diagram or risk–coverage curve
MAX_CURVE_POINTS = 200  # points per risk–coverage polyline (evenly spread over the thresholds)
MIN_ANSWERS_PLOTTED = 20  # a risk–coverage curve starts at this many answers: before, one error swings it 0–100 %
THUMBNAIL_PX = 96  # longer side of an original photo's thumbnail in the "Your handwriting" section


@lru_cache(maxsize=2)
def template_environment(package: str = "mnist_transfer.evaluation") -> Any:
    """Jinja2 templates of `package`'s templates/ folder (the report's here; the web app passes its own)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(payload).decode("ascii")


def thumbnail_uri(path: Path) -> str | None:
    """A small PNG of one of your original photos, or None if the file is gone or unreadable."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            small = ImageOps.exif_transpose(image).convert("RGB")
            small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    except (OSError, ValueError):
        return None
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return data_uri(buffer.getvalue(), "image/png")


def chart_bars(accuracy_by_model: dict[str, np.ndarray]) -> dict[str, Any]:
    """Geometry of grouped horizontal bars (one group per digit, one bar per model), scaled from a floor."""
    values = np.concatenate([np.nan_to_num(a) for a in accuracy_by_model.values()])
    low = max(0.0, float(np.floor((values.min() - 0.02) * 50) / 50))
    span_px = CHART_WIDTH_PX - CHART_LEFT_PX - 70
    group_px = CHART_BAR_PX * len(accuracy_by_model) + 6
    bars = []
    for digit in range(10):
        for position, (model, accuracies) in enumerate(accuracy_by_model.items()):
            accuracy = float(np.nan_to_num(accuracies[digit]))
            length = (accuracy - low) / (1 - low) * span_px if low < 1 else 0.0
            y = digit * group_px + position * CHART_BAR_PX
            bars.append({"digit": digit, "model": model, "position": position, "y": y, "length": max(length, 1.0),
                         "accuracy": accuracy})
    return {"bars": bars, "low": low, "height": 10 * group_px + 24, "width": CHART_WIDTH_PX, "left": CHART_LEFT_PX,
            "bar": CHART_BAR_PX}


def confusion_cells(matrix: np.ndarray) -> list[list[dict[str, Any]]]:
    """Per cell: count, share of its row, and a heat colour (errors amplified: they are rare)."""
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    rows = []
    for actual in range(matrix.shape[0]):
        cells = []
        for predicted in range(matrix.shape[1]):
            share = float(shares[actual, predicted])
            diagonal = actual == predicted
            background = f"rgba(27, 110, 58, {0.15 + 0.85 * share:.3f})" if diagonal else f"rgba(179, 38, 30, {min(1.0, share * 8):.3f})"
            dark = (diagonal and share > 0.5) or (not diagonal and share > 0.06)
            cells.append({"count": int(matrix[actual, predicted]), "share": share, "background": background,
                          "colour": "#fff" if dark else "#1d2733"})
        rows.append(cells)
    return rows


def plain_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain values: pandas' NA/NaN become None, so the template can test `is none`."""
    return [{key: None if pd.isna(value) else value for key, value in row.items()} for row in frame.to_dict("records")]


def image_cards(table: pd.DataFrame, data_root: Path) -> list[dict[str, Any]]:
    """Each row of a predictions-like table with its JPG inline."""
    return [dict(row._asdict(), image=data_uri((data_root / row.path).read_bytes(), "image/jpeg")) for row in table.itertuples(index=False)]


def own_cards(own: pd.DataFrame, data_root: Path) -> list[dict[str, Any]]:
    """Your own test digits: the original photo's thumbnail beside the normalised 28×28 the models saw."""
    cards = image_cards(own, data_root)
    for card in cards:
        card["original_image"] = thumbnail_uri(Path(card["original"])) if card.get("original") else None
    return cards


def plot_point(x: float, y: float, low: float = 0.0) -> tuple[float, float]:
    """Data (x in 0..1, y in low..1) → SVG pixels of a PLOT_PX square plot behind PLOT_MARGIN_PX margins."""
    return PLOT_MARGIN_PX + x * PLOT_PX, PLOT_MARGIN_PX + (1 - (y - low) / (1 - low)) * PLOT_PX


def polyline(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def reliability_chart(frame: pd.DataFrame) -> dict[str, Any]:
    """A reliability diagram of one model on one set of digits: accuracy against mean confidence per 15-bin,
    before (raw_confidence) and after (confidence) calibration; on the diagonal is a calibrated model."""
    correct = frame["correct"].to_numpy()
    series = []
    for label, confidences in (("before", raw_confidences(frame).to_numpy()), ("after", frame["confidence"].to_numpy())):
        points = []
        for rbin in reliability_bins(confidences, correct):
            if rbin.n_images:
                x, y = plot_point(rbin.confidence, rbin.accuracy)
                points.append({"x": x, "y": y, "r": 1.5 + 3.5 * np.sqrt(rbin.n_images / len(frame)),
                               "n": rbin.n_images, "accuracy": rbin.accuracy, "confidence": rbin.confidence})
        series.append({"label": label, "points": points, "path": polyline([(pt["x"], pt["y"]) for pt in points]),
                       "ece": expected_calibration_error(confidences, correct)})
    return {"series": series, "diagonal": polyline([plot_point(0, 0), plot_point(1, 1)])}


def coverage_chart(frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Risk–coverage curves, one per model: the accuracy of the answers kept when only the most confident
    share (coverage) is answered. Temperature scaling keeps the order of confidences, so one curve per model."""
    curves = {}
    for name, frame in frames.items():
        coverage, accuracy = risk_coverage(frame["confidence"].to_numpy(), frame["correct"].to_numpy())
        settled = coverage * len(frame) >= min(MIN_ANSWERS_PLOTTED, len(frame)) - 0.5  # from enough answers on
        curves[name] = coverage[settled], accuracy[settled]
    lowest = min(float(accuracy.min()) for _, accuracy in curves.values())
    low = min(0.98, max(0.0, float(np.floor((lowest - 0.01) * 50) / 50)))
    lines = []
    for name, (coverage, accuracy) in curves.items():
        keep = np.unique(np.linspace(0, len(coverage) - 1, num=min(len(coverage), MAX_CURVE_POINTS)).round().astype(int))
        lines.append({"model": name, "path": polyline([plot_point(coverage[k], accuracy[k], low) for k in keep])})
    return {"lines": lines, "low": low, "min_answers": MIN_ANSWERS_PLOTTED}


def calibration_sections(models: dict[str, Any]) -> list[dict[str, Any]]:
    """Per set of digits (MNIST's test set; your own, when there are any): each model's reliability diagram
    and the models' risk–coverage curves."""
    present = {name: results for name, results in models.items() if results is not None}
    sections = []
    for title, part in (("MNIST test set", "official"), ("Your handwriting", "own")):
        frames = {name: getattr(results, part) for name, results in present.items() if len(getattr(results, part))}
        if frames:
            sections.append({
                "title": title, "n_images": len(next(iter(frames.values()))),
                "reliability": {name: reliability_chart(frame) for name, frame in frames.items()},
                "coverage": coverage_chart(frames),
            })
    return sections


def default_model_line(models: dict[str, Any]) -> str | None:
    """Which model `predict` and `serve` answer with, by the rule of mnist_transfer.models.metadata, and the
    figures that decide; None unless every model's model.json is known."""
    present = [results for results in models.values() if results is not None]
    if len(present) < 2 or any(results.metadata is None for results in present):
        return None
    chosen = present[choose_model([(results.name, results.metadata) for results in present]).index]
    figures = ", ".join(f"{results.name} {results.metadata.val_accuracy:.2%}" for results in present)
    return f"By default, predict and serve answer with {chosen.name} (validation accuracy: {figures})"


def render_report(models: dict[str, Any], tables: dict[str, pd.DataFrame], data_root: Path) -> str:
    """The page. models: {"transfer": ModelResults, "cnn": ModelResults | None}; tables: misclassified,
    disagreements (or None), own (your own test digits, possibly empty)."""
    transfer, cnn = models["transfer"], models.get("cnn")
    accuracy_by_model = {"transfer": transfer.per_digit["accuracy"].to_numpy()}
    if cnn is not None:
        accuracy_by_model["cnn"] = cnn.per_digit["accuracy"].to_numpy()
    disagreeing = tables.get("disagreements")
    return template_environment().get_template("report.html.j2").render(
        transfer=transfer,
        cnn=cnn,
        per_digit=list(zip(plain_rows(transfer.per_digit), plain_rows(cnn.per_digit) if cnn else [None] * 10)),
        chart=chart_bars(accuracy_by_model),
        confusion=confusion_cells(transfer.matrix),
        cnn_confusion=confusion_cells(cnn.matrix) if cnn is not None else None,
        misclassified=image_cards(tables["misclassified"], data_root),
        disagreements=image_cards(disagreeing, data_root) if disagreeing is not None else None,
        own=own_cards(tables["own"], data_root),
        calibration=calibration_sections(models),
        plot={"px": PLOT_PX, "margin": PLOT_MARGIN_PX, "size": PLOT_PX + 2 * PLOT_MARGIN_PX},
        default_model=default_model_line(models),
    )
