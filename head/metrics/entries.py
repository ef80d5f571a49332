"""The `compute` functions of the metric table's entries (head/metrics/registry.py): each takes the split's
`SplitScores` (head/metrics/table.py) and returns its metrics_<split>.json keys, {} where it does not apply.
The arithmetic lives with each metric (evaluate.py: top-k and AP, calibration.py, grounding.py, spatial.py,
leakage.py, frame_steps.py); these only pick the inputs.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .calibration import calibration_metrics
from .evaluate import LEAKAGE_PROBES, mean_average_precision, multi_label_metrics, single_label_metrics
from .leakage import leakage_metrics, probe_factors
from .table import SplitScores


def top1(split: SplitScores) -> dict[str, Any]:
    if split.multilabel:
        return {}
    return single_label_metrics(split.outputs["logits"], split.label, split.data.feature_set.text.class_names,
                                split.detailed)


def mean_ap(split: SplitScores) -> dict[str, Any]:
    if not split.multilabel:
        return {}
    return multi_label_metrics(split.outputs["logits"], split.labels, split.data.feature_set.text.class_names,
                               split.detailed)


def scored_steps(split: SplitScores) -> bool:
    """Whether step_mAP applies: the head scores steps and the split annotates them, in the same vocabulary."""
    step_logits = split.outputs.get("step_logits")
    return step_logits is not None and bool(split.steps.any()) and step_logits.shape[1] == split.steps.shape[1]


def step_map(split: SplitScores) -> dict[str, Any]:
    if not scored_steps(split):
        return {}
    value, per_step = mean_average_precision(split.outputs["step_logits"], split.steps)
    metrics: dict[str, Any] = {"step_mAP": value}
    if split.detailed:
        names = split.data.feature_set.text.step_names
        metrics["per_step_AP"] = {n: (None if np.isnan(a) else float(a)) for n, a in zip(names, per_step)}
    return metrics


def ece(split: SplitScores) -> dict[str, Any]:
    if split.multilabel:
        return {}
    found = calibration_metrics(split.outputs["logits"], split.label, split.labels, False, split.detailed)
    return {k: v for k, v in found.items() if k != "nll"}


def nll(split: SplitScores) -> dict[str, Any]:
    return {"nll": calibration_metrics(split.outputs["logits"], split.label, split.labels, split.multilabel,
                                       detailed=False)["nll"]}


def grounding(split: SplitScores) -> dict[str, Any]:
    return split.collectors["cmdcl.head.metrics.grounding:GroundingCollector.for_split"].summary()


def spatial(split: SplitScores) -> dict[str, Any]:
    return split.collectors["cmdcl.head.metrics.spatial:SpatialCollector.for_split"].summary()


def leakage(split: SplitScores) -> dict[str, Any]:
    factors, names = split.factors
    representation = split.outputs.get("representation")
    probes = probe_factors(representation, factors, names)
    split.shared[LEAKAGE_PROBES] = probes
    return leakage_metrics(probes, skipped=bool(names) and representation is None)


def _frame_steps(split: SplitScores):
    return split.collectors["cmdcl.head.metrics.frame_steps:FrameStepCollector"]


def frame_step_top1(split: SplitScores) -> dict[str, Any]:
    return _frame_steps(split).top1_summary(split)


def step_leakage(split: SplitScores) -> dict[str, Any]:
    return _frame_steps(split).leakage_summary(split)
