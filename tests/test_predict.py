"""`mnist-transfer predict` and DigitModel on a small transfer model trained here (stand-in backbone at 75 px):
synthetic photos of MNIST test digits, inputs, CSV, errors and exit codes."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageFilter
from scipy import ndimage
from skimage.morphology import skeletonize

from mnist_transfer.app import cli
from mnist_transfer.app.predict import CSV_COLUMNS, result_line, result_row
from mnist_transfer.data.idx import read_images, read_labels
from mnist_transfer.data.normalise import normalise_digit, read_image
from mnist_transfer.features.backbone import BackboneSpec, load_backbone
from mnist_transfer.models.export import load_exported
from mnist_transfer.models.head import train_head
from mnist_transfer.models.inference import DigitModel, ModelNotFoundError
from mnist_transfer.models.metadata import METADATA_FILE, ModelMetadata, write_metadata
from mnist_transfer.models.transfer import export_model
from mnist_transfer.params import TrainParams

N_TRAIN = 3000  # the first MNIST training digits: ~85 % validation accuracy with the stand-in
N_PHOTOS = 300


def read_split(mnist_dir: Path, prefix: str, folder: Path, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n_images of an MNIST split: uint8 (n, 28, 28) digits and their labels."""
    arrays = []
    for kind, reader in (("images-idx3", read_images), ("labels-idx1", read_labels)):
        idx_path = folder / f"{prefix}-{kind}-ubyte"
        idx_path.write_bytes(gzip.decompress((mnist_dir / f"{idx_path.name}.gz").read_bytes()))
        arrays.append(reader(idx_path)[:n_images])
    return arrays[0], arrays[1]


