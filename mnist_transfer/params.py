"""The schema of params.yaml: one pydantic model per section, validated as a whole before any stage works.

Each field's `description` is its row in the generated params reference (scripts/params_table.py), so the
documentation cannot drift from what is enforced. A stage reads the file once (mnist_transfer.runner) and hands
typed sections or plain values to the core. Imports nothing heavy: `mnist-transfer check-params` uses it.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from mnist_transfer.errors import ParamsError

PARAMS_FILE = Path("params.yaml")
MIN_IMAGE_SIZE_PX = 75  # the smallest input InceptionV3 accepts
BackboneSource = Literal["tfhub", "keras"]
SOURCES = get_args(BackboneSource)  # ("tfhub", "keras")
GET_BACK_HINT = (
    "To get back after a failed experiment: `git checkout params.yaml` (or `dvc exp apply <last good experiment>`, "
    "names in `dvc exp show`); `mnist-transfer check-params` checks a file without running anything."
)
SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://\S+$")


def _refuse_bool(value: Any) -> Any:
    """YAML's true/false must not pass for 1/0 in a numeric field."""
    if isinstance(value, bool):
        raise ValueError("input should be a number, not true/false")  # noqa: TRY004 - pydantic wants ValueError
    return value


# Numbers: ints strictly (5.5 or "abc" refused); floats also from strings such as "1e-3", which YAML 1.1
# (PyYAML) reads as text although `dvc exp run -S` writes them that way.
Real = Annotated[float, Field(strict=False), BeforeValidator(_refuse_bool)]


def _field(default: Any, description: str, shown: str | None = None, **constraints: Any) -> Any:
    """A field with its description in the params reference (docs/params.md); `shown` replaces a default too long for the table."""
    extra = {"shown": shown} if shown is not None else None
    return Field(default, description=description, json_schema_extra=extra, **constraints)


