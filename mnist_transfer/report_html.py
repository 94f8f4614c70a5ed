"""The self-contained HTML page of the report stage: inline CSS, inline SVG chart, inline images.

Opens from disk with no network: nothing is fetched, every image is a data: URI.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #1d2733; }
h1 { margin-bottom: 0.2rem; } .headline { font-size: 3rem; font-weight: 700; color: #1b6e3a; }
.muted { color: #5d6b7a; } table { border-collapse: collapse; margin: 1rem 0; }
td, th { padding: 0.25rem 0.6rem; text-align: right; border-bottom: 1px solid #e3e8ee; }
.confusion td { width: 2.6rem; text-align: center; border: 1px solid #fff; font-size: 0.85rem; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.6rem; }
.card { width: 6.2rem; text-align: center; font-size: 0.75rem; border: 1px solid #e3e8ee; border-radius: 6px; padding: 0.3rem; }
.card img { width: 56px; height: 56px; image-rendering: pixelated; }
.bad { color: #b3261e; font-weight: 600; }
"""


def accuracy_chart_svg(per_digit: pd.DataFrame) -> str:
    """Horizontal bars of per-digit accuracy, scaled from the worst digit's accuracy (minus a margin) to 100 %."""
    accuracies = per_digit["accuracy"].fillna(0).to_numpy()
    low = max(0.0, float(np.floor((accuracies.min() - 0.02) * 50) / 50))
    bar_px, width_px, left_px = 22, 520, 40
    bars = []
    for position, (digit, accuracy) in enumerate(zip(per_digit["digit"], accuracies)):
        y = position * (bar_px + 4)
        length = (accuracy - low) / (1 - low) * (width_px - left_px - 70) if low < 1 else 0
        bars.append(
            f'<text x="{left_px - 8}" y="{y + 16}" text-anchor="end">{digit}</text>'
            f'<rect x="{left_px}" y="{y}" width="{max(length, 1):.1f}" height="{bar_px}" fill="#3b7dd8"/>'
            f'<text x="{left_px + length + 6:.1f}" y="{y + 16}">{accuracy:.2%}</text>'
        )
    height_px = len(bars) * (bar_px + 4)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width_px}" height="{height_px + 20}" font-size="13">'
        + "".join(bars)
        + f'<text x="{left_px}" y="{height_px + 16}" class="muted">axis from {low:.0%} to 100%</text></svg>'
    )


def confusion_table(matrix: np.ndarray) -> str:
    """Counts with a heat colour per cell: row-normalised, so every digit's errors show whatever its size."""
    row_totals = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    shares = matrix / row_totals
    header = "<tr><th>actual ↓ predicted →</th>" + "".join(f"<th>{d}</th>" for d in range(matrix.shape[1])) + "</tr>"
    rows = []
    for actual in range(matrix.shape[0]):
        cells = []
        for predicted in range(matrix.shape[1]):
            share = shares[actual, predicted]
            if actual == predicted:
                colour = f"rgba(27, 110, 58, {0.15 + 0.85 * share:.3f})"
            else:
                colour = f"rgba(179, 38, 30, {min(1.0, share * 8):.3f})"  # errors are rare: amplify
            text = "#fff" if (actual == predicted and share > 0.5) or (actual != predicted and share > 0.06) else "#1d2733"
            cells.append(f'<td style="background:{colour};color:{text}" title="{share:.2%}">{matrix[actual, predicted]}</td>')
        rows.append(f"<tr><th>{actual}</th>{''.join(cells)}</tr>")
    return f'<table class="confusion">{header}{"".join(rows)}</table>'


def gallery(wrong: pd.DataFrame, data_root: Path) -> str:
    cards = []
    for row in wrong.itertuples():
        image_uri = "data:image/jpeg;base64," + base64.b64encode((data_root / row.path).read_bytes()).decode("ascii")
        cards.append(
            f'<div class="card"><img src="{image_uri}" alt="{html.escape(row.path)}">'
            f'<div>true <b>{row.actual}</b> → <span class="bad">{row.predicted}</span></div>'
            f'<div class="muted">{row.confidence:.1%}</div></div>'
        )
    return f'<div class="gallery">{"".join(cards)}</div>' if cards else "<p>No misclassified digits.</p>"


def per_digit_html(per_digit: pd.DataFrame) -> str:
    rows = "".join(
        f"<tr><td>{r.digit}</td><td>{r.n}</td><td>{r.correct}</td><td>{r.accuracy:.2%}</td>"
        f"<td>{'' if pd.isna(r.most_confused_with) else r.most_confused_with}</td></tr>"
        for r in per_digit.itertuples()
    )
    return f"<table><tr><th>digit</th><th>images</th><th>correct</th><th>accuracy</th><th>most confused with</th></tr>{rows}</table>"


def render_report(metrics: dict, per_digit: pd.DataFrame, matrix: np.ndarray, wrong: pd.DataFrame, data_root: Path) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MNIST test accuracy {metrics['accuracy']:.2%}</title>
<style>{STYLE}</style></head><body>
<h1>MNIST digit classifier: test-set report</h1>
<p class="muted">Official test set, never used for training or model selection.</p>
<div class="headline">{metrics['accuracy']:.2%}</div>
<p>{metrics['n_images']:,} images, {metrics['n_errors']:,} errors, mean confidence {metrics['mean_confidence']:.2%}.
<a href="nightly/trend.svg">Accuracy per nightly run</a> <span class="muted">(drawn by scripts/nightly.py)</span></p>
<h2>Per digit</h2>
<div style="display:flex;gap:2rem;flex-wrap:wrap;align-items:flex-start">{per_digit_html(per_digit)}{accuracy_chart_svg(per_digit)}</div>
<h2>Confusion matrix</h2>
{confusion_table(matrix)}
<h2 id="misclassified">Misclassified digits ({len(wrong):,}), most confident first</h2>
{gallery(wrong, data_root)}
</body></html>
"""
