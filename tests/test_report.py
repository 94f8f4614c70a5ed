"""Report stage: known-answer aggregation of hand-written shards, coverage checks, the HTML page."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mnist_transfer.data.convert import encode_jpg
from mnist_transfer.errors import DataError
from mnist_transfer.evaluation.report import (
    CoverageError,
    check_coverage,
    combined_metrics,
    confusion_matrix,
    disagreements,
    misclassified,
    model_results,
    own_table,
    per_digit_side_by_side,
    per_digit_table,
    read_shards,
    summary_metrics,
)
from mnist_transfer.evaluation.report_html import render_report
from mnist_transfer.models.metadata import ModelMetadata, write_metadata
from tests.conftest import REPO_ROOT, require_browser

HEADER = "path,actual,predicted,confidence,correct\n"
# 8 images: digit 1 ×3 (one read as 7), digit 7 ×4 (two read as 1), digit 0 ×1
SHARD_0 = HEADER + "testing/1/00001.jpg,1,1,0.99,1\ntesting/1/00002.jpg,1,7,0.60,0\ntesting/7/00003.jpg,7,7,0.95,1\ntesting/0/00008.jpg,0,0,0.90,1\n"
SHARD_1 = HEADER + "testing/7/00004.jpg,7,1,0.80,0\ntesting/7/00005.jpg,7,1,0.55,0\ntesting/7/00006.jpg,7,7,0.97,1\ntesting/1/00007.jpg,1,1,0.98,1\n"
ALL_PATHS = {line.split(",")[0] for line in (SHARD_0 + SHARD_1).splitlines() if line.startswith("testing")}
# the CNN on the same 8 images: right on 00002 (1) and 00004 (7), wrong on 00008 (0 read as 6)
CNN_SHARD = HEADER + (
    "testing/1/00001.jpg,1,1,0.99,1\ntesting/1/00002.jpg,1,1,0.90,1\ntesting/7/00003.jpg,7,7,0.95,1\n"
    "testing/0/00008.jpg,0,6,0.70,0\ntesting/7/00004.jpg,7,7,0.85,1\ntesting/7/00005.jpg,7,1,0.65,0\n"
    "testing/7/00006.jpg,7,7,0.97,1\ntesting/1/00007.jpg,1,1,0.98,1\n"
)
# your own test digits: the transfer model reads 1 of 2 right, the CNN both
OWN_ROWS = "own/testing/3/photo_3-ab.jpg,3,3,0.80,1\nown/testing/5/five-cd.jpg,5,6,0.51,0\n"
OWN_CNN_ROWS = "own/testing/3/photo_3-ab.jpg,3,3,0.90,1\nown/testing/5/five-cd.jpg,5,5,0.77,1\n"


@pytest.fixture
def predictions_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "predictions"
    folder.mkdir()
    (folder / "shard-0.csv").write_text(SHARD_0)
    (folder / "shard-1.csv").write_text(SHARD_1)
    return folder


def agreement(*shards: str) -> tuple[int, int]:
    """(rows whose actual == predicted, rows) of shard CSV texts: the known answer, never their `correct` column."""
    rows = [row for shard in shards for row in csv.DictReader(io.StringIO(shard))]
    return sum(row["actual"] == row["predicted"] for row in rows), len(rows)


def test_known_answer_aggregation(predictions_dir: Path):
    n_right, n_images = agreement(SHARD_0, SHARD_1)
    assert (n_right, n_images) == (5, 8)
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
    assert metrics["accuracy"] == pytest.approx(n_right / n_images) and metrics["n_images"] == n_images
    assert metrics["n_errors"] == n_images - n_right
    assert metrics["mean_confidence"] == pytest.approx(np.mean([0.99, 0.60, 0.95, 0.90, 0.80, 0.55, 0.97, 0.98]))
    assert metrics["per_digit"]["7"] == pytest.approx(0.5) and metrics["per_digit"]["0"] == 1.0
    assert metrics["per_digit"]["3"] is None  # no image of that digit
    worst_first = misclassified(predictions)
    assert worst_first["path"].tolist() == ["testing/7/00004.jpg", "testing/1/00002.jpg", "testing/7/00005.jpg"]


@pytest.mark.parametrize(
    "row, lied, line",
    [("testing/7/00003.jpg,7,7,0.95,1", "testing/7/00003.jpg,7,7,0.95,0", 4),  # right, but says wrong
     ("testing/1/00002.jpg,1,7,0.60,0", "testing/1/00002.jpg,1,7,0.60,1", 3)],  # wrong, but says right
    ids=["right-says-wrong", "wrong-says-right"],
)
def test_a_correct_column_that_contradicts_actual_and_predicted_is_refused(predictions_dir: Path, row, lied, line):
    """Averaging such a column would misreport the accuracy (4/8 or 6/8 here instead of 5/8)."""
    (predictions_dir / "shard-0.csv").write_text(SHARD_0.replace(row, lied))
    path, actual, predicted, _, correct = lied.split(",")
    expected = f"shard-0.csv line {line} ({path}): correct={correct} but actual={actual}, predicted={predicted}"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_shards(predictions_dir)


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


def write_test_images(data_root: Path, paths: set[str] = ALL_PATHS) -> None:
    rng = np.random.default_rng(0)
    for path in paths:
        (data_root / path).parent.mkdir(parents=True, exist_ok=True)
        (data_root / path).write_bytes(encode_jpg(rng.integers(0, 256, (28, 28), dtype=np.uint8), 90))


def render(predictions_dir: Path, data_root: Path, cnn_dir: Path | None = None, own_manifest: list | None = None) -> str:
    transfer = model_results("transfer", read_shards(predictions_dir).drop(columns="shard"))
    cnn = model_results("cnn", read_shards(cnn_dir).drop(columns="shard")) if cnn_dir else None
    tables = {
        "misclassified": misclassified(transfer.official),
        "disagreements": disagreements(transfer.official, cnn.official) if cnn else None,
        "own": own_table(transfer, cnn, own_manifest or []),
    }
    return render_report({"transfer": transfer, "cnn": cnn}, tables, data_root)


@pytest.fixture
def two_models_and_own(predictions_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The transfer shards plus your own digits, and a CNN's single shard on the same images."""
    (predictions_dir / "shard-1.csv").write_text(SHARD_1 + OWN_ROWS)
    cnn_dir = tmp_path / "predictions_cnn"
    cnn_dir.mkdir()
    (cnn_dir / "shard-0.csv").write_text(CNN_SHARD + OWN_CNN_ROWS)
    return predictions_dir, cnn_dir


