"""How `cmdcl compare` scores one seed's predictions for each metric of the table (head/metrics/registry.py:
an entry's `Paired.function` names one of these). Each is called as function(p: Predictions, name, where):
per-video values (NaN: not scored) for the means over videos, a WeightedMetric (stats.py) for the others.

No torch: only the prediction files are read.
"""
from __future__ import annotations

import numpy as np

from cmdcl.core.errors import CmdclError
from cmdcl.head.metrics.registry import metric_entry, paired_entry, resolve
from ..metrics.calibration import binary_nll, top1_terms
from ..metrics.predictions import Predictions
from .stats import WeightedECE, WeightedMAP, WeightedMean, WeightedMetric


def _single_label(p: Predictions, name: str, where: str, fix: str) -> None:
    if p.multilabel:
        raise CmdclError(f"--metric {name}: {where} holds multi-label predictions (no single true class).", fix=fix)


def top1_values(p: Predictions, name: str, where: str) -> np.ndarray:
    """1 when the top class is the label, 0 when not; NaN for unlabelled videos."""
    _single_label(p, name, where, "use --metric mAP or nll.")
    return np.where(p.label >= 0, (p.pred == p.label).astype(np.float64), np.nan)


def nll_values(p: Predictions, name: str, where: str) -> np.ndarray:
    """-log p(label) (NaN for unlabelled videos); multi-label: the mean binary NLL of every video."""
    if p.multilabel:
        return binary_nll(p.scores, p.labels)
    labelled = p.label >= 0
    values = np.full(len(p.label), np.nan)
    values[labelled] = top1_terms(p.scores[labelled], p.label[labelled])[2]
    return values


def ece_metric(p: Predictions, name: str, where: str) -> WeightedMetric:
    if p.multilabel:
        raise CmdclError(f"--metric ece: {where} holds multi-label predictions (ECE reads the top-1 "
                         f"confidence of one true class).", fix="use --metric nll or mAP.")
    confidence, correct, _ = top1_terms(p.scores, p.label)
    return WeightedECE(confidence, correct)


def map_metric(p: Predictions, name: str, where: str) -> WeightedMetric:
    return WeightedMAP(p.scores, p.labels)


def step_map_metric(p: Predictions, name: str, where: str) -> WeightedMetric:
    if p.step_scores is None or p.steps is None:
        raise CmdclError(f"--metric step_mAP: {where} has no step scores (a head without atomic-action "
                         f"logits, or a split without annotated steps).", fix="use --metric top1 or mAP.")
    return WeightedMAP(p.step_scores, p.steps)


def leakage_values(p: Predictions, name: str, where: str) -> np.ndarray:
    """1 / 0: the cross-validated probe of the factor got the video's value right; NaN: left out."""
    factor = name.partition(":")[2]
    column = p.leakage_column(factor)
    if column is None:
        raise CmdclError(f"--metric {name}: {where} has no leakage probe of {factor!r} (probed: "
                         f"{', '.join(p.leakage_names or []) or 'none'}).",
                         fix="evaluate on features with that context factor (docs/REPORT.md \"Confounding\").")
    return np.asarray(column, np.float64)


def column_values(p: Predictions, name: str, where: str) -> np.ndarray:
    """The per-video column `name` that evaluate kept (a metric entry without its own function)."""
    column = p.video_column(name)
    if column is None:
        raise CmdclError(f"--metric {name}: {where} holds no per-video {name!r} (kept: "
                         f"{', '.join(p.video_metric_names or []) or 'none'}).",
                         fix=f"evaluate the run again (a head or split without it gives none): "
                             f"{metric_entry(name).help}.")
    return np.asarray(column, np.float64)


def per_video_values(p: Predictions, name: str, where: str) -> np.ndarray:
    """The per-video values of a per-video metric (the entry's function, else its kept column)."""
    function = paired_entry(name).function
    return (resolve(function) if function else column_values)(p, name, where)


def metric_of(p: Predictions, name: str, where: str) -> WeightedMetric:
    """The weighted metric of one seed's predictions (a mean of per-video values, or the entry's own)."""
    paired = paired_entry(name)
    if paired.per_video:
        return WeightedMean(per_video_values(p, name, where))
    return resolve(paired.function)(p, name, where)
