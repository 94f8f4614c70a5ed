"""The from-scratch CNN: it learns real digits (and not shuffled labels), deterministically; its augmentation and
the robustness distortions do what they say; its SavedModel agrees with the label_cnn stage; and in the real
pipeline a CNN-only experiment leaves the transfer model's stages alone."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mnist_transfer.data.convert import convert_all, encode_jpg
from mnist_transfer.data.distort import DISTORTIONS, distort
from mnist_transfer.data.idx import read_images, read_labels
from mnist_transfer.data.records import list_images
from mnist_transfer.data.split import validation_mask
from mnist_transfer.errors import DataError
from mnist_transfer.evaluation.label_cnn import write_cnn_shards
from mnist_transfer.evaluation.parity import ParityError, check_exported_parity, parity_sample
from mnist_transfer.evaluation.predictions import PREDICTION_COLUMNS, shard_of
from mnist_transfer.models.augment import affine_rows, augment_batch
from mnist_transfer.models.cnn import (
    CNN_FILE,
    N_PAIR_CLASSES,
    Digits,
    averaged,
    build_cnn,
    digit_pixels,
    export_cnn,
    load_digits,
    predict_probabilities,
    train_cnn,
    training_batches,
)
from mnist_transfer.models.export import LABELS_FILE, load_exported
from mnist_transfer.models.metadata import ModelMetadata, write_metadata
from mnist_transfer.params import CnnAugmentParams, CnnParams
from tests.conftest import configure_stand_in_run, run_dvc

# a small, quick CNN: enough to learn 2,400 digits in seconds
FAST = CnnParams(filters=[8, 16], dense_units=32, epochs=4, batch_size=64, learning_rate=0.01, seed=1)
N_DIGITS = 3000


@pytest.fixture(scope="module")
def mnist_digits(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """The first N_DIGITS real MNIST training digits, with data/jpg-style relative paths."""
    folder = tmp_path_factory.mktemp("idx")
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (folder / name).write_bytes(gzip.decompress((mnist_dir / f"{name}.gz").read_bytes()))
    images = read_images(folder / "train-images-idx3-ubyte")[:N_DIGITS, :, :, None]
    labels = read_labels(folder / "train-labels-idx1-ubyte")[:N_DIGITS].astype(np.int64)
    paths = np.array([f"training/{label}/{i:05d}.jpg" for i, label in enumerate(labels)])
    return Digits(images, labels, paths)


def split(digits: Digits) -> tuple[Digits, Digits]:
    is_validation = validation_mask(digits.rel_paths, 20)
    return digits.subset(~is_validation), digits.subset(is_validation)


@pytest.mark.slow
def test_cnn_learns_real_digits_and_not_shuffled_labels(mnist_digits: Digits):
    floor = 0.85  # 2,400 training digits, 4 epochs of a small net; chance is 0.1
    _, summary = train_cnn(*split(mnist_digits), FAST, callbacks=[])
    assert summary["val_accuracy"] > floor
    assert summary["n_train"] + summary["n_validation"] == N_DIGITS

    shuffled = np.random.default_rng(5).permutation(mnist_digits.labels)
    _, control = train_cnn(*split(Digits(mnist_digits.images, shuffled, mnist_digits.rel_paths)), FAST, callbacks=[])
    assert control["val_accuracy"] < floor and control["val_accuracy"] < 0.3


@pytest.mark.slow
def test_training_is_deterministic_for_a_seed(mnist_digits: Digits):
    small = mnist_digits.subset(np.arange(1000))
    quick = FAST.model_copy(update={"epochs": 2})
    first, _ = train_cnn(*split(small), quick, callbacks=[])
    second, _ = train_cnn(*split(small), quick, callbacks=[])
    other_seed, _ = train_cnn(*split(small), quick.model_copy(update={"seed": 2}), callbacks=[])
    probabilities = predict_probabilities(first, small.images)
    np.testing.assert_array_equal(probabilities, predict_probabilities(second, small.images))
    assert not np.array_equal(probabilities, predict_probabilities(other_seed, small.images))


def test_the_pair_head_is_a_pair_times_a_left_digit_times_a_right_digit(tmp_path: Path):
    """With its 22 learnt logits set by hand (left 3 and right 5 likelier, "a pair" against "not a pair"), the pair
    reader's 101 probabilities are p(pair) · p(left a) · p(right b), and NOT_A_PAIR's the rest; saved and loaded
    as plain Keras, it gives the same."""
    import keras

    cnn = build_cnn(FAST, N_PAIR_CLASSES, (28, 56, 1))
    parts = cnn.get_layer("pair_parts")
    left, right, pair, not_pair = np.zeros(10), np.zeros(10), 1.0, 0.0
    left[3], right[5] = np.log(4), np.log(2)
    kernel, _ = parts.get_weights()
    parts.set_weights([np.zeros_like(kernel), np.concatenate([left, right, [pair, not_pair]]).astype(np.float32)])
    probabilities = predict_probabilities(cnn, np.zeros((1, 28, 56, 1), np.uint8))[0]
    p_pair = np.exp(pair) * 13 * 11 / (np.exp(pair) * 13 * 11 + np.exp(not_pair))  # Σ exp(left) = 13, Σ exp(right) = 11
    assert probabilities[35] == pytest.approx(p_pair * 4 / 13 * 2 / 11, rel=1e-5)
    assert probabilities[12] == pytest.approx(p_pair / 13 / 11, rel=1e-5)
    assert probabilities[100] == pytest.approx(1 - p_pair, rel=1e-5) and probabilities.sum() == pytest.approx(1)
    cnn.save(tmp_path / "pairs.keras")
    loaded = keras.models.load_model(tmp_path / "pairs.keras")
    assert np.allclose(predict_probabilities(loaded, np.zeros((1, 28, 56, 1), np.uint8))[0], probabilities, atol=1e-6)
    assert not loaded.get_layer("pair_logits").trainable


def test_an_ensemble_answers_its_members_mean_and_saves_as_one_model(tmp_path: Path):
    import keras

    members = [build_cnn(FAST.model_copy(update={"seed": seed}), 11, name=f"member{seed}") for seed in (1, 2)]
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    first, second = (predict_probabilities(member, images) for member in members)
    assert not np.allclose(first, second, atol=1e-3)  # seeds 1 and 2 draw different weights
    ensemble = averaged(members)
    np.testing.assert_allclose(predict_probabilities(ensemble, images), (first + second) / 2, atol=1e-6)
    ensemble.save(tmp_path / "reader.keras")
    loaded = keras.models.load_model(tmp_path / "reader.keras")
    np.testing.assert_allclose(predict_probabilities(loaded, images), (first + second) / 2, atol=1e-6)
    assert averaged(members[:1]) is members[0]


@pytest.mark.slow
def test_reader_members_are_fitted_from_successive_seeds_and_averaged(mnist_digits: Digits):
    from mnist_transfer.models.reader import train_members

    train, valid = split(mnist_digits.subset(np.arange(600)))
    params = FAST.model_copy(update={"epochs": 1})
    ensemble, summary, probabilities = train_members(train, valid, params, 2, [], n_classes=10)
    alone, _ = train_cnn(train, valid, params.model_copy(update={"seed": params.seed + 1}), [])
    assert ensemble.name == "cnn" and [layer.name for layer in ensemble.layers[1:3]] == ["member0", "member1"]
    np.testing.assert_allclose(predict_probabilities(ensemble.layers[2], valid.images),
                               predict_probabilities(alone, valid.images), atol=1e-5)
    np.testing.assert_allclose(probabilities, predict_probabilities(ensemble, valid.images), atol=1e-6)
    top = predict_probabilities(ensemble, valid.images).argmax(axis=1)
    assert summary["val_accuracy"] == pytest.approx((top == valid.labels).mean())
    assert summary["members"] == 2 and len(summary["member_val_accuracy"]) == 2


def test_empty_validation_split_is_named(mnist_digits: Digits):
    train = mnist_digits.subset(np.arange(10))
    with pytest.raises(ValueError, match="train.validation_percentage"):
        train_cnn(train, train.subset(np.zeros(10, bool)), FAST, callbacks=[])


def test_training_batches_last_every_step_fit_takes_and_do_not_autotune():
    # 10 digits in batches of 4: 3 steps an epoch, the last of 2; two epochs need 6 batches, which a finite
    # repeat(2) of 20 digits would not give (it holds 5)
    digits = Digits(np.zeros((10, 28, 28, 1), np.uint8), np.arange(10), np.array([f"d{i}" for i in range(10)]))
    params = CnnParams(batch_size=4, epochs=2, augment=CnnAugmentParams(shift_px=0, rotation_deg=0, zoom=0,
                                                                        stroke_probability=0))
    dataset = training_batches(digits, params)
    sizes = [len(labels) for _, labels in dataset.take(9)]
    assert sizes == [4, 4, 4, 4, 4, 4, 4, 4, 4]  # passes run on into each other, without end
    first_pass = np.concatenate([labels.numpy().argmax(axis=1) for _, labels in dataset.take(5)])[:10]
    assert sorted(first_pass) == list(range(10))  # each pass holds every digit once
    assert dataset.options().autotune.enabled is False


def test_too_many_blocks_are_refused_by_the_schema():
    with pytest.raises(ValueError, match="filters"):
        CnnParams(filters=[8, 16, 32])


# --- augmentation -------------------------------------------------------------------------------------------


def transform(images: np.ndarray, draws: list[list[float]], augment: CnnAugmentParams) -> np.ndarray:
    rows = affine_rows(tf.constant(draws, tf.float32), augment)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=rows, output_shape=[28, 28], fill_value=0.0, interpolation="BILINEAR",
        fill_mode="CONSTANT",
    ).numpy()


def dot_at(row: int, col: int) -> np.ndarray:
    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, row, col] = 255.0
    return image


def test_zero_draws_are_the_identity():
    np.testing.assert_allclose(affine_rows(tf.zeros([3, 4]), CnnAugmentParams()).numpy(),
                               np.tile([1, 0, 0, 0, 1, 0, 0, 0], (3, 1)), atol=1e-6)


@pytest.mark.parametrize(
    ("augment", "draw", "moved_to"),
    [
        (CnnAugmentParams(shift_px=2), [0, 0, 1, 0], (10, 7)),  # +2 px right
        (CnnAugmentParams(shift_px=2), [0, 0, 0, -1], (8, 5)),  # 2 px up
        (CnnAugmentParams(rotation_deg=90), [1, 0, 0, 0], (22, 10)),  # a quarter turn about the centre (13.5, 13.5)
        (CnnAugmentParams(rotation_deg=90), [-1, 0, 0, 0], (5, 17)),  # the other way
        (CnnAugmentParams(zoom=0.5), [0, 1, 0, 0], (8.25, 0.75)),  # 1.5× about the centre
    ],
)
def test_one_affine_transform_moves_a_pixel_where_the_geometry_says(augment, draw, moved_to):
    moved = transform(dot_at(10, 5), [draw], augment)[0, ..., 0]  # 3.5 px above, 8.5 px left of the centre
    rows, cols = np.indices(moved.shape)
    centre = np.array([(rows * moved).sum(), (cols * moved).sum()]) / moved.sum()
    np.testing.assert_allclose(centre, moved_to, atol=0.3)


def test_augment_batch_is_seeded_bounded_and_changes_stroke_width():
    images = np.zeros((64, 28, 28, 1), np.float32)
    images[:, 10:18, 13:15] = 255.0  # a vertical bar, 2 px wide
    strokes_only = CnnAugmentParams(shift_px=0, rotation_deg=0, zoom=0, stroke_probability=1.0)
    widths = (augment_batch(images, tf.constant([1, 2]), strokes_only).numpy()[:, 14] > 0).sum(axis=(1, 2))
    assert set(widths) == {1, 3}  # every digit thinner (min pool) or thicker (max pool), both seen

    shifts = CnnAugmentParams(shift_px=2, rotation_deg=0, zoom=0, stroke_probability=0)
    first = augment_batch(images, tf.constant([1, 2]), shifts).numpy()
    np.testing.assert_array_equal(first, augment_batch(images, tf.constant([1, 2]), shifts).numpy())
    assert not np.array_equal(first, augment_batch(images, tf.constant([2, 2]), shifts).numpy())
    columns = np.indices(first.shape[1:3])[1]
    centres = (first[..., 0] * columns).sum(axis=(1, 2)) / first[..., 0].sum(axis=(1, 2))
    assert np.abs(centres - 13.5).max() <= 2 + 1e-3 and np.ptp(centres) > 1  # moved, within ±2 px

    nothing = CnnAugmentParams(shift_px=0, rotation_deg=0, zoom=0, stroke_probability=0)
    np.testing.assert_allclose(augment_batch(images, tf.constant([1, 2]), nothing).numpy(), images, atol=1e-3)


def test_a_pair_turns_about_its_own_centre():
    """A 28×56 pair, a quarter turn: the pixel 3.5 px above and 8.5 px left of the centre (13.5, 27.5) moves
    to 8.5 px below and 3.5 px left of it, and the image keeps its shape."""
    image = np.zeros((1, 28, 56, 1), np.float32)
    image[0, 10, 19] = 255.0
    turn = CnnAugmentParams(shift_px=0, rotation_deg=90, zoom=0, stroke_probability=0)
    rows = affine_rows(tf.constant([[1.0, 0, 0, 0]]), turn, centre=(27.5, 13.5))
    moved = tf.raw_ops.ImageProjectiveTransformV3(
        images=image, transforms=rows, output_shape=[28, 56], fill_value=0.0, interpolation="BILINEAR",
        fill_mode="CONSTANT",
    ).numpy()[0, ..., 0]
    indices = np.indices(moved.shape)
    np.testing.assert_allclose([(index * moved).sum() / moved.sum() for index in indices], (22, 24), atol=0.3)
    assert augment_batch(image, tf.constant([1, 2]), turn).shape == (1, 28, 56, 1)


# --- robustness distortions -------------------------------------------------------------------------------


def square_digit() -> np.ndarray:
    image = np.zeros((1, 28, 28, 1), np.uint8)
    image[0, 10:18, 10:18] = 255  # an 8×8 square, centred on 13.5
    return image


def centre_of_mass(image: np.ndarray) -> np.ndarray:
    rows, cols = np.indices(image.shape[1:3])
    weights = image[0, ..., 0].astype(float)
    return np.array([(rows * weights).sum(), (cols * weights).sum()]) / weights.sum()


@pytest.mark.parametrize("seed", range(5))
def test_off_centre_moves_the_digit_3_to_5_px(seed: int):
    moved = distort(square_digit(), "off_centre", seed)
    assert 3 - 0.01 <= np.linalg.norm(centre_of_mass(moved) - 13.5) <= 5 + 0.01


@pytest.mark.parametrize("seed", range(5))
def test_rescaled_keeps_the_centre_and_changes_the_size(seed: int):
    scaled = distort(square_digit(), "rescaled", seed)
    side = np.sqrt((scaled > 127).sum())  # of the 8 px square
    assert side <= 8 * 0.8 + 1 or side >= 8 * 1.15 - 1
    np.testing.assert_allclose(centre_of_mass(scaled), [13.5, 13.5], atol=0.05)


def test_stroke_distortions_known_answers():
    dot = np.zeros((1, 28, 28, 1), np.uint8)
    dot[0, 5, 5] = 200
    assert (distort(dot, "thicker", 0) > 0).sum() == 5  # a 3×3 cross around the dot
    assert distort(square_digit(), "thinner", 0).astype(bool).sum() == 7 * 7


def test_distortions_are_deterministic_and_named():
    images = np.repeat(square_digit(), 4, axis=0)
    for kind in DISTORTIONS:
        np.testing.assert_array_equal(distort(images, kind, 7), distort(images, kind, 7))
    with pytest.raises(ValueError, match="tilted"):
        distort(images, "tilted", 0)


# --- decoding, export and the label_cnn stage's parity --------------------------------------------------------


def test_digit_pixels_keeps_28px_images_and_resizes_others():
    image = np.random.default_rng(0).integers(0, 256, (1, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_array_equal(digit_pixels(image).numpy(), image.astype(np.float32))
    assert digit_pixels(np.zeros((2, 56, 40, 1), np.uint8)).shape == (2, 28, 28, 1)


def test_undecodable_image_is_named(tmp_path: Path):
    (tmp_path / "testing" / "3").mkdir(parents=True)
    (tmp_path / "testing" / "3" / "good.jpg").write_bytes(encode_jpg(np.zeros((28, 28), np.uint8), 95))
    (tmp_path / "testing" / "3" / "torn.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="torn.jpg"):
        load_digits(list_images(tmp_path / "testing", tmp_path), tmp_path)


@pytest.fixture(scope="module")
def exported_cnn(mnist_digits: Digits, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    cnn, _ = train_cnn(*split(mnist_digits.subset(np.arange(1000))), FAST.model_copy(update={"epochs": 2}), [])
    model_dir = tmp_path_factory.mktemp("export") / "cnn"
    export_cnn(cnn, model_dir)
    return cnn, model_dir


@pytest.mark.slow
def test_saved_model_agrees_with_the_label_cnn_stage(exported_cnn, tiny_idx_dir: Path, tmp_path: Path):
    cnn, model_dir = exported_cnn
    convert_all(tiny_idx_dir, tmp_path / "jpg", limit_per_class=None, quality=95, workers=1)
    data_root = tmp_path / "jpg"
    records = list_images(data_root / "testing", data_root)
    out_dir = tmp_path / "predictions_cnn"
    summaries = write_cnn_shards(records, data_root, cnn, n_shards=3, out_dir=out_dir)
    assert [s.n_images for s in summaries] == [sum(shard_of(r.rel_path, 3) == k for r in records) for k in range(3)]
    for index in range(3):
        with open(out_dir / f"shard-{index}.csv", newline="") as handle:
            rows = list(csv.reader(handle))
        assert tuple(rows[0]) == PREDICTION_COLUMNS
        assert all(shard_of(row[0], 3) == index for row in rows[1:])  # the label stage's shard assignment
    assert check_exported_parity(parity_sample(records, 15), data_root, model_dir, out_dir) == 15

    # calibrated: shards tempered with model.json's T, checked against the exported model tempered alike
    calibrated_dir, calibrated_out = tmp_path / "cnn-calibrated", tmp_path / "predictions_calibrated"
    shutil.copytree(model_dir, calibrated_dir)
    write_metadata(ModelMetadata("cnn", 0.9, 10, temperature=0.5), calibrated_dir)
    write_cnn_shards(records, data_root, cnn, n_shards=3, out_dir=calibrated_out, temperature=0.5)
    assert check_exported_parity(parity_sample(records, 15), data_root, calibrated_dir, calibrated_out) == 15
    with pytest.raises(ParityError, match="train/serve skew"):  # shards written without the temperature
        check_exported_parity(parity_sample(records, 15), data_root, calibrated_dir, out_dir)

    shard = out_dir / "shard-0.csv"  # the check can fail: a shard that disagrees with the model
    rows = list(csv.reader(shard.open(newline="")))
    rows[1][2] = str((int(rows[1][2]) + 1) % 10)
    with shard.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(ParityError, match="train/serve skew"):
        check_exported_parity(records, data_root, model_dir, out_dir)


@pytest.mark.slow
def test_saved_model_signatures_match_the_transfer_model(exported_cnn, mnist_digits: Digits):
    cnn, model_dir = exported_cnn
    assert (model_dir / LABELS_FILE).read_text().split() == [str(d) for d in range(10)]
    assert (model_dir / CNN_FILE).is_file()
    exported = load_exported(model_dir)
    assert set(exported.signatures) >= {"serving_default", "predict_images"}
    images = mnist_digits.images[:8]
    decoded = exported.signatures["predict_images"](images=tf.constant(images))
    np.testing.assert_allclose(decoded["probabilities"].numpy(), predict_probabilities(cnn, images), atol=1e-5)
    np.testing.assert_array_equal(decoded["digit"].numpy(), decoded["probabilities"].numpy().argmax(axis=1))
    encoded = [tf.io.encode_png(image).numpy() for image in images]  # lossless: the same pixels again
    served = exported.signatures["serving_default"](images=tf.constant(encoded))
    np.testing.assert_allclose(served["probabilities"].numpy(), decoded["probabilities"].numpy(), atol=1e-5)
    big = tf.image.resize(images[:1], (56, 56)).numpy().astype(np.uint8)  # other sizes are resized to 28 px
    assert exported.signatures["predict_images"](images=tf.constant(big))["probabilities"].shape == (1, 10)


# --- the real pipeline ------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_dvc_repro_cnn_stages_and_a_cnn_only_experiment(pipeline_repo: Path, mnist_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MNIST_FEATURE_STORE", str(tmp_path / "store.sqlite"))
    configure_stand_in_run(
        pipeline_repo, mnist_dir, limit_per_class=20,
        extra={"cnn.epochs": 3, "train.epochs": 3, "label.shards": 2, "label.parity_sample": 40},
    )
    # the transfer model's training and the CNN's stages (not the transfer labelling and report: time)
    first = run_dvc(pipeline_repo, "repro", "train", "label_cnn")
    log = first.stdout + first.stderr
    assert "agrees with the label_cnn stage on 40 sampled test images" in log
    model_dir = pipeline_repo / "data" / "cnn"
    assert (model_dir / "saved_model" / "saved_model.pb").is_file() and (model_dir / LABELS_FILE).is_file()
    shards = sorted((pipeline_repo / "data" / "predictions_cnn").glob("shard-*.csv"))
    paths = [row["path"] for shard in shards for row in csv.DictReader(shard.open(newline=""))]
    assert len(shards) == 2 and sorted(paths) == sorted(f"testing/{p.parent.name}/{p.name}" for p in (
        pipeline_repo / "data" / "jpg" / "testing").glob("*/*.jpg"))
    metrics = json.loads((pipeline_repo / "reports" / "cnn" / "metrics.json").read_text())
    assert metrics["best"]["n_train"] + metrics["best"]["n_validation"] == 200
    assert set(metrics["best"]["robustness"]) == {*DISTORTIONS, "mean"}
    plots = json.loads(run_dvc(pipeline_repo, "plots", "show", "--json").stdout)["data"]
    loss_points = plots["CNN training loss (train vs validation)"][0]["content"]["data"]["values"]
    assert {point["filename"] for point in loss_points} == {"train/loss.tsv", "eval/loss.tsv"}

    # a CNN-only experiment: the transfer model's stages are not rerun (same targets, so DVC reports on them)
    experiment = run_dvc(pipeline_repo, "exp", "run", "-S", "cnn.dropout=0.2", "train", "label_cnn")
    log = experiment.stdout + experiment.stderr
    assert "Stage 'bottlenecks' didn't change, skipping" in log
    assert "Stage 'train' didn't change, skipping" in log
    assert "Running stage 'train_cnn'" in log and "Running stage 'label_cnn'" in log