def test_two_models_side_by_side_known_answer(two_models_and_own):
    predictions_dir, cnn_dir = two_models_and_own
    transfer = model_results("transfer", read_shards(predictions_dir).drop(columns="shard"))
    cnn = model_results("cnn", read_shards(cnn_dir).drop(columns="shard"))
    metrics = combined_metrics(transfer, cnn)
    assert metrics["accuracy"] == pytest.approx(5 / 8) and metrics["n_images"] == 8  # own digits stay out
    assert metrics["cnn"]["accuracy"] == pytest.approx(6 / 8) and metrics["cnn"]["n_errors"] == 2
    assert metrics["cnn"]["per_digit"] == {**{str(d): None for d in range(10)}, "0": 0.0, "1": 1.0, "7": 0.75}
    assert metrics["own"] == {"accuracy": 0.5, "n_images": 2, "per_digit": {**{str(d): None for d in range(10)}, "3": 1.0, "5": 0.0}}
    assert metrics["cnn"]["own"]["accuracy"] == 1.0
    table = per_digit_side_by_side(transfer, cnn).set_index("digit")
    assert table.loc[1, "accuracy"] == pytest.approx(2 / 3) and table.loc[1, "cnn_accuracy"] == 1.0
    assert table.loc[7, "accuracy"] == 0.5 and table.loc[7, "cnn_accuracy"] == 0.75 and table.loc[0, "cnn_accuracy"] == 0.0
    differ = disagreements(transfer.official, cnn.official)
    assert differ[["path", "actual", "transfer", "cnn"]].values.tolist() == [
        ["testing/0/00008.jpg", 0, 0, 6], ["testing/1/00002.jpg", 1, 7, 1], ["testing/7/00004.jpg", 7, 1, 7],
    ]


def test_own_table_names_the_originals(two_models_and_own):
    predictions_dir, cnn_dir = two_models_and_own
    transfer = model_results("transfer", read_shards(predictions_dir).drop(columns="shard"))
    cnn = model_results("cnn", read_shards(cnn_dir).drop(columns="shard"))
    manifest = [{"path": "own/testing/5/five-cd.jpg", "original": "data/own/testing/five.png"}]
    table = own_table(transfer, cnn, manifest)
    assert table["path"].tolist() == ["own/testing/3/photo_3-ab.jpg", "own/testing/5/five-cd.jpg"]
    assert table["original"].tolist() == ["", "data/own/testing/five.png"]
    assert table["predicted"].tolist() == [3, 6] and table["cnn_predicted"].tolist() == [3, 5]


def test_html_shows_both_models_disagreements_and_your_handwriting(two_models_and_own, tmp_path: Path):
    predictions_dir, cnn_dir = two_models_and_own
    data_root = tmp_path / "jpg"
    write_test_images(data_root, ALL_PATHS | {"own/testing/3/photo_3-ab.jpg", "own/testing/5/five-cd.jpg"})
    original = tmp_path / "five.png"
    from PIL import Image

    Image.new("RGB", (160, 120), "white").save(original)
    page = render(predictions_dir, data_root, cnn_dir, [{"path": "own/testing/5/five-cd.jpg", "original": str(original)}])
    assert "62.50%" in page and "75.00%" in page  # both headlines
    assert "Where the two models disagree (3)" in page
    assert "Your handwriting (2 digits" in page and page.count("data:image/png;base64,") == 1  # one original found
    assert "From-scratch CNN" in page


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


