"""Aggregate the label shards of each model into the accuracy report.

Reads data/predictions/ (transfer model), data/predictions_cnn/ (CNN, when given; each with the model.json its
label stage copied there: the calibration temperature), data/jpg/testing,
data/jpg/own/ (your own test digits) → writes reports/metrics.json, predictions.csv, per_digit.csv,
misclassified.csv, disagreements.csv, own_predictions.csv, report.html.

Thin DVC entry point: the work is done in mnist_transfer.report.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from mnist_transfer.data.own import read_own_manifest
from mnist_transfer.evaluation.report import (
    DISAGREEMENT_COLUMNS,
    check_coverage,
    combined_metrics,
    disagreements,
    misclassified,
    model_results,
    own_table,
    per_digit_side_by_side,
    read_shards,
    write_csv,
    write_text,
)
from mnist_transfer.evaluation.report_html import render_report
from mnist_transfer.models.metadata import read_metadata
from mnist_transfer.params import Params
from mnist_transfer.runner import run_stage

log = logging.getLogger("report")


def main(params: Params) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--predictions", type=Path, required=True, help="transfer shards (data/predictions)")
    parser.add_argument("--cnn-predictions", type=Path, help="CNN shards (data/predictions_cnn), if any")
    parser.add_argument("--images", type=Path, required=True, help="test JPG folder (data/jpg/testing)")
    parser.add_argument("--own", type=Path, required=True, help="your own test digits (data/jpg/own/testing)")
    parser.add_argument("--own-manifest", type=Path, required=True, help="data/jpg/own/manifest.csv")
    parser.add_argument("--out", type=Path, required=True, help="reports folder (reports)")
    args = parser.parse_args()
    data_root = args.images.parent
    expected = {p.relative_to(data_root).as_posix() for folder in (args.images, args.own) for p in folder.glob("*/*") if p.is_file()}
    models = {}
    for name, folder in (("transfer", args.predictions), ("cnn", args.cnn_predictions)):
        if folder is not None:
            predictions = read_shards(folder)
            check_coverage(predictions, expected)
            models[name] = model_results(name, predictions.drop(columns="shard"), read_metadata(folder))
    transfer, cnn = models["transfer"], models.get("cnn")
    metrics = combined_metrics(transfer, cnn)
    tables = {
        "misclassified": misclassified(transfer.official),
        "disagreements": disagreements(transfer.official, cnn.official) if cnn else None,
        "own": own_table(transfer, cnn, read_own_manifest(args.own_manifest)),
    }
    write_text(json.dumps(metrics, indent=2) + "\n", args.out / "metrics.json")
    write_csv(transfer.official, args.out / "predictions.csv")
    write_csv(per_digit_side_by_side(transfer, cnn), args.out / "per_digit.csv")
    write_csv(tables["misclassified"], args.out / "misclassified.csv")
    write_csv(tables["disagreements"] if cnn else pd.DataFrame(columns=DISAGREEMENT_COLUMNS), args.out / "disagreements.csv")
    write_csv(tables["own"], args.out / "own_predictions.csv")
    write_text(render_report(models, tables, data_root), args.out / "report.html")
    log.info(
        "test accuracy %.4f on %d images (%d errors), ECE %.4f → %.4f calibrated%s%s; wrote the report to %s",
        metrics["accuracy"], metrics["n_images"], metrics["n_errors"],
        metrics["calibration"]["ece_before"], metrics["calibration"]["ece_after"],
        f", CNN {metrics['cnn']['accuracy']:.4f} (ECE {metrics['cnn']['calibration']['ece_before']:.4f} → "
        f"{metrics['cnn']['calibration']['ece_after']:.4f})" if cnn else "",
        f"; your own digits: {metrics['own']['accuracy']:.4f} on {metrics['own']['n_images']}" if "own" in metrics else "",
        args.out,
    )


if __name__ == "__main__":
    run_stage(main)
