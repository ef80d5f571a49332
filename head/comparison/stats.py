"""Intervals and tests for comparing runs (`cmdcl compare`, head/comparison/compare.py); numpy and scipy only.

Every metric here is a function of *weights over videos*: a (B, m) array of how many times each of m videos
is in each of B resamples. A bootstrap resample of video indices is its counts; a paired permutation
(which run's prediction each video contributes) is a 0/1 selection over the stacked rows [A; B]. That one
form serves both mean-over-videos metrics (top-1) and metrics that are not a mean over videos (mAP, which
must be recomputed on every resample), without re-sorting scores for every resample.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Protocol, Sequence

import numpy as np

CONFIDENCE = 0.95
# Elements of one (resamples, videos, classes) block of the weighted AP; bounds its memory (~16 MB a block).
AP_BLOCK = 2_000_000


class WeightedMetric(Protocol):
    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """(B, m) video weights -> (B,) metric values."""


class WeightedMean:
    """A metric that is a mean over videos of a per-video value (top-1: 1 when correct)."""

    def __init__(self, values: np.ndarray):
        self.values = np.asarray(values, np.float64)

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        weights = np.atleast_2d(weights)
        total = weights.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights @ self.values) / total


class WeightedMAP:
    """Macro average precision over the columns with a positive (as evaluate's `mean_average_precision`,
    which uses scikit-learn), for video weights. Scores are sorted once; a video with weight k counts as k
    tied copies, which is exactly scikit-learn's AP on the resample: precision is read at the end of each
    group of tied scores."""

    def __init__(self, scores: np.ndarray, targets: np.ndarray):
        scores = np.asarray(scores, np.float64)
        self.order = np.argsort(-scores, axis=0, kind="stable")  # (m, C)
        ranked = np.take_along_axis(scores, self.order, axis=0)
        # float32 is exact for the counts involved (< 2**24) and halves the memory traffic of every resample.
        self.targets = np.take_along_axis(np.asarray(targets) > 0, self.order, axis=0).astype(np.float32)
        m = len(scores)
        is_end = np.ones(ranked.shape, bool)
        is_end[:-1] = ranked[:-1] != ranked[1:]
        ends = np.where(is_end, np.arange(m)[:, None], m)
        self.group_end = np.minimum.accumulate(ends[::-1], axis=0)[::-1]  # last row of each row's tie group
        self.ties = bool(is_end[:-1].size) and not is_end.all()  # float logits rarely tie: skip the regrouping
        self.columns = np.arange(scores.shape[1])

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        weights = np.atleast_2d(np.asarray(weights, np.float32))
        m, c = self.order.shape
        step = max(1, AP_BLOCK // max(1, m * c))
        return np.concatenate([self._block(weights[i:i + step]) for i in range(0, len(weights), step)])

    def _block(self, weights: np.ndarray) -> np.ndarray:
        ranked = weights[:, self.order]  # (b, m, C)
        positive = ranked * self.targets
        tp, seen = np.cumsum(positive, axis=1), np.cumsum(ranked, axis=1)
        npos = tp[:, -1].astype(np.float64)
        if self.ties:
            tp, seen = tp[:, self.group_end, self.columns], seen[:, self.group_end, self.columns]
        precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = np.einsum("bmc,bmc->bc", positive, precision, dtype=np.float64) / npos
        ap[npos == 0] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample with no positive at all: NaN
            return np.nanmean(ap, axis=1)


def counts(index: np.ndarray, m: int) -> np.ndarray:
    """(B, k) row indices in [0, m) -> (B, m) counts of each row."""
    index = np.atleast_2d(np.asarray(index).astype(np.int64))
    b = len(index)
    flat = (index + m * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * m).reshape(b, m).astype(np.float64)


def mean_over(metrics: Sequence[WeightedMetric]) -> Callable[[np.ndarray], np.ndarray]:
    """The mean of several metrics (one per seed) on the same weights."""
    return lambda w: np.mean([metric(w) for metric in metrics], axis=0)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean; low = high = NaN with fewer than 2 values."""
    from scipy import stats

    x = np.asarray(values, np.float64)
    mean = float(x.mean()) if len(x) else math.nan
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def bootstrap_interval(statistic: Callable[[np.ndarray], np.ndarray], n: int, n_resamples: int = 9999,
                       method: str = "BCa", seed: int = 0,
                       confidence: float = CONFIDENCE) -> tuple[float, float, str]:
    """(low, high, method used) of `statistic(video weights)` over bootstrap resamples of the n videos.

    Runs compared inside `statistic` see the same resampled videos: the interval is paired.
    method: "BCa", "percentile", or "recentred": the percentile interval shifted by (observed value - mean of
    the resamples). mAP needs the last: a resample repeats videos, a repeated positive ties with itself
    and lifts AP, so every resample's mAP sits above the observed one and BCa's bias correction runs off
    to the extreme percentiles. BCa falls back to percentile when it is undefined."""
    from scipy import stats

    def on_indices(index: np.ndarray, axis: int = -1) -> np.ndarray:
        index = np.moveaxis(np.asarray(index), axis, -1)
        flat = index.reshape(-1, index.shape[-1])
        return statistic(counts(flat, n)).reshape(index.shape[:-1])

    def run(kind: str, previous=None):
        return stats.bootstrap((np.arange(n),), on_indices, n_resamples=n_resamples, vectorized=True, paired=True,
                               axis=-1, confidence_level=confidence, method=kind, rng=np.random.default_rng(seed),
                               bootstrap_result=previous)

    if method not in ("BCa", "percentile", "recentred"):
        raise ValueError(f"bootstrap method {method!r}: use BCa, percentile or recentred")
    point = float(statistic(np.ones((1, n)))[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on degenerate resamples; handled below
        result = run("BCa" if method == "BCa" else "percentile")
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        distribution = result.bootstrap_distribution
        if np.allclose(distribution, distribution.flat[0]):
            return point, point, "degenerate (every resample equal)"
        if method == "BCa" and not (np.isfinite(low) and np.isfinite(high)):
            result, method = run("percentile", result), "percentile"
            low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if method == "recentred":
        shift = float(np.nanmean(distribution)) - point
        low, high = low - shift, high - shift
    return low, high, method


def paired_permutation_p(pairs: Sequence[WeightedMetric], n: int, n_resamples: int = 9999, seed: int = 0) -> float:
    """Two-sided p-value of a paired permutation test over videos.

    `pairs`: one metric per matched seed pair, each over 2n stacked rows [run A's n videos; run B's n videos].
    Null hypothesis: for every video, which run made which prediction is exchangeable; each permutation swaps
    A's and B's predictions of a random subset of videos (exact enumeration when 2**n <= n_resamples).
    For a per-video mean this is the sign-flip test of the per-video differences."""
    from scipy import stats

    def difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        x, y = np.moveaxis(np.asarray(x), axis, -1), np.moveaxis(np.asarray(y), axis, -1)
        shape = x.shape[:-1]
        cx, cy = counts(x.reshape(-1, n), 2 * n), counts(y.reshape(-1, n), 2 * n)
        return np.mean([metric(cx) - metric(cy) for metric in pairs], axis=0).reshape(shape)

    first, second = np.arange(n), np.arange(n, 2 * n)
    result = stats.permutation_test((first, second), difference, permutation_type="samples", vectorized=True,
                                    n_resamples=n_resamples, alternative="two-sided", axis=-1,
                                    rng=np.random.default_rng(seed))
    return float(result.pvalue)
