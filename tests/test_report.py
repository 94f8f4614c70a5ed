"""Report stage: known-answer aggregation of hand-written shards, coverage checks, the HTML page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mnist_transfer.convert import encode_jpg
from mnist_transfer.report import (
    CoverageError,
    check_coverage,
    confusion_matrix,
    misclassified,
    per_digit_table,
    read_shards,
    summary_metrics,
)
from mnist_transfer.report_html import render_report
from tests.conftest import REPO_ROOT

HEADER = "path,actual,predicted,confidence,correct\n"
# 8 images: digit 1 ×3 (one read as 7), digit 7 ×4 (two read as 1), digit 0 ×1
SHARD_0 = HEADER + "testing/1/00001.jpg,1,1,0.99,1\ntesting/1/00002.jpg,1,7,0.60,0\ntesting/7/00003.jpg,7,7,0.95,1\ntesting/0/00008.jpg,0,0,0.90,1\n"
SHARD_1 = HEADER + "testing/7/00004.jpg,7,1,0.80,0\ntesting/7/00005.jpg,7,1,0.55,0\ntesting/7/00006.jpg,7,7,0.97,1\ntesting/1/00007.jpg,1,1,0.98,1\n"
ALL_PATHS = {line.split(",")[0] for line in (SHARD_0 + SHARD_1).splitlines() if line.startswith("testing")}


@pytest.fixture
def predictions_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "predictions"
    folder.mkdir()
    (folder / "shard-0.csv").write_text(SHARD_0)
    (folder / "shard-1.csv").write_text(SHARD_1)
    return folder


def test_known_answer_aggregation(predictions_dir: Path):
    predictions = read_shards(predictions_dir)
    check_coverage(predictions, ALL_PATHS)
    matrix = confusion_matrix(predictions)
    assert matrix[1, 1] == 2 and matrix[1, 7] == 1 and matrix[7, 1] == 2 and matrix[7, 7] == 2 and matrix[0, 0] == 1
    assert matrix.sum() == 8
    per_digit = per_digit_table(matrix).set_index("digit")
    assert per_digit.loc[1, "n"] == 3 and per_digit.loc[1, "correct"] == 2
    assert per_digit.loc[1, "accuracy"] == pytest.approx(2 / 3)
    assert per_digit.loc[7, "accuracy"] == pytest.approx(0.5) and per_digit.loc[7, "most_confused_with"] == 1
    assert per_digit.loc[1, "most_confused_with"] == 7 and pd.isna(per_digit.loc[0, "most_confused_with"])
    metrics = summary_metrics(predictions, per_digit_table(matrix))
    assert metrics["accuracy"] == pytest.approx(5 / 8) and metrics["n_images"] == 8 and metrics["n_errors"] == 3
    assert metrics["mean_confidence"] == pytest.approx(np.mean([0.99, 0.60, 0.95, 0.90, 0.80, 0.55, 0.97, 0.98]))
    assert metrics["per_digit"]["7"] == pytest.approx(0.5) and metrics["per_digit"]["0"] == 1.0
    assert metrics["per_digit"]["3"] is None  # no image of that digit
    worst_first = misclassified(predictions)
    assert worst_first["path"].tolist() == ["testing/7/00004.jpg", "testing/1/00002.jpg", "testing/7/00005.jpg"]


def test_duplicated_row_fails_naming_the_image(predictions_dir: Path):
    (predictions_dir / "shard-1.csv").write_text(SHARD_1 + "testing/1/00001.jpg,1,1,0.99,1\n")
    with pytest.raises(CoverageError, match="testing/1/00001.jpg is labelled"):
        check_coverage(read_shards(predictions_dir), ALL_PATHS)


def test_missing_row_fails(predictions_dir: Path):
    (predictions_dir / "shard-1.csv").write_text(SHARD_1.replace("testing/7/00006.jpg,7,7,0.97,1\n", ""))
    with pytest.raises(CoverageError, match="1 test images have no prediction, e.g. testing/7/00006.jpg"):
        check_coverage(read_shards(predictions_dir), ALL_PATHS)


def test_stranger_row_fails(predictions_dir: Path):
    with pytest.raises(CoverageError, match="not in the test set"):
        check_coverage(read_shards(predictions_dir), ALL_PATHS - {"testing/0/00008.jpg"})


def test_no_shards_says_which_stage_to_run(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="label stage"):
        read_shards(tmp_path)


def write_test_images(data_root: Path) -> None:
    rng = np.random.default_rng(0)
    for path in ALL_PATHS:
        (data_root / path).parent.mkdir(parents=True, exist_ok=True)
        (data_root / path).write_bytes(encode_jpg(rng.integers(0, 256, (28, 28), dtype=np.uint8), 90))


def render(predictions_dir: Path, data_root: Path) -> str:
    predictions = read_shards(predictions_dir)
    matrix = confusion_matrix(predictions)
    per_digit = per_digit_table(matrix)
    return render_report(summary_metrics(predictions, per_digit), per_digit, matrix, misclassified(predictions), data_root)


def test_html_is_self_contained_with_one_inline_image_per_error(predictions_dir: Path, tmp_path: Path):
    from html.parser import HTMLParser

    write_test_images(tmp_path / "jpg")
    page = render(predictions_dir, tmp_path / "jpg")

    class Collector(HTMLParser):
        def __init__(self):
            super().__init__()
            self.images, self.external, self.open_tags = [], [], []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "img":
                self.images.append(attrs["src"])
            for key in ("src", "href"):
                if key in attrs and re.match(r"(https?:)?//", attrs[key] or ""):
                    self.external.append(attrs[key])

    collector = Collector()
    collector.feed(page)
    assert len(collector.images) == 3 and all(src.startswith("data:image/jpeg;base64,") for src in collector.images)
    assert collector.external == []  # nothing to fetch: opens from disk offline
    assert "62.50%" in page  # the headline accuracy
    assert page.count("<tr>") >= 11 + 10  # per-digit table and confusion matrix rows


def test_html_renders_in_headless_chromium(predictions_dir: Path, tmp_path: Path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium) for the screenshot check")
    write_test_images(tmp_path / "jpg")
    page = tmp_path / "report.html"
    page.write_text(render(predictions_dir, tmp_path / "jpg"))
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={screenshot}", "--window-size=1200,1600", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    from PIL import Image

    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 100 and pixels.std() > 10  # a rendered page, not a blank one


def test_report_stage_cli(predictions_dir: Path, tmp_path: Path):
    write_test_images(tmp_path / "jpg")
    out = tmp_path / "reports"
    subprocess.run(
        [sys.executable, "-m", "stages.report", "--predictions", str(predictions_dir), "--images", str(tmp_path / "jpg" / "testing"), "--out", str(out)],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(0.625) and metrics["n_images"] == 8
    assert (out / "predictions.csv").read_text().splitlines()[0] == "path,actual,predicted,confidence,correct"
    assert len((out / "misclassified.csv").read_text().splitlines()) == 4
    assert (out / "per_digit.csv").read_text().splitlines()[0] == "digit,n,correct,accuracy,most_confused_with"