@pytest.mark.browser
def test_html_renders_in_headless_chromium(predictions_dir: Path, tmp_path: Path):
    chromium, _driver = require_browser()
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
        [sys.executable, "-m", "stages.report", "--predictions", str(predictions_dir), "--images", str(tmp_path / "jpg" / "testing"),
         "--own", str(tmp_path / "jpg" / "own" / "testing"), "--own-manifest", str(tmp_path / "none.csv"), "--out", str(out)],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(0.625) and metrics["n_images"] == 8
    assert (out / "predictions.csv").read_text().splitlines()[0] == "path,actual,predicted,confidence,correct"
    assert len((out / "misclassified.csv").read_text().splitlines()) == 4
    assert (out / "per_digit.csv").read_text().splitlines()[0] == "digit,n,correct,accuracy,most_confused_with"


# --- calibration: ECE before/after, reliability diagrams, risk–coverage --------------------------------------------

# 4 digits answered at a raw 0.95, 3 of them right; the label stage's calibrated confidence 0.75 (T = 2 would do it)
CALIBRATED_SHARD = "path,actual,predicted,confidence,correct,raw_confidence\n" + "".join(
    f"testing/{d}/0000{i}.jpg,{d},{d if i else (d + 1) % 10},0.750000,{int(i > 0)},0.950000\n" for i, d in enumerate((1, 3, 5, 7))
)


def test_calibration_metrics_known_answer(tmp_path: Path):
    folder = tmp_path / "predictions"
    folder.mkdir()
    (folder / "shard-0.csv").write_text(CALIBRATED_SHARD)
    results = model_results("cnn", read_shards(folder).drop(columns="shard"), ModelMetadata("cnn", 0.99, 100, temperature=2.0))
    assert results.metrics["calibration"] == {"temperature": 2.0, "ece_before": pytest.approx(0.2), "ece_after": 0.0, "n_bins": 15}
    plain = model_results("transfer", read_shards(folder).drop(columns=["shard", "raw_confidence"]))  # shards of old
    assert plain.metrics["calibration"] == {"temperature": 1.0, "ece_before": 0.0, "ece_after": 0.0, "n_bins": 15}
    assert combined_metrics(plain, results)["cnn"]["calibration"]["temperature"] == 2.0


def test_known_answer_shards_calibration_and_the_charts(two_models_and_own, tmp_path: Path):
    predictions_dir, cnn_dir = two_models_and_own
    transfer = model_results("transfer", read_shards(predictions_dir).drop(columns="shard"))
    # confidences 0.99 ✓ 0.60 ✗ 0.95 ✓ 0.90 ✓ | 0.80 ✗ 0.55 ✗ 0.97 ✓ 0.98 ✓: four 15-bins by hand
    by_hand = (4 * abs(1 - (0.99 + 0.95 + 0.97 + 0.98) / 4) + abs(1 - 0.90) + 2 * abs(0 - (0.60 + 0.55) / 2) + abs(0 - 0.80)) / 8
    assert transfer.metrics["calibration"]["ece_before"] == pytest.approx(by_hand)
    data_root = tmp_path / "jpg"
    write_test_images(data_root, ALL_PATHS | {"own/testing/3/photo_3-ab.jpg", "own/testing/5/five-cd.jpg"})
    page = render(predictions_dir, data_root, cnn_dir)
    assert "Calibration: how far to trust the confidence" in page
    assert page.count('class="reliability"') == 4 and page.count('class="risk-coverage"') == 2  # 2 models × (test, own)
    assert "MNIST test set (8 digits)" in page and "Your handwriting (2 digits)" in page


def test_html_names_the_model_predict_answers_with(predictions_dir: Path, tmp_path: Path):
    write_test_images(tmp_path / "jpg")
    transfer = model_results("transfer", read_shards(predictions_dir).drop(columns="shard"), ModelMetadata("transfer", 0.96, 10))
    cnn = model_results("cnn", read_shards(predictions_dir).drop(columns="shard"), ModelMetadata("cnn", 0.99, 10))
    tables = {"misclassified": misclassified(transfer.official), "disagreements": None, "own": own_table(transfer, None, [])}
    page = render_report({"transfer": transfer, "cnn": cnn}, tables, tmp_path / "jpg")
    assert "By default, predict and serve answer with cnn (validation accuracy: transfer 96.00%, cnn 99.00%)" in page


def test_report_stage_reads_the_temperature_beside_the_shards(tmp_path: Path):
    write_test_images(tmp_path / "jpg", {line.split(",")[0] for line in CALIBRATED_SHARD.splitlines()[1:]})
    folder = tmp_path / "predictions"
    folder.mkdir()
    (folder / "shard-0.csv").write_text(CALIBRATED_SHARD)
    write_metadata(ModelMetadata("transfer", 0.9, 100, temperature=2.0), folder)
    out = tmp_path / "reports"
    subprocess.run(
        [sys.executable, "-m", "stages.report", "--predictions", str(folder), "--images", str(tmp_path / "jpg" / "testing"),
         "--own", str(tmp_path / "jpg" / "own" / "testing"), "--own-manifest", str(tmp_path / "none.csv"), "--out", str(out)],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["calibration"] == {"temperature": 2.0, "ece_before": pytest.approx(0.2), "ece_after": 0.0, "n_bins": 15}
    assert metrics["accuracy"] == 0.75  # the top-level keys stay the transfer model's
