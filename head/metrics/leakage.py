"""Context leakage: how much of the scene context (background, attire, lighting...) a head's video
representation still carries.

For each context factor stored in the feature file (/confounders), a linear probe (standardised inputs,
scikit-learn LogisticRegression) predicts the factor's value from out["representation"] (B, R) of the
evaluated videos, scored by stratified K-fold cross-validation (K = 5, fewer when a value has fewer videos;
fixed seed), beside chance (the share of the most common value). A representation that encodes the
factor scores near 1; one that has dropped it scores near chance. Videos with an unknown value (-1) and
values seen in fewer than 2 videos are left out of that factor's probe.

The factors are the true ones (/confounders) and, where the file stores context vocabularies, the zero-shot
pseudo labels (head/metrics/pseudo_labels.py, named pseudo:<factor>). Each video's cross-validated probe
prediction is right or wrong: `probe_factors` keeps that per video ("correct": 1, 0, NaN when left out), so
that the accuracy gets a bootstrap interval over videos and `cmdcl compare --metric leakage:<factor>` pairs
it between runs on the same videos like top-1.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .pseudo_labels import pseudo_labels

if TYPE_CHECKING:
    from cmdcl.core.store import FeatureSet

PROBE_FOLDS = 5
PROBE_SEED = 0
LEAKAGE_SKIPPED = 'the head returns no "representation" (docs/TRAINING.md, "The forward contract")'


def probe_factor(representation: np.ndarray, values: np.ndarray, folds: int = PROBE_FOLDS,
                 seed: int = PROBE_SEED) -> dict[str, Any] | None:
    """Cross-validated probe accuracy of one factor: {"accuracy", "chance", "videos", "folds", "correct"}
    ("correct": (n,) per video, NaN for the videos left out); None when fewer than two values have two or
    more videos each."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    values = np.asarray(values)
    known, counts = np.unique(values[values >= 0], return_counts=True)
    kept = known[counts >= 2]
    if len(kept) < 2:
        return None
    chosen = np.isin(values, kept)
    x = np.asarray(representation, np.float64)[chosen]
    y = values[chosen]
    k = int(min(folds, np.unique(y, return_counts=True)[1].min()))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    # One BLAS thread: the matrices are small, and on a busy 2-core machine OpenBLAS's threads made the same
    # probe 12x slower (2.8 s against 0.23 s for 300 videos x 768 dims).
    with threadpool_limits(1):
        predicted = cross_val_predict(probe, x, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed))
    correct = np.full(len(values), np.nan)
    correct[chosen] = predicted == y
    return {"accuracy": float((predicted == y).mean()),
            "chance": float(np.unique(y, return_counts=True)[1].max() / len(y)),
            "videos": int(len(y)), "folds": k, "correct": correct}


def probe_factors(representation: np.ndarray | None, values: np.ndarray | None,
                  names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """factor -> probe_factor(...) (with the per-video "correct") for the factors that can be probed; {} when
    there is no representation or no factor labels."""
    if representation is None or values is None or not len(names) or len(representation) < 4:
        return {}
    out = {}
    for j, name in enumerate(names):
        result = probe_factor(representation.reshape(len(representation), -1), values[:, j])
        if result is not None:
            out[name] = result
    return out


def leakage_metrics(probes: dict[str, dict[str, Any]], skipped: bool = False) -> dict[str, Any]:
    """{"leakage": {factor: accuracy, chance, videos, folds}} for metrics.json (no per-video arrays); {} when
    nothing was probed (so the key appears only where it means something); {"leakage_skipped": why} when
    `skipped`: there are factor labels but the head returns no "representation" (the head contract,
    docs/TRAINING.md): said, not silently dropped."""
    if skipped:
        return {"leakage_skipped": LEAKAGE_SKIPPED}
    return {"leakage": {n: {k: v for k, v in p.items() if k != "correct"} for n, p in probes.items()}} if probes else {}


def context_leakage(representation: np.ndarray | None, values: np.ndarray | None,
                    names: Sequence[str]) -> dict[str, Any]:
    """{"leakage": {factor: probe summary}} for the factors that can be probed; {"leakage_skipped": why} when
    there are factor labels but no representation; {} otherwise."""
    skipped = values is not None and len(names) > 0 and representation is None
    return leakage_metrics(probe_factors(representation, values, names), skipped)


def context_factors(fs: FeatureSet, positions: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
    """((n, K) int32 context values of the videos at `positions`, their factor names): the true factors
    (/confounders) then the zero-shot pseudo labels of the stored context vocabularies (pseudo:<factor>);
    (None, []) when the file has neither."""
    true = fs.read_confounders(positions)
    pseudo = pseudo_labels(fs, positions)
    columns = [c for c in (true, None if pseudo is None else pseudo.values) if c is not None]
    names = list(fs.confounder_names if true is not None else []) + (pseudo.names if pseudo is not None else [])
    return (np.concatenate(columns, axis=1) if columns else None), names
