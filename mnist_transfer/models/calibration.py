"""Calibrated confidences: temperature scaling fitted on the validation split, and the measures that judge it.

Exported models output probabilities, so temperature scaling works on their logarithms: calibrated =
softmax(log(p) / T), one scalar T per model fitted by minimising the negative log-likelihood of the validation
digits (Guo et al. 2017, "On Calibration of Modern Neural Networks"). T > 1 softens an overconfident model,
T < 1 sharpens an underconfident one (the transfer head trained with label smoothing); the top digit never
changes. Judged by the expected calibration error over 15 equal-width confidence bins (ECE), a reliability
diagram (accuracy per bin) and a risk–coverage curve (accuracy of the most confident share of answers).
Pure numpy: no file, no model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)  # a perfectly separated validation set would push T to 0: it stops here
PROBABILITY_FLOOR = 1e-30  # log(0) guard: float32 softmax outputs can underflow to exactly 0
BISECTION_STEPS = 100
DEFAULT_MIN_CONFIDENCE = 0.5  # below it a calibrated model expects to be wrong more often than right: "unsure"


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it did on the images it was fitted on."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float  # mean negative log-likelihood, nats per image
    nll_after: float
    n_images: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """(n, k) probabilities → float64 log-probabilities, zeros floored at PROBABILITY_FLOOR."""
    return np.log(np.maximum(np.asarray(probabilities, np.float64), PROBABILITY_FLOOR))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T), float32 like the models' outputs; T = 1 gives p back (renormalised)."""
    probabilities = np.asarray(probabilities)
    if probabilities.size == 0:
        return probabilities.astype(np.float32)
    return softmax(log_probabilities(probabilities) / temperature).astype(np.float32)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p[label] in nats."""
    logs = log_probabilities(probabilities)
    return float(-logs[np.arange(len(labels)), labels].mean())


def nll_slope(logits: np.ndarray, labels: np.ndarray, inverse_temperature: float) -> float:
    """d NLL / d(1/T) of softmax(logits / T): mean over images of E_softmax[logit] − logit[label].

    The NLL is convex in 1/T (a log-sum-exp of a linear function), so this slope increases with 1/T."""
    expected = (softmax(logits * inverse_temperature) * logits).sum(axis=1)
    return float((expected - logits[np.arange(len(labels)), labels]).mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T in TEMPERATURE_RANGE minimising the NLL of softmax(log(p) / T) on (probabilities, labels).

    Args:
        probabilities: (n, k) a model's outputs on held-out images (the validation split).
        labels: (n,) their true classes.
    """
    if len(labels) == 0:
        return 1.0
    logits = log_probabilities(probabilities)
    labels = np.asarray(labels, np.int64)
    # 1. bracket 1/T by the range; 2. bisect on log(1/T) for the zero of the (increasing) slope
    low, high = np.log(1 / TEMPERATURE_RANGE[1]), np.log(1 / TEMPERATURE_RANGE[0])
    if nll_slope(logits, labels, np.exp(low)) >= 0:
        return TEMPERATURE_RANGE[1]
    if nll_slope(logits, labels, np.exp(high)) <= 0:
        return TEMPERATURE_RANGE[0]
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        if nll_slope(logits, labels, np.exp(middle)) < 0:
            low = middle
        else:
            high = middle
    return float(1 / np.exp((low + high) / 2))


def top_confidence(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence of the top class, whether it is the label) per image."""
    return probabilities.max(axis=1), probabilities.argmax(axis=1) == labels


def calibrate(probabilities: np.ndarray, labels: np.ndarray) -> Calibration:
    """Fit T on (probabilities, labels) and measure ECE and NLL before and after."""
    temperature = fit_temperature(probabilities, labels)
    calibrated = apply_temperature(probabilities, temperature)
    return Calibration(
        temperature=temperature,
        ece_before=expected_calibration_error(*top_confidence(probabilities, labels)),
        ece_after=expected_calibration_error(*top_confidence(calibrated, labels)),
        nll_before=negative_log_likelihood(probabilities, labels) if len(labels) else 0.0,
        nll_after=negative_log_likelihood(calibrated, labels) if len(labels) else 0.0,
        n_images=len(labels),
    )


def confidence_bins(confidences: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Bin index of each confidence: n_bins equal-width bins (lower, upper], the first one also holding 0."""
    inner_edges = np.linspace(0, 1, n_bins + 1)[1:-1]
    return np.searchsorted(inner_edges, np.asarray(confidences, np.float64), side="left")


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    n_images: int
    accuracy: float  # NaN for an empty bin
    confidence: float  # mean confidence in the bin; NaN for an empty bin


def reliability_bins(confidences: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Per confidence bin: how many answers, how many of them right, how confident on average."""
    confidences, correct = np.asarray(confidences, np.float64), np.asarray(correct, np.float64)
    index = confidence_bins(confidences, n_bins)
    counts = np.bincount(index, minlength=n_bins)
    right = np.bincount(index, weights=correct, minlength=n_bins)
    sure = np.bincount(index, weights=confidences, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy, confidence = right / counts, sure / counts
    return [
        ReliabilityBin(b / n_bins, (b + 1) / n_bins, int(counts[b]), float(accuracy[b]), float(confidence[b]))
        for b in range(n_bins)
    ]


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Σ over bins of (share of answers in the bin) × |accuracy − mean confidence| in it; 0 for no answers."""
    n_images = len(confidences)
    if n_images == 0:
        return 0.0
    bins = [b for b in reliability_bins(confidences, correct, n_bins) if b.n_images]
    return float(sum(b.n_images / n_images * abs(b.accuracy - b.confidence) for b in bins))


def risk_coverage(confidences: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, accuracy): answering only the most confident share `coverage` of the images, the accuracy
    of those answers; one point per distinct confidence threshold (tied answers come or go together)."""
    confidences, correct = np.asarray(confidences, np.float64), np.asarray(correct, np.float64)
    if len(confidences) == 0:
        return np.empty(0), np.empty(0)
    order = np.argsort(-confidences, kind="stable")
    sorted_confidences, n_right = confidences[order], np.cumsum(correct[order])
    # the last answer of each run of equal confidences closes a threshold
    ends = np.flatnonzero(np.append(sorted_confidences[1:] != sorted_confidences[:-1], True))
    answered = ends + 1
    return answered / len(confidences), n_right[ends] / answered


def top_two(probabilities: np.ndarray) -> list[tuple[int, float]]:
    """[(class, probability)] of the two most probable classes of one image, the most probable first."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:2]
    return [(int(k), float(probabilities[k])) for k in order]
