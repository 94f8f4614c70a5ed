"""benchmarks/pipeline.py's arithmetic: stage windows from DVC's output, compute vs overhead, the table, the records."""

from __future__ import annotations

import inspect
import re

import pytest

from benchmarks.memory import GIB, ProcessTrace
from benchmarks.pipeline import (
    COMPUTED_LINE,
    DVC_START,
    StageRow,
    fit_compute,
    reader_compute,
    forward_passes,
    parse_settings,
    peak_rss,
    record_rows,
    stage_rows,
    stage_windows,
    table_lines,
    total_row,
)
from mnist_transfer.features import embedding
from scripts import docs_hooks

LINES = [
    (1.0, "Running stage 'download':"),
    (2.0, "download: wrote 4 files"),
    (3.0, "Running stage 'bottlenecks':"),
    (5.0, "embedding: computed 600 features in 2.0s (300.0 images/s)"),
    (6.0, "embedding: computed 400 features in 1.0s (400.0 images/s)"),
    (7.0, "Running stage 'train':"),
]
TOTALS = [(0.5, 100), (1.5, 300), (4.0, 900), (6.5, 700), (9.0, 500)]
TRACES = {  # pid → one process seen: dvc throughout, a bottlenecks worker, the train stage
    1: ProcessTrace("dvc", 50, 0.0, 10.0), 2: ProcessTrace("worker", 600, 3.5, 6.9), 3: ProcessTrace("train", 450, 7.2, 9.8),
}


class FakeSampler:
    totals, traces = TOTALS, TRACES


def test_stage_windows_run_from_one_running_stage_line_to_the_next() -> None:
    assert stage_windows(LINES, 10.0) == [
        (DVC_START, 0.0, 1.0), ("download", 1.0, 3.0), ("bottlenecks", 3.0, 7.0), ("train", 7.0, 10.0),
    ]


@pytest.mark.parametrize(("start_s", "end_s", "images", "peak"), [
    (0.0, 1.0, 0, 100), (1.0, 3.0, 0, 300), (3.0, 7.0, 1000, 900), (7.0, 10.0, 0, 500), (5.5, 6.0, 0, 0),
])
def test_forward_passes_and_peak_rss_within_a_window(start_s: float, end_s: float, images: int, peak: int) -> None:
    assert forward_passes(LINES, start_s, end_s) == images
    assert peak_rss(TOTALS, start_s, end_s) == peak


def test_the_forward_pass_count_follows_the_embedding_log() -> None:
    """COMPUTED_LINE reads what ensure_features logs (its format string, filled in)."""
    (message,) = re.findall(r'"(computed %d[^"]*)"', inspect.getsource(embedding.ensure_features))
    assert COMPUTED_LINE.search("embedding: " + message % (120, 3.0, 40.0)).group(1) == "120"


def test_fit_compute_is_epochs_times_steps_times_the_step_time() -> None:
    seconds, counted = fit_compute({"epochs_run": 3, "n_train": 2500}, batch_size=1024, step_s=0.01)
    assert seconds == pytest.approx(0.09)  # 3 epochs × ⌈2500 / 1024⌉ = 3 steps × 10 ms
    assert counted == "3 epochs × 3 steps × 10.0 ms"


def test_compute_at_a_bare_rate_is_never_more_than_the_stage_spent() -> None:
    # 3 epochs × 3 steps × 10 ms = 0.09 s at the bare rate; the stage's own fit took 0.05 s, so 0.05 s counts
    assert fit_compute({"epochs_run": 3, "n_train": 2500, "train_seconds": 0.05}, 1024, 0.01) == (
        0.05, "3 epochs × 3 steps × 10.0 ms > its own 0.1 s")
    assert fit_compute({"epochs_run": 3, "n_train": 2500, "train_seconds": 0.5}, 1024, 0.01)[0] == pytest.approx(0.09)
    reader = {"epochs_run": 3, "n_train": 2500, "pair_epochs_run": 2, "pair_n_train": 1500, "pair_train_seconds": 0.1}
    assert reader_compute(reader, 1024, 0.01, 0.05)[0] == pytest.approx(0.09 + 0.1)  # pairs: 0.2 s bare, 0.1 s own


def test_reader_compute_adds_the_pair_classifier_at_its_own_step_time() -> None:
    reader = {"epochs_run": 3, "n_train": 2500}
    assert reader_compute(reader, 1024, 0.01, 0.05) == fit_compute(reader, 1024, 0.01)  # no pair classifier
    seconds, counted = reader_compute({**reader, "pair_epochs_run": 2, "pair_n_train": 1500}, 1024, 0.01, 0.05)
    assert seconds == pytest.approx(3 * 3 * 0.01 + 2 * 2 * 0.05)
    assert counted == "3 epochs × 3 steps × 10.0 ms + pairs: 2 epochs × 2 steps × 50.0 ms"