@pytest.fixture(scope="module")
def model_dir(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A transfer model exported as the train stage does, on N_TRAIN digits (~25 s of CPU)."""
    folder = tmp_path_factory.mktemp("model")
    digits, labels = read_split(mnist_dir, "train", folder, N_TRAIN)
    spec = BackboneSpec("keras", "", "random", 75)
    backbone = load_backbone(spec)
    features = np.concatenate([backbone.embed(digits[start : start + 500, :, :, None]) for start in range(0, N_TRAIN, 500)])
    head, _ = train_head(features, labels, np.arange(N_TRAIN) % 10 == 0, TrainParams(epochs=60), callbacks=[])
    export_model(head, spec, folder / "model")
    return folder / "model"


@pytest.fixture(scope="module")
def test_digits(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    return read_split(mnist_dir, "t10k", tmp_path_factory.mktemp("idx"), N_PHOTOS)


def photo_of(digit: np.ndarray, rng: np.random.Generator, thin_pen: bool = False) -> bytes:
    """A "phone photo" of an MNIST digit: dark ink on grey paper with noise and faint grid lines, 4-8× larger,
    off-centre on a larger page, slightly blurred, as JPEG bytes. thin_pen: the digit rewritten along its
    skeleton with a stroke 3 % of its size (a ballpoint; MNIST's strokes are ~12 %)."""
    side = round(28 * rng.uniform(4, 8))
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR), np.float64) / 255
    if thin_pen:
        ink = (ndimage.distance_transform_edt(~skeletonize(ink >= 0.5)) <= 0.015 * side * 20 / 28).astype(np.float64)
    height, width = (round(side * rng.uniform(1.3, 1.7)) for _ in range(2))
    page = np.full((height, width), rng.uniform(150, 210))
    step = int(rng.integers(18, 30))
    page[step // 2 :: step, :] -= 25
    page[:, step // 3 :: step] -= 25
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    region = page[top : top + side, left : left + side]
    page[top : top + side, left : left + side] = region - (region - rng.uniform(20, 70)) * ink
    page += rng.normal(0, 6, page.shape)
    photo = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 1.5)))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def predict(*argv: str | Path) -> int:
    """Run `mnist-transfer predict …` in this process; its exit status."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", *map(str, argv)])
    return exit_info.value.code


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        return list(reader)


@pytest.mark.parametrize("thin_pen", [False, True], ids=["mnist-strokes", "thin-pen"])
@pytest.mark.slow
def test_synthetic_photos_read_nearly_as_well_as_the_digits_themselves(
    model_dir: Path, test_digits: tuple[np.ndarray, np.ndarray], tmp_path: Path, thin_pen: bool
) -> None:
    digits, labels = test_digits
    rng = np.random.default_rng(9)
    photos = [photo_of(digit, rng, thin_pen) for digit in digits]
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, (photo, label) in enumerate(zip(photos, labels)):
        (folder / f"{index:04d}_{label}.jpg").write_bytes(photo)

    assert predict(folder, "--model", model_dir, "--csv", tmp_path / "photos.csv") == 0
    rows = read_csv(tmp_path / "photos.csv")
    normalised_accuracy = np.mean([row["digit"] == Path(row["path"]).stem[-1] for row in rows])
    plain_accuracy = np.mean(DigitModel.load(model_dir).predict(digits).argmax(axis=1) == labels)
    served = load_exported(model_dir).signatures["serving_default"]  # the exported model on the raw photos
    raw_accuracy = np.mean(served(images=tf.constant(photos))["digit"].numpy() == labels)
    print(f"\n{len(rows)} synthetic photos ({'thin pen' if thin_pen else 'MNIST strokes'}): plain digits {plain_accuracy:.1%}, photos normalised "
          f"{normalised_accuracy:.1%}, raw photos through serving_default {raw_accuracy:.1%}")
    assert len(rows) == N_PHOTOS
    assert plain_accuracy > 0.75  # the model is useful at all
    assert normalised_accuracy >= plain_accuracy - 0.03
    assert raw_accuracy < 0.35 and normalised_accuracy - raw_accuracy > 0.4


@pytest.fixture
def inputs(tmp_path: Path, test_digits: tuple[np.ndarray, np.ndarray]) -> Path:
    """inputs/{a/0.png, a/deep/1.png, a/notes.txt, b/2.jpg, b/2.png, b/7.bmp}: MNIST test digits 0-3 and 7."""
    digits, _ = test_digits
    root = tmp_path / "inputs"
    for name, index in (("a/0.png", 0), ("a/deep/1.png", 1), ("b/2.jpg", 2), ("b/2.png", 3), ("b/7.bmp", 7)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits[index]).save(root / name)
    (root / "a" / "notes.txt").write_text("not an image, and folders only yield image files")
    return root


def output_lines(capsys: pytest.CaptureFixture) -> list[list[str]]:
    return [line.split("  ") for line in capsys.readouterr().out.splitlines()]


@pytest.mark.slow
def test_folders_recursive_and_globs(model_dir: Path, inputs: Path, tmp_path: Path, capsys) -> None:
    assert predict(inputs / "a", str(inputs / "b" / "*.png"), "--model", model_dir, "--csv", tmp_path / "out.csv") == 0
    lines = output_lines(capsys)
    assert [Path(line[0]) for line in lines] == [inputs / "a/0.png", inputs / "a/deep/1.png", inputs / "b/2.png"]
    rows = read_csv(tmp_path / "out.csv")
    assert [row["path"] for row in rows] == [line[0] for line in lines]
    for row, line in zip(rows, lines):
        probabilities = np.array([float(row[f"p{digit}"]) for digit in range(10)])
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)
        assert row["digit"] == line[1] == str(probabilities.argmax())
        assert float(row["confidence"]) == pytest.approx(probabilities.max(), abs=1e-3) and line[2] == row["confidence"]
    model = DigitModel.load(model_dir)
    normalised = np.stack([normalise_digit(read_image(Path(row["path"]))) for row in rows])
    assert [row["digit"] for row in rows] == [str(digit) for digit in model.predict(normalised).argmax(axis=1)]


@pytest.mark.slow
def test_unreadable_and_blank_files_are_reported_and_the_others_labelled(model_dir: Path, inputs: Path, capsys) -> None:
    (inputs / "b" / "empty.png").write_bytes(b"")
    intact = (inputs / "b" / "2.jpg").read_bytes()
    (inputs / "b" / "corrupt.jpg").write_bytes(intact[: len(intact) // 2])
    Image.new("L", (64, 64), 255).save(inputs / "b" / "blank.png")
    status = predict(inputs / "b", inputs / "a" / "notes.txt", "--model", model_dir)
    lines = {Path(line[0]).name: line[1:] for line in output_lines(capsys)}
    assert status == 1
    assert lines["empty.png"] == ["error: empty file (0 bytes)"]
    assert lines["corrupt.jpg"][0].startswith("error: cannot decode")
    assert lines["blank.png"][0].startswith("error: no digit found")
    assert lines["notes.txt"] == ["error: not an image (Pillow cannot identify its format)"]
    # digit, confidence, model (and an unsure mark when below the default --min-confidence)
    assert all(len(lines[name]) in (3, 4) and lines[name][0].isdigit() and lines[name][2] == "transfer"
               for name in ("2.jpg", "2.png", "7.bmp"))


@pytest.mark.slow
def test_a_path_that_matches_nothing_is_reported_among_others(model_dir: Path, inputs: Path, capsys) -> None:
    assert predict(inputs / "a" / "0.png", inputs / "missing.png", "--model", model_dir) == 1
    lines = output_lines(capsys)
    assert lines[0] == [str(inputs / "missing.png"), "error: no such file or folder, or no match"]
    assert len(lines) == 2 and lines[1][1].isdigit()


@pytest.mark.parametrize("argv", [[], ["{tmp}/nothing-here/*.png"], ["{tmp}/absent.png"], ["{tmp}/empty-folder"]])
@pytest.mark.slow
def test_usage_errors_exit_2(model_dir: Path, tmp_path: Path, argv: list[str], capsys) -> None:
    (tmp_path / "empty-folder").mkdir()
    assert predict(*[arg.format(tmp=tmp_path) for arg in argv], "--model", model_dir) == 2
    assert capsys.readouterr().out == ""


def test_missing_model_says_to_run_dvc_repro(inputs: Path, tmp_path: Path, capsys) -> None:
    assert predict(inputs / "a", "--model", tmp_path / "no-model") == 1
    error = capsys.readouterr().err
    assert "no-model" in error and "dvc repro" in error and "Traceback" not in error


@pytest.mark.slow
def test_save_normalised_writes_the_28x28_the_model_saw(model_dir: Path, inputs: Path, test_digits, tmp_path: Path, capsys) -> None:
    digits, _ = test_digits
    seen = tmp_path / "seen"
    assert predict(inputs, "--model", model_dir, "--save-normalised", seen) == 0
    written = sorted(path.relative_to(seen).as_posix() for path in seen.rglob("*.png"))
    # b/2.jpg and b/2.png do not collide; the layout mirrors the inputs
    assert written == ["a/0.png.png", "a/deep/1.png.png", "b/2.jpg.png", "b/2.png.png", "b/7.bmp.png"]
    saved = np.asarray(Image.open(seen / "a" / "0.png.png"))
    assert saved.shape == (28, 28) and saved.dtype == np.uint8
    assert np.abs(saved.astype(int) - digits[0]).mean() < 2  # an MNIST digit comes out (almost) as it went in


@pytest.mark.slow
def test_digit_model_predicts_in_batches(model_dir: Path, test_digits) -> None:
    digits, _ = test_digits
    model = DigitModel.load(model_dir)
    whole = model.predict(digits[:10])
    assert whole.shape == (10, 10) and np.allclose(whole.sum(axis=1), 1.0, atol=1e-4)
    small_batches = DigitModel(model.model_dir, model.labels, model.identity, model.loaded, batch_size=3)
    assert np.allclose(small_batches.predict(digits[:10]), whole, atol=1e-5)
    assert model.predict(np.empty((0, 28, 28), np.uint8)).shape == (0, 10)
    assert model.labels == tuple(str(digit) for digit in range(10))
    assert model.identity.startswith(str(model_dir.resolve()) + "@")
    with pytest.raises(ValueError, match="uint8"):
        model.predict(digits[:2].astype(np.float32))


def test_digit_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="dvc repro"):
        DigitModel.load(tmp_path)
    with pytest.raises(ModelNotFoundError, match="model.tflite"):
        DigitModel.load(tmp_path, tflite=True)
    (tmp_path / "labels.txt").write_text("0\n1\n")  # an exported model, train.tflite off
    why = r"no model.tflite: .* only with train.tflite: true .*--model data/cnn"  # and where one is
    with pytest.raises(ModelNotFoundError, match=why):
        DigitModel.load(tmp_path, tflite=True)


# --- which model answers, and unsure answers ----------------------------------------------------------------------


def test_result_row_and_line_name_the_model_and_mark_unsure_answers() -> None:
    probabilities = np.array([0.01, 0.41, 0, 0, 0, 0, 0.05, 0.48, 0.05, 0], np.float32)
    labels = tuple(str(digit) for digit in range(10))
    row = result_row(Path("a/7.png"), probabilities, labels, "cnn", min_confidence=0.5)
    assert dict(zip(CSV_COLUMNS, row)) == {
        "path": "a/7.png", "digit": "7", "confidence": "0.480", **{f"p{d}": f"{p:.6f}" for d, p in enumerate(probabilities)},
        "model": "cnn", "unsure": "1",
    }
    assert result_line(row, probabilities, labels) == "a/7.png  7  0.480  cnn  unsure (7 0.48, 1 0.41)"
    sure = result_row(Path("a/7.png"), probabilities, labels, "transfer", min_confidence=0.48)
    assert sure[-1] == "0" and result_line(sure, probabilities, labels) == "a/7.png  7  0.480  transfer"
    assert CSV_COLUMNS[:13] == ("path", "digit", "confidence", *(f"p{d}" for d in range(10)))  # the contract


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1", "half", "nan"])
def test_min_confidence_outside_0_to_1_is_a_usage_error(value: str, tmp_path: Path, capsys) -> None:
    assert predict(tmp_path, "--min-confidence", value) == 2
    error = capsys.readouterr().err
    assert "--min-confidence" in error and "0 ≤ P < 1" in error and "Traceback" not in error


def test_no_model_anywhere_says_to_run_dvc_repro(inputs: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no data/model, no data/cnn here
    assert predict(inputs / "a") == 1
    error = capsys.readouterr().err
    assert "data/model or data/cnn" in error and "dvc repro" in error and "--model" in error


def linked_model(model_dir: Path, folder: Path, metadata: ModelMetadata) -> Path:
    """model_dir's files linked into folder, with its own model.json."""
    folder.mkdir(parents=True)
    for entry in model_dir.iterdir():
        if entry.name != METADATA_FILE:
            (folder / entry.name).symlink_to(entry.resolve())
    write_metadata(metadata, folder)
    return folder


