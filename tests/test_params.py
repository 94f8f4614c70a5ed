"""The params schema: every rule refuses a bad value in one line naming key, value and what is allowed."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnist_transfer.app import cli
from mnist_transfer.errors import DEBUG_ENV, ParamsError, StageError
from mnist_transfer.params import GET_BACK_HINT, Params, TrainParams, load_params, read_params, schema_fields
from mnist_transfer.runner import run_stage
from scripts.params_table import params_table_markdown

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))


def params_with(tmp_path: Path, updates: dict[str, Any], deletions: tuple[str, ...] = ()) -> Path:
    """A copy of the repository's params.yaml with dotted keys set (or deleted), written to tmp_path."""
    params = copy.deepcopy(REPO_PARAMS)
    for dotted_key, value in updates.items():
        *parents, leaf = dotted_key.split(".")
        section = params
        for parent in parents:
            section = section.setdefault(parent, {})
        section[leaf] = value
    for dotted_key in deletions:
        *parents, leaf = dotted_key.split(".")
        section = params
        for parent in parents:
            section = section[parent]
        del section[leaf]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(ParamsError) as caught:
        read_params(path)
    return str(caught.value)


# (dotted key, bad value, what the message must say is allowed): one row per rule
BAD_VALUES = [
    ("data.mirrors", [], "at least 1 item"),
    ("data.mirrors", "https://example.org/", "valid list"),
    ("data.files", [{"name": "x.gz", "bytes": 10}], "data.files[0].sha256 is missing"),
    ("data.files", [{"name": "x.gz", "bytes": 10, "sha256": "abc"}], "should match pattern"),
    ("data.files", [{"name": "x.gz", "bytes": 0, "sha256": "a" * 64}], "greater than or equal to 1"),
    ("data.files", [{"name": "x", "bytes": 1, "sha256": "a" * 64}], "should match pattern"),
    ("data.download.attempts", 0, "greater than or equal to 1"),
    ("data.download.backoff_s", -1, "greater than or equal to 0"),
    ("data.download.timeout_s", 0, "greater than 0"),
    ("data.split_sizes.training", 0, "greater than or equal to 1"),
    ("data.limit_per_class", 0, "greater than or equal to 1"),
    ("data.limit_per_class", 2.5, "valid integer"),
    ("data.jpeg_quality", 500, "less than or equal to 95"),
    ("data.jpeg_quality", 0, "greater than or equal to 1"),
    ("data.convert_workers", 0, "greater than or equal to 1"),
    ("backbone.source", "torch", "'tfhub' or 'keras'"),
    ("backbone.weights", "imagenet21k", "'imagenet' or 'random'"),
    ("backbone.image_size", 74, "greater than or equal to 75"),
    ("backbone.seed", -1, "greater than or equal to 0"),
    ("bottlenecks.batch_size", 0, "greater than or equal to 1"),
    ("bottlenecks.chunk_images", 0, "greater than or equal to 1"),
    ("bottlenecks.workers", 0, "greater than or equal to 1"),
    ("train.validation_percentage", 0, "greater than 0"),
    ("train.validation_percentage", 100, "less than 100"),
    ("train.learning_rate", -1, "greater than 0"),
    ("train.learning_rate", 0, "greater than 0"),
    ("train.learning_rate", "fast", "valid number"),
    ("train.learning_rate", True, "not true/false"),
    ("train.epochs", "abc", "valid integer"),
    ("train.epochs", 0, "greater than or equal to 1"),
    ("train.batch_size", 0, "greater than or equal to 1"),
    ("train.batch_size", True, "valid integer"),
    ("train.hidden_units", -5, "greater than or equal to 0"),
    ("train.dropout", 1.0, "less than 1"),
    ("train.dropout", -0.1, "greater than or equal to 0"),
    ("train.label_smoothing", 1, "less than 1"),
    ("train.patience", -1, "greater than or equal to 0"),
    ("train.seed", -1, "greater than or equal to 0"),
    ("train.own_weight", -1, "greater than or equal to 0"),
    ("train.shuffle_labels", "yes", "valid boolean"),
    ("train.tflite", 1, "valid boolean"),
    ("label.shards", 0, "greater than or equal to 1"),
    ("label.workers", 0, "greater than or equal to 1"),
    ("label.parity_sample", -1, "greater than or equal to 0"),
    ("executor.scheduler", "10.0.0.5:8786", "tcp://10.0.0.5:8786"),
    ("executor.scheduler", "", "must be `local` or a Dask scheduler address"),
]