def test_stage_rows_count_forward_passes_and_fits_as_compute() -> None:
    rows = stage_rows(LINES, FakeSampler(), 10.0, forward_s=0.002, fits={"train": (1.5, "5 epochs")})
    assert [(row.name, row.wall_s, row.compute_s, row.peak_rss_bytes, row.largest_process_bytes) for row in rows] == [
        (DVC_START, 1.0, 0.0, 100, 50), ("download", 2.0, 0.0, 300, 50),
        ("bottlenecks", 4.0, 2.0, 900, 600), ("train", 3.0, 1.5, 500, 450),
    ]
    assert rows[2].counted == "1,000 forward passes × 2.00 ms"
    assert (rows[2].overhead_s, rows[2].overhead_share) == (2.0, 0.5)


def test_segmenting_counts_as_compute_and_the_last_line_also_gives_the_share_without_it() -> None:
    rows = stage_rows(LINES, FakeSampler(), 10.0, forward_s=0.002, fits={"train": (1.0, "5 epochs")},
                      segmenting={"train": (0.5, "40 + 20 numbers segmented")})
    train = rows[-1]
    assert (train.compute_s, train.segmenting_s, train.counted) == (1.5, 0.5, "5 epochs, 40 + 20 numbers segmented")
    assert total_row(rows).segmenting_s == 0.5
    # walls 1 + 2 + 4 + 3 = 10 s; compute 2 + 1.5 = 3.5 s: overhead 65 %, 70 % with the 0.5 s of segmenting
    lines = table_lines(rows)
    assert lines[-2] == "overhead share of the pipeline's wall time: 65% (misses the goal of ≤ 25%)"
    assert lines[-1] == "with the segmenting of numbers counted as overhead, as records before it was measured did: 70%"


def test_the_total_sums_walls_and_computes_and_gives_the_overhead_share() -> None:
    total = total_row([StageRow("a", 10.0, 2.0, 2 * GIB, largest_process_bytes=GIB), StageRow("b", 30.0, 22.0, GIB)])
    assert (total.wall_s, total.compute_s, total.overhead_s, total.peak_rss_bytes) == (40.0, 24.0, 16.0, 2 * GIB)
    assert total.largest_process_bytes == GIB
    assert total.overhead_share == pytest.approx(0.4)
    assert StageRow("empty", 0.0, 0.0, 0).overhead_share == 0.0


@pytest.mark.parametrize(("compute_s", "share", "verdict"), [(6.0, "40%", "misses"), (8.0, "20%", "meets")])
def test_the_table_ends_with_the_total_and_the_goal(compute_s: float, share: str, verdict: str) -> None:
    lines = table_lines([StageRow("train", 10.0, compute_s, GIB, "2 epochs")])
    assert lines[1].split()[:2] == ["train", "10.0"] and lines[1].endswith("2 epochs")
    assert lines[2].split()[0] == "total"
    assert lines[-1] == f"overhead share of the pipeline's wall time: {share} ({verdict} the goal of ≤ 25%)"


@pytest.mark.parametrize(("pair", "expected"), [
    ("cnn.epochs=2", {"cnn.epochs": 2}),
    ("label.tflite_min_agreement=0.9", {"label.tflite_min_agreement": 0.9}),
    ("cnn.filters=[16, 32]", {"cnn.filters": [16, 32]}),
])
def test_settings_are_dotted_keys_with_yaml_values(pair: str, expected: dict) -> None:
    assert parse_settings([pair]) == expected


@pytest.mark.parametrize("pair", ["cnn.epochs", "=2"])
def test_a_setting_without_key_or_value_is_refused(pair: str) -> None:
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_settings([pair])


def test_the_records_render_as_one_row_per_stage_on_the_benchmarks_page(tmp_path) -> None:
    record_rows([StageRow("bottlenecks", 4.0, 2.0, GIB)], {"per class": 30, "set": None}, True, records_dir=tmp_path)
    page = docs_hooks.benchmark_records_markdown(tmp_path)
    assert "### `pipeline`" in page and "2 run(s)" in page
    assert "| 30 | — | bottlenecks | 4 | 2 | 2 | 50 | 1 |" in page
    assert "| 30 | — | total | 4 | 2 | 2 | 50 | 1 |" in page


def test_no_record_writes_nothing(tmp_path, capsys) -> None:
    record_rows([StageRow("bottlenecks", 4.0, 2.0, GIB)], {"per class": 30}, False, records_dir=tmp_path)
    assert not list(tmp_path.iterdir())
    assert capsys.readouterr().out == "not recorded (--no-record)\n"
