"""Temperature scaling, ECE, reliability bins and risk–coverage: known answers on tiny inline sets."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_transfer.models.calibration import (
    TEMPERATURE_RANGE,
    apply_temperature,
    calibrate,
    confidence_bins,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    risk_coverage,
    top_two,
)


def repeated(probabilities: list[float], labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The same probability vector for every image, with the given labels."""
    return np.tile(np.array(probabilities, np.float32), (len(labels), 1)), np.array(labels)


# p = (0.9, rest spread evenly) and 3 of 4 right: the NLL-optimal tempered top probability is the accuracy, 0.75.
# 2 classes: 0.9/0.1 → 0.75/0.25 needs log-odds ln 9 / T = ln 3, T = 2.
# 10 classes: 0.9 vs 0.1/9 each → 0.75 vs 0.25/9 needs ln 81 / T = ln 27, T = 4/3.
@pytest.mark.parametrize(
    ("probabilities", "expected_temperature"),
    [([0.9, 0.1], 2.0), ([0.9, *[0.1 / 9] * 9], 4 / 3)],
    ids=["2-classes", "10-classes"],
)
def test_overconfident_set_known_temperature(probabilities: list[float], expected_temperature: float) -> None:
    scores, labels = repeated(probabilities, [0, 0, 0, 1])
    temperature = fit_temperature(scores, labels)
    assert temperature == pytest.approx(expected_temperature, rel=1e-5)
    calibrated = apply_temperature(scores, temperature)
    assert calibrated[:, 0] == pytest.approx(0.75, abs=1e-5)
    assert expected_calibration_error(scores.max(axis=1), scores.argmax(axis=1) == labels) == pytest.approx(0.15, abs=1e-6)
    assert expected_calibration_error(calibrated.max(axis=1), calibrated.argmax(axis=1) == labels) == pytest.approx(0, abs=1e-5)


def test_underconfident_set_gets_a_temperature_below_one() -> None:
    scores, labels = repeated([0.6, 0.4], [0] * 9 + [1])  # 90 % right at 60 % confidence: log-odds ln 1.5 → ln 9
    assert fit_temperature(scores, labels) == pytest.approx(np.log(1.5) / np.log(9), rel=1e-5)


def test_sampled_overconfident_model_recovers_its_temperature() -> None:
    """Labels drawn from softmax(z / 2.5) and the model reporting softmax(z): the fitted T is close to 2.5."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (20_000, 10))
    truth = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(axis=1, keepdims=True)
    labels = (truth.cumsum(axis=1) > rng.random((20_000, 1))).argmax(axis=1)
    reported = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    calibration = calibrate(reported, labels)
    assert calibration.temperature == pytest.approx(2.5, rel=0.05)
    assert calibration.nll_after < calibration.nll_before and calibration.ece_after < calibration.ece_before / 3
    assert calibration.n_images == 20_000


@pytest.mark.parametrize(("labels", "bound"), [([0, 0, 0, 0], 0), ([1, 1, 1, 0], 1)], ids=["all-right", "mostly-wrong"])
def test_temperature_stops_at_its_range(labels: list[int], bound: int) -> None:
    # all right: sharper is always better (T → 0); wrong more often than chance: flatter is (T → ∞)
    scores, labels = repeated([0.9, 0.1], labels)
    assert fit_temperature(scores, labels) == TEMPERATURE_RANGE[bound]


def test_apply_temperature_keeps_the_order_and_one_is_identity() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.0, 0.4, 0.6]], np.float32)  # an exact 0 from an underflowed softmax
    np.testing.assert_allclose(apply_temperature(probabilities, 1.0), probabilities, atol=1e-7)
    for temperature in (0.5, 3.0):
        tempered = apply_temperature(probabilities, temperature)
        assert tempered.dtype == np.float32 and np.allclose(tempered.sum(axis=1), 1.0)
        assert (np.argsort(tempered, axis=1) == np.argsort(probabilities, axis=1)).all()
    assert apply_temperature(probabilities, 0.5)[0, 0] == pytest.approx(0.49 / 0.54, rel=1e-5)  # p² renormalised
    assert apply_temperature(np.empty((0, 10), np.float32), 2.0).shape == (0, 10)


def test_negative_log_likelihood_known_answer() -> None:
    probabilities = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert negative_log_likelihood(probabilities, np.array([0, 1])) == pytest.approx((np.log(2) + np.log(4 / 3)) / 2)


def test_bins_are_right_closed_and_fifteen() -> None:
    assert confidence_bins(np.array([0.0, 0.01, 1 / 15 + 1e-9, 0.5, 0.99, 1.0])).tolist() == [0, 0, 1, 7, 14, 14]


def test_ece_of_a_perfectly_calibrated_set_is_zero() -> None:
    # 10 answers at 0.8 with 8 right, 5 at 0.6 with 3 right, 4 at 0.25 with 1 right
    confidences = np.array([0.8] * 10 + [0.6] * 5 + [0.25] * 4)
    correct = np.array([1] * 8 + [0] * 2 + [1] * 3 + [0] * 2 + [1] + [0] * 3)
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.0, abs=1e-12)


def test_ece_known_small_case_by_hand() -> None:
    # bin 14 (0.933…, 1]: 0.95, 0.99 — one right: |0.5 − 0.97| = 0.47, weight 2/5
    # bin 8 (0.533…, 0.6]: 0.55, 0.57, 0.59 — all right: |1 − 0.57| = 0.43, weight 3/5
    confidences = np.array([0.95, 0.99, 0.55, 0.57, 0.59])
    correct = np.array([1, 0, 1, 1, 1])
    assert expected_calibration_error(confidences, correct) == pytest.approx(2 / 5 * 0.47 + 3 / 5 * 0.43)
    bins = reliability_bins(confidences, correct)
    assert len(bins) == 15 and [b.n_images for b in bins if b.n_images] == [3, 2]
    assert (bins[8].accuracy, bins[8].confidence) == (1.0, pytest.approx(0.57))
    assert (bins[14].lower, bins[14].upper) == (pytest.approx(14 / 15), 1.0) and np.isnan(bins[0].accuracy)
    assert expected_calibration_error(np.empty(0), np.empty(0)) == 0.0


def test_risk_coverage_known_answer_with_ties() -> None:
    confidences = np.array([0.6, 0.9, 0.7, 0.8, 0.7])  # sorted: 0.9 ✓, 0.8 ✓, 0.7 ✗ and 0.7 ✓ together, 0.6 ✓
    correct = np.array([1, 1, 0, 1, 1])
    coverage, accuracy = risk_coverage(confidences, correct)
    np.testing.assert_allclose(coverage, [0.2, 0.4, 0.8, 1.0])
    np.testing.assert_allclose(accuracy, [1.0, 1.0, 0.75, 0.8])
    assert [len(part) for part in risk_coverage(np.empty(0), np.empty(0))] == [0, 0]


def test_top_two() -> None:
    assert top_two(np.array([0.1, 0.48, 0.0, 0.41, 0.01])) == [(1, pytest.approx(0.48)), (3, pytest.approx(0.41))]
