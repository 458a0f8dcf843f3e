"""Confidence users can trust: temperature scaling and the expected calibration error.

A network trained with cross-entropy is usually over-confident: of the images
it labels with 0.99, fewer than 99 % are right. Temperature scaling (Guo et
al., 2017, "On Calibration of Modern Neural Networks", ICML) divides the
logits by one number ``T`` fitted on the validation split, which changes no
prediction, only the confidences. The models here end in a softmax, so the
logits are recovered as ``log(p)`` (softmax is shift-invariant, so
``softmax(log(p) / T)`` equals the softmax of the true logits over ``T``).

NumPy only: prediction without TensorFlow uses it too.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al.
TEMPERATURE_LIMITS = (0.05, 20.0)  # the search range of T
_TINY = 1e-30  # probabilities are clipped here before the log (float32 softmax can round to 0)


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)`` row by row: ``(N, K)`` probabilities in, ``(N, K)`` float32 out.

    ``T > 1`` softens the confidences, ``T < 1`` sharpens them; the argmax
    of every row is unchanged. ``T == 1`` returns the input as it is.
    """
    if temperature == 1.0:
        return probabilities
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _TINY, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log p(true class)`` over ``(N, K)`` probabilities and ``(N,)`` int labels (nats)."""
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, _TINY, 1.0)).mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in :data:`TEMPERATURE_LIMITS` that minimises the negative log-likelihood.

    A grid of 121 points on ``log T``, then a grid 100 times finer around the
    best point: the likelihood is smooth and has one minimum in ``T``, and a
    grid cannot diverge. ``(N, K)`` probabilities, ``(N,)`` int labels.

    Raises:
        ValueError: no images (``N == 0``).
    """
    if len(labels) == 0:
        raise ValueError("no validation images to fit a temperature on")

    def best_of(log_ts: np.ndarray) -> float:
        losses = [negative_log_likelihood(apply_temperature(probabilities, float(np.exp(t))), labels) for t in log_ts]
        return float(log_ts[int(np.argmin(losses))])

    low, high = np.log(TEMPERATURE_LIMITS)
    coarse = np.linspace(low, high, 121)
    step = coarse[1] - coarse[0]
    centre = best_of(coarse)
    fine = np.clip(np.linspace(centre - step, centre + step, 201), low, high)
    return round(float(np.exp(best_of(fine))), 4)


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS):
    """Per confidence bin: ``(mean confidence, accuracy, count)``, three ``(bins,)`` arrays.

    Bins split ``(0, 1]`` into equal widths by each image's top probability;
    an empty bin has confidence and accuracy 0 and count 0.
    """
    confidence = np.asarray(probabilities).max(axis=1)
    correct = np.asarray(probabilities).argmax(axis=1) == labels
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    safe = np.maximum(counts, 1)
    mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / safe
    accuracy = np.bincount(which, weights=correct.astype(float), minlength=bins) / safe
    return mean_confidence, accuracy, counts


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the count-weighted mean of ``|accuracy - confidence|`` over :func:`reliability`'s bins (0 to 1).

    0 means that, in every bin, the share of right answers equals the mean
    confidence. Raises ValueError when there are no images.
    """
    if len(labels) == 0:
        raise ValueError("no images to measure calibration on")
    confidence, accuracy, counts = reliability(probabilities, labels, bins)
    return float(np.sum(counts * np.abs(accuracy - confidence)) / counts.sum())