@pytest.mark.slow
def test_the_better_model_answers_by_default_and_names_itself(
    model_dir: Path, inputs: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    linked_model(model_dir, tmp_path / "data" / "model", ModelMetadata("transfer", 0.90, 300))
    linked_model(model_dir, tmp_path / "data" / "cnn", ModelMetadata("cnn", 0.95, 300, temperature=1000.0))
    assert predict(inputs / "a", "--csv", tmp_path / "out.csv") == 0
    captured = capsys.readouterr()
    assert "cnn (data/cnn) answers: validation accuracy 95.00% vs transfer 90.00%" in captured.err
    lines = [line.split("  ") for line in captured.out.splitlines()]
    assert len(lines) == 2 and all(line[3] == "cnn" for line in lines)
    # T = 1000 flattens every answer to ~0.1: all unsure, the two likeliest digits named, the top digit kept
    assert all(line[4].startswith("unsure (" + line[1] + " 0.10, ") for line in lines)
    rows = read_csv(tmp_path / "out.csv")
    assert [row["model"] for row in rows] == ["cnn", "cnn"] and [row["unsure"] for row in rows] == ["1", "1"]
    assert all(float(row["confidence"]) < 0.11 for row in rows)

    assert predict(inputs / "a", "--model", tmp_path / "data" / "model", "--min-confidence", "0") == 0  # explicit
    captured = capsys.readouterr()
    assert "validation accuracy" not in captured.err  # no choice made
    assert all(line.split("  ")[3:] == ["transfer"] for line in captured.out.splitlines())


@pytest.mark.slow
def test_digit_model_applies_the_temperature(model_dir: Path, test_digits, tmp_path: Path) -> None:
    digits, _ = test_digits
    raw = DigitModel.load(model_dir)
    tempered = DigitModel.load(linked_model(model_dir, tmp_path / "cnn", ModelMetadata("cnn", 0.9, 10, temperature=2.0)))
    assert (raw.name, raw.temperature, tempered.name, tempered.temperature) == ("transfer", 1.0, "cnn", 2.0)
    expected = np.sqrt(raw.predict(digits[:20]))
    np.testing.assert_allclose(tempered.predict(digits[:20]), expected / expected.sum(axis=1, keepdims=True), atol=1e-5)
    assert tempered.identity != raw.identity
