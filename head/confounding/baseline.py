"""The context-only baseline: how well a video's context labels alone (true factors or zero-shot pseudo labels,
one-hot) predict its activity. A logistic regression is fitted on the train split and scored on the evaluated
split, top-1 (single-label) or mAP (multi-label, one regression per class), with a 95 % bootstrap interval over
the evaluated videos (head/comparison/stats.py: BCa for top-1, recentred percentile for mAP, as `compare`).
`prior` is the same metric without context (the regression fitted on a constant), what the class frequencies
alone give.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from ..comparison.stats import WeightedMAP, WeightedMean, bootstrap_interval
from ..metrics.evaluate import mean_average_precision

SEED = 0


def one_hot(values: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """(n, K) value ids (-1 unknown: no column set) -> (n, sum(sizes)) float32 one-hot."""
    values = np.asarray(values).reshape(len(values), -1)
    out = np.zeros((len(values), int(sum(sizes))), np.float32)
    offset = 0
    for j, size in enumerate(sizes):
        known = (values[:, j] >= 0) & (values[:, j] < size)
        out[np.flatnonzero(known), offset + values[known, j]] = 1.0
        offset += size
    return out


def _regression():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, random_state=SEED)


def fit_scores(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, num_classes: int,
               multilabel: bool) -> np.ndarray:
    """(n_eval, C) class scores of a logistic regression from x to the labels: one multinomial regression
    (y (n,) class ids), or one per class (y (n, C) multi-hot; a class constant in train scores its rate)."""
    from threadpoolctl import threadpool_limits  # one BLAS thread: small matrices (see head/metrics/leakage.py)

    scores = np.zeros((len(x_eval), num_classes), np.float64)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes on separable one-hot columns
        if not multilabel:
            seen = np.unique(y_train)
            if len(seen) == 1:
                scores[:, seen[0]] = 1.0
                return scores
            model = _regression().fit(x_train, y_train)
            scores[:, model.classes_] = model.predict_proba(x_eval)
            return scores
        for c in range(num_classes):
            column = y_train[:, c] > 0
            if column.all() or not column.any():
                scores[:, c] = float(column.mean())
                continue
            scores[:, c] = _regression().fit(x_train, column).predict_proba(x_eval)[:, 1]
    return scores


def score_with_interval(scores: np.ndarray, targets: np.ndarray, multilabel: bool, resamples: int,
                        seed: int = SEED) -> dict[str, Any]:
    """{"value", "low", "high", "method"}: top-1 of argmax scores against class ids, or mAP against multi-hot
    targets, with a bootstrap interval over the videos."""
    if multilabel:
        value, _ = mean_average_precision(scores, targets)
        metric = WeightedMAP(scores, targets)
        method = "recentred"
    else:
        correct = (scores.argmax(axis=1) == targets).astype(np.float64)
        value, metric, method = float(correct.mean()), WeightedMean(correct), "BCa"
    low, high, used = bootstrap_interval(metric, len(scores), resamples, method, seed)
    return {"value": float(value), "low": float(low), "high": float(high), "method": used}


def context_only(train_values: np.ndarray, train_targets: np.ndarray, eval_values: np.ndarray,
                 eval_targets: np.ndarray, sizes: Sequence[int], num_classes: int, multilabel: bool,
                 resamples: int = 1999) -> dict[str, Any]:
    """The context-only baseline of some factor columns (values (n, K) with `sizes` values each): its score on
    the evaluated videos with an interval, and the prior without context. Targets: class ids (single-label,
    -1 unlabelled videos are left out) or (n, C) multi-hot."""
    keep_train = np.ones(len(train_targets), bool) if multilabel else train_targets >= 0
    keep_eval = np.ones(len(eval_targets), bool) if multilabel else eval_targets >= 0
    x_train, x_eval = one_hot(train_values[keep_train], sizes), one_hot(eval_values[keep_eval], sizes)
    y_train, y_eval = train_targets[keep_train], eval_targets[keep_eval]
    scores = fit_scores(x_train, y_train, x_eval, num_classes, multilabel)
    prior = fit_scores(np.zeros((len(x_train), 1)), y_train, np.zeros((len(x_eval), 1)), num_classes, multilabel)
    result = score_with_interval(scores, y_eval, multilabel, resamples)
    prior_value = (mean_average_precision(prior, y_eval)[0] if multilabel
                   else float((prior.argmax(axis=1) == y_eval).mean()))
    return {**result, "metric": "mAP" if multilabel else "top1", "prior": float(prior_value),
            "videos": int(keep_eval.sum()), "train_videos": int(keep_train.sum())}
