"""Aggregate the label shards into the accuracy report.

Reads data/predictions/shard-*.csv and data/jpg/testing → writes reports/metrics.json,
reports/predictions.csv, reports/per_digit.csv, reports/misclassified.csv, reports/report.html.

Thin DVC entry point: the work is done in mnist_transfer.report.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mnist_transfer.common import run_stage, setup_logging
from mnist_transfer.report import (
    check_coverage,
    confusion_matrix,
    misclassified,
    per_digit_table,
    read_shards,
    summary_metrics,
    write_csv,
    write_text,
)
from mnist_transfer.report_html import render_report

log = logging.getLogger("report")


def main() -> None:
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--predictions", type=Path, required=True, help="shard folder (data/predictions)")
    parser.add_argument("--images", type=Path, required=True, help="test JPG folder (data/jpg/testing)")
    parser.add_argument("--out", type=Path, required=True, help="reports folder (reports)")
    args = parser.parse_args()
    data_root = args.images.parent
    predictions = read_shards(args.predictions).sort_values("path").reset_index(drop=True)
    check_coverage(predictions, {p.relative_to(data_root).as_posix() for p in args.images.glob("*/*") if p.is_file()})
    matrix = confusion_matrix(predictions)
    per_digit = per_digit_table(matrix)
    metrics = summary_metrics(predictions, per_digit)
    wrong = misclassified(predictions)

    write_text(json.dumps(metrics, indent=2) + "\n", args.out / "metrics.json")
    write_csv(predictions.drop(columns="shard"), args.out / "predictions.csv")
    write_csv(per_digit, args.out / "per_digit.csv")
    write_csv(wrong, args.out / "misclassified.csv")
    write_text(render_report(metrics, per_digit, matrix, wrong, data_root), args.out / "report.html")
    log.info(
        "test accuracy %.4f on %d images (%d errors); wrote metrics.json, predictions.csv, per_digit.csv, "
        "misclassified.csv and report.html to %s", metrics["accuracy"], metrics["n_images"], metrics["n_errors"], args.out,
    )


if __name__ == "__main__":
    run_stage(main)