@pytest.mark.parametrize(("key", "value", "allowed"), BAD_VALUES, ids=[f"{k}={v!r}"[:60] for k, v, _ in BAD_VALUES])
def test_a_bad_value_is_refused_in_one_line_naming_key_value_and_rule(tmp_path, key, value, allowed):
    message = refusal(params_with(tmp_path, {key: value}))
    assert key in message and allowed in message
    assert "\n" not in message
    assert message.endswith(GET_BACK_HINT) and "git checkout params.yaml" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("data.limit_per_class", 1),
        ("data.jpeg_quality", 1),
        ("data.split_sizes", None),
        ("data.split_sizes.testing", None),
        ("data.convert_workers", 2),
        ("data.mirrors", ["/srv/mnist", "file:///srv/mnist/"]),
        ("backbone.image_size", 75),
        ("train.validation_percentage", 99.5),
        ("train.learning_rate", 1),  # an int is a fine float
        ("train.learning_rate", "1e-3"),  # PyYAML reads 1e-3 (as `dvc exp run -S` writes it) as text
        ("train.dropout", 0.99),
        ("train.hidden_units", 0),
        ("train.patience", 0),
        ("label.parity_sample", 0),
        ("executor.scheduler", "tcp://10.0.0.5:8786"),
    ],
)
def test_boundary_values_are_accepted(tmp_path, key, value):
    read_params(params_with(tmp_path, {key: value}))


def test_learning_rate_written_by_dvc_as_1e_3_reads_as_a_number(tmp_path):
    assert read_params(params_with(tmp_path, {"train.learning_rate": "1e-3"})).train.learning_rate == 0.001


@pytest.mark.parametrize(
    ("updates", "expected"),
    [
        ({"backbone.source": "tfhub", "backbone.weights": "random"}, "backbone.weights = random only applies with"),
        ({"backbone.source": "tfhub", "backbone.handle": " "}, "backbone.handle must name a model"),
    ],
)
def test_cross_field_rules(tmp_path, updates, expected):
    assert expected in refusal(params_with(tmp_path, updates))


def test_keras_source_accepts_random_weights_and_an_empty_handle(tmp_path):
    updates = {"backbone.source": "keras", "backbone.weights": "random", "backbone.handle": ""}
    assert read_params(params_with(tmp_path, updates)).backbone.weights == "random"


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("train.learnig_rate", "train.learning_rate"),
        ("label.worker", "label.workers"),
        ("data.jpeg_qualty", "data.jpeg_quality"),
        ("data.download.attempt", "data.download.attempts"),
        ("trian", "train"),
    ],
)
def test_unknown_keys_are_refused_with_a_suggestion(tmp_path, typo, suggestion):
    path = params_with(tmp_path, {typo: 1} if "." in typo else {})
    if "." not in typo:
        path.write_text(path.read_text() + f"{typo}:\n  epochs: 3\n")
    assert f"unknown key {typo} (did you mean {suggestion}?)" in refusal(path)


def test_unknown_key_far_from_any_known_points_to_the_reference(tmp_path):
    message = refusal(params_with(tmp_path, {"train.zzz": 1}))
    assert "unknown key train.zzz (see the params reference, docs/params.md)" in message