class Section(BaseModel):
    """A params.yaml section: unknown keys are refused, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PinnedFile(Section):
    name: str = Field(min_length=1, pattern=r"\.gz$", description="file name on the mirrors")
    bytes: int = Field(ge=1, description="exact size in bytes")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="64 hex digits")


MNIST_FILES = (
    PinnedFile(
        name="train-images-idx3-ubyte.gz",
        bytes=9912422,
        sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    PinnedFile(
        name="train-labels-idx1-ubyte.gz",
        bytes=28881,
        sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    PinnedFile(
        name="t10k-images-idx3-ubyte.gz",
        bytes=1648877,
        sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    PinnedFile(
        name="t10k-labels-idx1-ubyte.gz",
        bytes=4542,
        sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
)
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


class DownloadParams(Section):
    attempts: int = _field(3, "tries per mirror for transient errors (5xx, 429, resets, timeouts)", ge=1)
    backoff_s: Real = _field(1.0, "seconds before the 2nd attempt; doubles after each failure", ge=0)
    timeout_s: Real = _field(60.0, "socket timeout per request, seconds", gt=0)


class SplitSizes(Section):
    training: int | None = _field(60000, "images the training IDX files must hold (`null`: no check)", ge=1)
    testing: int | None = _field(10000, "images the testing IDX files must hold (`null`: no check)", ge=1)


class DataParams(Section):
    mirrors: list[Annotated[str, Field(min_length=1)]] = _field(
        list(MNIST_MIRRORS),
        "base locations tried in order: `https://…/`, `http://…/`, `file:///…/` or a folder",
        shown="S3 (ossci-datasets), Google storage (CVDF), yann.lecun.com",
        min_length=1,
    )
    files: list[PinnedFile] = _field(
        list(MNIST_FILES),
        "the pinned data version: `name`, `bytes`, `sha256` of each file; change it to pin another one",
        shown="the four MNIST files",
        min_length=1,
    )
    download: DownloadParams = Field(default_factory=DownloadParams)
    split_sizes: SplitSizes | None = Field(default_factory=SplitSizes, description="`null`: no size checks")
    limit_per_class: int | None = _field(None, "keep the first N images per digit per split (quick runs)", ge=1)
    jpeg_quality: int = _field(95, "PIL's JPEG quality, 1..95", ge=1, le=95)
    convert_workers: int | None = _field(None, "processes for `convert` (`null`: one per core)", ge=1)
    source: Literal["mnist", "kaggle"] = _field(
        "mnist", "`mnist` (the files above) or `kaggle` (Kaggle's Digit Recognizer CSVs, and a submission file)"
    )
    kaggle_dir: str = _field("data/kaggle", "for `kaggle`: the folder holding `train.csv` and `test.csv`", min_length=1)
    kaggle_holdout_percentage: Real = _field(
        10, "for `kaggle`: share of train.csv's rows kept aside as the labelled test set, in (0, 100) (stable hash)",
        gt=0, lt=100,
    )


class BackboneParams(Section):
    source: BackboneSource = _field("tfhub", "`tfhub` or `keras`")
    handle: str = _field(
        "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5",
        "for `tfhub`: a tfhub.dev/Kaggle URL or a local SavedModel folder",
        shown="Inception v3 feature vector on TF-Hub",
    )
    weights: Literal["imagenet", "random"] = _field(
        "imagenet", "for `keras`: `imagenet` or `random` (seeded offline stand-in)"
    )
    image_size: int = _field(
        299, f"pixels per side fed to the backbone (≥ {MIN_IMAGE_SIZE_PX})", ge=MIN_IMAGE_SIZE_PX
    )
    seed: int = _field(0, "seed of the `random` stand-in's weights", ge=0)

    @model_validator(mode="after")
    def _source_settings_agree(self) -> BackboneParams:
        if self.source == "tfhub" and not self.handle.strip():
            raise ValueError("backbone.handle must name a model when backbone.source is tfhub")
        if self.source == "tfhub" and self.weights == "random":
            raise ValueError(
                "backbone.weights = random only applies with backbone.source = keras; "
                "set backbone.source=keras too (the offline stand-in), or backbone.weights=imagenet"
            )
        return self


class BottlenecksParams(Section):
    batch_size: int = _field(128, "images per forward pass (~3 GB peak per worker at 299 px)", ge=1)
    chunk_images: int = _field(1024, "images per Dask task and per feature-store transaction", ge=1)
    workers: int = _field(1, "LocalCluster worker processes; each gets cores/workers TensorFlow threads", ge=1)


class TrainParams(Section):
    validation_percentage: Real = _field(
        10, "validation share of the training images, in (0, 100) (stable hash split)", gt=0, lt=100
    )
    learning_rate: Real = _field(0.001, "Adam learning rate (> 0)", gt=0)
    epochs: int = _field(30, "maximum epochs", ge=1)
    batch_size: int = _field(256, "images per training step", ge=1)
    hidden_units: int = _field(
        0, "0 = one softmax layer on the features, like retrain.py; else a ReLU layer first", ge=0
    )
    dropout: Real = _field(0.0, "dropout rate on the features, in [0, 1)", ge=0, lt=1)
    label_smoothing: Real = _field(0.0, "label smoothing, in [0, 1)", ge=0, lt=1)
    patience: int = _field(5, "early stopping: epochs without a lower validation loss (best epoch kept)", ge=0)
    seed: int = _field(0, "seed (training is deterministic)", ge=0)
    own_weight: Real = _field(
        10.0, "training-loss weight of each of your own digits (data/own/training) vs one MNIST digit", ge=0
    )
    shuffle_labels: bool = _field(False, "control experiment on randomly permuted labels")
    tflite: bool = _field(
        False,
        "also write data/model/model.tflite (backbone + head) and check it in `label`. Off: the phone model is the "
        "CNN's quantised data/cnn/model.tflite (0.2 MB); this one is ~90 MB float (the stand-in; ~22 MB int8 with "
        "Inception v3), and converting it peaks at ~4 GiB and costs minutes in every head-only experiment",
    )


class LabelParams(Section):
    shards: int = _field(4, "shards of the test set (stable hash of each image's path), one CSV each", ge=1)
    workers: int = _field(
        2, "LocalCluster worker processes for test images missing from the store (cores/workers threads each)", ge=1
    )
    parity_sample: int = _field(
        200, "test images also labelled through the exported SavedModel, which must agree (0: no check)", ge=0
    )
    tflite_min_agreement: Real = _field(
        0.99, "share of the parity sample on which model.tflite must predict the label stage's digit", gt=0, le=1
    )


class ExecutorParams(Section):
    scheduler: str = _field(
        "local",
        "`local` (a Dask LocalCluster started by the stage when features are missing) or the address of a "
        "separately started scheduler such as `tcp://10.0.0.5:8786`; its workers need only this package installed: "
        "no repository, data or feature store (see Running on a Dask cluster)",
    )

    @field_validator("scheduler")
    @classmethod
    def _local_or_address(cls, scheduler: str) -> str:
        if scheduler != "local" and not SCHEDULER_ADDRESS.match(scheduler):
            raise ValueError("must be `local` or a Dask scheduler address such as tcp://10.0.0.5:8786")
        return scheduler


class CnnAugmentParams(Section):
    """One random affine transform per training digit (rotation, zoom, shift) and random stroke width."""

    shift_px: Real = _field(3.0, "augmentation: random shift of each training digit, up to ± pixels (0: off)", ge=0, le=14)
    rotation_deg: Real = _field(10.0, "augmentation: random rotation, up to ± degrees (0: off)", ge=0, le=180)
    zoom: Real = _field(0.1, "augmentation: random zoom, up to ± this fraction of the size (0: off)", ge=0, lt=1)
    stroke_probability: Real = _field(
        0.2, "augmentation: share of training digits whose strokes get 1 px thicker or thinner (half each)", ge=0, le=1
    )


class CnnParams(Section):
    filters: list[Annotated[int, Field(ge=1)]] = _field(
        [16, 64],
        "filters of each conv block (two unpadded 3×3 convolutions and a 2×2 max pooling each; 1 or 2 blocks on 28 px)",
        min_length=1, max_length=2,
    )
    dense_units: int = _field(128, "units of the dense layer before the softmax", ge=1)
    dropout: Real = _field(0.25, "dropout rate before the softmax, in [0, 1)", ge=0, lt=1)
    learning_rate: Real = _field(
        0.01, "peak Adam learning rate of the one-cycle schedule (a linear warm-up over the first 20 % of the steps, "
        "then a cosine decay to 0)", gt=0,
    )
    batch_size: int = _field(256, "images per training step", ge=1)
    epochs: int = _field(5, "epochs: the schedule spans them all, and the last epoch's weights are kept", ge=1)
    label_smoothing: Real = _field(0.1, "label smoothing of the training loss, in [0, 1)", ge=0, lt=1)
    seed: int = _field(0, "seed of weights, shuffling and augmentation (training is deterministic)", ge=0)
    augment: CnnAugmentParams = Field(default_factory=CnnAugmentParams)


class ReaderParams(Section):
    """The number reader (stage train_reader): the CNN of `cnn.*` with an 11th class, "not one digit"."""

    numbers: int = _field(
        1500, "numbers of 2-6 training digits composed as photos and segmented; each candidate that is not one "
        "digit (half of one, two touching, a piece) is a 'not one digit' example (~37 candidates per number)", ge=1,
    )
    epochs: int = _field(3, "epochs of the one-cycle schedule over the training digits and those candidates", ge=1)
    workers: int | None = _field(
        None, "processes segmenting the composed numbers (null: one per core)", ge=1
    )
    pairs: bool = _field(
        True, "also train the pair classifier (data/reader/pairs.keras) on the candidates of those numbers and of "
        "reader.pair_numbers more that are two neighbouring digits, or not: reads two touching digits that no cut "
        "separates"
    )
    pair_numbers: int = _field(
        3000, "numbers of 2-4 training digits, most of them close or touching, composed and segmented for the pair "
        "classifier alone (~7 pairs each)", ge=0,
    )
    pair_epochs: int = _field(6, "epochs of the one-cycle schedule over the pair classifier's examples", ge=1)
    members: int = _field(
        2, "readers (and pair classifiers) fitted from seeds cnn.seed, cnn.seed + 1, …, their probabilities "
        "averaged into one model: each more costs one more fit and one more pass per candidate", ge=1,
    )
    dropout: Real = _field(
        0.4, "dropout rate before the softmax of the reader and its pair classifier, in [0, 1) (cnn.dropout is the "
        "digit CNN's)", ge=0, lt=1,
    )


class Params(Section):
    """The whole params.yaml."""

    data: DataParams = Field(default_factory=DataParams)
    backbone: BackboneParams = Field(default_factory=BackboneParams)
    bottlenecks: BottlenecksParams = Field(default_factory=BottlenecksParams)
    train: TrainParams = Field(default_factory=TrainParams)
    label: LabelParams = Field(default_factory=LabelParams)
    executor: ExecutorParams = Field(default_factory=ExecutorParams)
    cnn: CnnParams = Field(default_factory=CnnParams)
    reader: ReaderParams = Field(default_factory=ReaderParams)


# The offline profile: what `make repro-offline` (and the benchmarks) change from the defaults on a machine without
# network — the seeded random stand-in at its smallest size, and the head that won the queued sweep on its
# features (chosen by validation accuracy). The mirror is added by `offline_overrides`. At 75 px a forward pass is
# too small for one process to keep two cores busy: with one single-threaded worker per core the cold stage path
# embedded 60,000 training JPGs at 0.891 of the raw forward pass, against 0.802 for one two-threaded worker
# (2-core AMD EPYC, benchmarks.bottlenecks, 2026-12-04); at 299 px the default of one worker halves the memory.
OFFLINE_PROFILE: dict[str, Any] = {
    "backbone.source": "keras",
    "backbone.weights": "random",
    "backbone.image_size": MIN_IMAGE_SIZE_PX,
    "bottlenecks.workers": 2,
    "train.hidden_units": 512,
    "train.dropout": 0.5,
    "train.label_smoothing": 0.1,
    "train.batch_size": 1024,
    "train.epochs": 60,
    "train.patience": 10,
}


def offline_overrides(mnist_mirror: Path) -> dict[str, Any]:
    """OFFLINE_PROFILE plus a local folder of the four MNIST .gz files as the only mirror."""
    return {"data.mirrors": [str(mnist_mirror.resolve())], **OFFLINE_PROFILE}


def read_params(params_file: Path) -> Params:
    """Read and validate the whole params file; a ParamsError names every bad key, its value and what is allowed."""
    try:
        return Params.model_validate(_read_yaml(params_file))
    except ValidationError as error:
        problems = [describe_error(detail) for detail in error.errors(include_url=False)]
        raise ParamsError(f"{params_file}: {'; '.join(problems)}. {GET_BACK_HINT}") from None


def load_params(section: str, params_file: Path = PARAMS_FILE) -> Section:
    """One validated section of params.yaml (the whole file is checked), for tools that need one section."""
    if section not in Params.model_fields:
        raise ParamsError(f"no section '{section}' in the params schema (mnist_transfer/params.py)")
    return getattr(read_params(params_file), section)


def _read_yaml(params_file: Path) -> dict[str, Any]:
    try:
        text = params_file.read_text(encoding="utf-8")
    except OSError as error:
        raise ParamsError(f"cannot read {params_file} ({error.strerror}); run from the repository root") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or error
        raise ParamsError(f"{params_file}{where}: not valid YAML ({problem}). {GET_BACK_HINT}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ParamsError(f"{params_file}: must be a mapping of sections (data:, backbone:, …). {GET_BACK_HINT}")
    return loaded


def describe_error(detail: dict[str, Any]) -> str:
    """One pydantic error as 'key = value is not allowed: why' (or 'unknown key …; did you mean …?')."""
    key = dotted_key(detail["loc"])
    message = str(detail["msg"]).removeprefix("Value error, ")
    if detail["type"] == "extra_forbidden":
        close = suggest_key(key)
        return f"unknown key {key}" + (f" (did you mean {close}?)" if close else " (see the params reference, docs/params.md)")
    if detail["type"] == "missing":
        return f"{key} is missing"
    if isinstance(detail.get("input"), dict) and detail["type"] == "value_error":
        return message  # a cross-field rule: its message names the keys
    return f"{key} = {_show_value(detail.get('input'))} is not allowed: {message[:1].lower()}{message[1:]}"


def suggest_key(key: str) -> str | None:
    """The known key closest to an unknown one among its siblings ('train.learnig_rate' → 'train.learning_rate')."""
    parent, _, leaf = key.rpartition(".")
    siblings = {known.rpartition(".")[2]: known for known in known_keys() if known.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    return siblings[close[0]] if close else None


def dotted_key(loc: tuple[int | str, ...]) -> str:
    """('data', 'files', 0, 'sha256') → 'data.files[0].sha256'."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _show_value(value: Any) -> str:
    shown = "null" if value is None else repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def section_model(annotation: Any) -> type[Section] | None:
    """The Section class a field holds (also inside Optional), or None for a leaf value."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation
    if getattr(annotation, "__origin__", None) in (list, dict, tuple):
        return None
    return next((model for arg in getattr(annotation, "__args__", ()) if (model := section_model(arg))), None)


def schema_fields(model: type[Section] = Params, prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf key of the schema in file order, as (dotted key, pydantic FieldInfo)."""
    rows = []
    for name, info in model.model_fields.items():
        nested = section_model(info.annotation)
        key = f"{prefix}{name}"
        rows += schema_fields(nested, f"{key}.") if nested else [(key, info)]
    return rows


def known_keys() -> list[str]:
    """Every key the schema knows, sections and subsections included (for 'did you mean …?')."""
    leaves = [key for key, _ in schema_fields()]
    return sorted({".".join(key.split(".")[:depth]) for key in leaves for depth in range(1, key.count(".") + 2)})
