"""Calibration of a head's class probabilities: are its confidences its accuracies? (numpy only, no torch:
`cmdcl compare` reads these terms from the predictions files.)

Probabilities are what the head's logits give: softmax over the classes (single-label), a sigmoid per
class (multi-label, as the BCE loss trains them).

    confidence_i = max_c p_ic (the top-1 probability)      correct_i = 1 if argmax_c p_ic is the true class
    ECE = sum over the B = 15 equal-width bins of [0, 1] of (n_b / N) |accuracy_b - mean confidence_b|
        = (1 / N) sum_b |sum_{i in b} (correct_i - confidence_i)|
    bin b holds the confidences in (b/B, (b+1)/B] (the first also holds 0), as Guo et al. 2017 and Naeini et al.
    NLL = mean over videos of -log p_i,true (single-label);
          mean over videos and classes of the binary cross-entropy -[y log p + (1-y) log(1-p)] (multi-label).

Multi-label heads get no ECE: top-1 confidence assumes one true class per video, and there is no single
agreed multi-label ECE; their mean binary NLL is reported instead.
"""
from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def top1_terms(logits: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Single-label, labelled videos only: (top-1 confidence, correct 0/1, -log p of the true class) per video."""
    logp = log_softmax(logits)
    label = np.asarray(label, np.int64)
    return np.exp(logp.max(axis=1)), (logp.argmax(axis=1) == label).astype(np.float64), \
        -logp[np.arange(len(label)), label]


def binary_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Multi-label: per video, the mean over classes of the binary cross-entropy of sigmoid(logits)."""
    x = np.asarray(logits, np.float64)
    y = (np.asarray(targets) > 0).astype(np.float64)
    # -log sigmoid(x) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x); softplus(x) = logaddexp(0, x)
    return (y * np.logaddexp(0.0, -x) + (1 - y) * np.logaddexp(0.0, x)).mean(axis=1)


def bin_index(confidence: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """The bin of each confidence: b for (b/bins, (b+1)/bins], 0 for exactly 0."""
    return np.clip(np.ceil(np.asarray(confidence, np.float64) * bins).astype(np.int64) - 1, 0, bins - 1)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """Per bin: count, mean confidence and accuracy (None in an empty bin); the reliability diagram's data."""
    index = bin_index(confidence, bins)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
    as_list = (lambda a: [None if c == 0 else float(v) for v, c in zip(a, count)])
    return {"bins": bins, "count": count.tolist(), "confidence": as_list(mean_conf), "accuracy": as_list(accuracy)}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    if not len(confidence):
        return float("nan")
    gap = np.bincount(bin_index(confidence, bins), weights=np.asarray(correct, np.float64) - confidence,
                      minlength=bins)
    return float(np.abs(gap).sum() / len(confidence))


def calibration_metrics(logits: np.ndarray, label: np.ndarray, labels: np.ndarray, multilabel: bool,
                        detailed: bool = True) -> dict[str, Any]:
    """{"ece", "nll"} (single-label, labelled videos) or {"nll"} (multi-label); with `detailed`, the
    reliability bins as "calibration_bins"."""
    if multilabel:
        nll = binary_nll(logits, labels)
        return {"nll": float(nll.mean()) if len(nll) else float("nan")}
    keep = np.asarray(label) >= 0
    confidence, correct, nll = top1_terms(np.asarray(logits)[keep], np.asarray(label)[keep])
    metrics: dict[str, Any] = {"ece": expected_calibration_error(confidence, correct),
                               "nll": float(nll.mean()) if len(nll) else float("nan")}
    if detailed:
        metrics["calibration_bins"] = reliability_bins(confidence, correct)
    return metrics