def test_every_problem_is_reported_at_once(tmp_path):
    message = refusal(params_with(tmp_path, {"train.epochs": "abc", "label.workers": 0, "train.learnig_rate": 1}))
    for key in ("train.epochs = 'abc'", "label.workers = 0", "train.learnig_rate"):
        assert key in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train:\n  epochs: [1,\n", "line 3"),
        ("- just\n- a list\n", "must be a mapping of sections"),
    ],
)
def test_a_file_that_is_not_a_params_mapping_is_refused_in_one_line(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    message = refusal(path)
    assert expected in message and str(path) in message and "\n" not in message


def test_a_missing_file_says_where_to_run_from(tmp_path):
    assert "run from the repository root" in refusal(tmp_path / "params.yaml")


def test_a_removed_key_falls_back_to_the_schema_default(tmp_path):
    assert read_params(params_with(tmp_path, {}, deletions=("train.patience",))).train.patience == 5


def test_the_schema_defaults_are_the_repository_params():
    assert read_params(REPO_ROOT / "params.yaml") == Params()


def test_the_transfer_tflite_is_opt_in_and_says_why():
    assert TrainParams().tflite is False and REPO_PARAMS["train"]["tflite"] is False
    row = next(line for line in params_table_markdown().splitlines() if line.startswith("| `train.tflite` |"))
    assert "`false`" in row and "CNN's quantised" in row and "4 GiB" in row


def test_load_params_returns_validated_values(tmp_path):
    path = params_with(tmp_path, {"train.learning_rate": "1e-3", "data.split_sizes": None})
    train = load_params("train", path)
    assert isinstance(train, TrainParams) and train.learning_rate == 0.001
    assert load_params("data", path).split_sizes is None
    with pytest.raises(ParamsError, match="no section 'nope'"):
        load_params("nope", path)
    with pytest.raises(ParamsError, match="label.workers"):
        load_params("train", params_with(tmp_path, {"label.workers": 0}))  # the whole file is checked


def test_params_table_has_one_row_per_schema_key():
    table = params_table_markdown()
    assert "| `train.learning_rate` | 0.001 | Adam learning rate (> 0) |" in table
    assert "| `data.limit_per_class` | `null` |" in table
    assert len(table.splitlines()) == 2 + len(schema_fields())


@pytest.mark.parametrize(
    ("updates", "status", "expected"), [({}, 0, "OK"), ({"train.batch_size": 0}, 1, "train.batch_size")]
)
def test_check_params_command(tmp_path, capsys, updates, status, expected):
    path = params_with(tmp_path, updates)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check-params", "--params", str(path)])
    assert exit_info.value.code == status
    assert expected in capsys.readouterr()[1 if status else 0]


def _bad_params_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params_with(tmp_path, {"label.workers": 0})
    monkeypatch.chdir(tmp_path)


def test_run_stage_refuses_bad_params_before_main_runs(tmp_path, monkeypatch, caplog):
    _bad_params_dir(tmp_path, monkeypatch)
    calls = []
    with pytest.raises(SystemExit) as exit_info:
        run_stage(lambda params: calls.append("ran"))
    assert exit_info.value.code == 1 and calls == []
    assert "label.workers = 0 is not allowed" in caplog.text


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (StageError("data/jpg/x.jpg is not a JPEG; rerun convert"), "data/jpg/x.jpg is not a JPEG; rerun convert"),
        (OSError(28, "No space left on device", "data/model/tmp"), "No space left on device: 'data/model/tmp'"),
        (KeyError("features"), f"unexpected KeyError: 'features' (likely a bug: rerun with {DEBUG_ENV}=1"),
    ],
)
def test_run_stage_ends_any_error_in_one_line(tmp_path, monkeypatch, caplog, error, expected):
    params_with(tmp_path, {})
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEBUG_ENV, raising=False)

    def failing_main(params: Params) -> None:
        raise error

    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_info:
        run_stage(failing_main)
    assert exit_info.value.code == 1
    assert expected in caplog.text and "Traceback" not in caplog.text


def test_run_stage_keeps_the_traceback_under_debug(tmp_path, monkeypatch):
    params_with(tmp_path, {})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DEBUG_ENV, "1")

    def buggy_main(params: Params) -> None:
        raise KeyError("features")

    with pytest.raises(KeyError):
        run_stage(buggy_main)


def test_the_offline_profile_is_valid_params(tmp_path):
    """Every key of the offline profile exists in the schema and its value is allowed there."""
    from mnist_transfer.params import OFFLINE_PROFILE, offline_overrides
    from scripts.params_table import schema_fields

    assert set(OFFLINE_PROFILE) <= {key for key, _ in schema_fields()}
    params = read_params(params_with(tmp_path, offline_overrides(tmp_path)))
    assert params.backbone.source == "keras" and params.backbone.image_size == 75
    assert params.data.mirrors == [str(tmp_path.resolve())]
