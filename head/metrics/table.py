"""Running the metric table (head/metrics/registry.py) over one split: `SplitScores` is what every entry's
`compute` and `collect` function is given.

    scores = SplitScores(data, rows, multilabel)               # the entries that apply (all, or validation's)
    outputs = collect_outputs(model, data, rows, device, keys=scores.keys, on_batch=scores.on_batch)
    metrics = scores.metrics(outputs)                          # metrics_<split>.json's keys, in table order
    scores.per_video                                           # {name: (n,) values}: predictions' video_metrics

A head output reaches a metric in one of two ways: named in the entry's `outputs`, it is collected whole over
the split ((n, ...) numpy, None when the head does not return it) into `split.outputs`; read by the entry's
`collect` object, that object sees every batch's outputs (torch tensors) and keeps only what it needs.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any, Mapping

import numpy as np
import torch

from ..data import FeatureData
from .registry import METRICS, MetricEntry, resolve


class SplitScores:
    """One split's rows, the head's outputs on them and what the metric entries share (labels, segments,
    context factors: read once)."""

    def __init__(self, data: FeatureData, rows: np.ndarray, multilabel: bool, detailed: bool = True,
                 stream: bool = True, entries: Mapping[str, MetricEntry] | None = None):
        """detailed: every entry (evaluate, report), else the `validation` ones (training) and the cheap form of
        each (no per-class lists); stream: make the entries' `collect` objects (fed by `on_batch`)."""
        self.data, self.rows, self.multilabel, self.detailed = data, np.asarray(rows, np.int64), multilabel, detailed
        table = METRICS if entries is None else entries
        self.entries = {n: e for n, e in table.items() if detailed or e.validation}
        self.outputs: dict[str, np.ndarray | None] = {}
        self.per_video: dict[str, np.ndarray] = {}  # name -> (n,) values kept for compare (NaN: not scored)
        self.shared: dict[str, Any] = {}  # what one entry computed and another reads (e.g. the leakage probes)
        self.collectors: dict[str, Any] = {}
        if stream:
            for entry in self.entries.values():
                if entry.collect and entry.collect not in self.collectors:
                    self.collectors[entry.collect] = resolve_path(entry.collect)(self)

    @property
    def keys(self) -> tuple[str, ...]:
        """The head outputs to collect whole: every entry's `outputs`."""
        return tuple(dict.fromkeys(["logits", "step_logits", *(k for e in self.entries.values() for k in e.outputs)]))

    def on_batch(self, batch_rows: np.ndarray, outputs: dict[str, torch.Tensor]) -> None:
        for collector in self.collectors.values():
            collector.add(batch_rows, outputs)

    def metrics(self, outputs: dict[str, np.ndarray | None]) -> dict[str, Any]:
        """Every entry that can run on these outputs (its `outputs` collected, its collector fed), merged in table
        order."""
        self.outputs = outputs
        merged: dict[str, Any] = {}
        for entry in self.entries.values():
            if any(k not in outputs for k in entry.outputs) or (entry.collect and entry.collect not in self.collectors):
                continue
            merged.update(resolve(entry.compute)(self))
        return merged

    def keep_per_video(self, name: str, values: np.ndarray) -> None:
        """Keep (n,) per-video values of metric `name` (NaN: not scored) for predictions_<split>.npz."""
        values = np.asarray(values, np.float64)
        assert values.shape == (len(self.rows),), (name, values.shape)
        self.per_video[name] = values

    # ------------------------------------------------------------------------------------------ shared inputs

    def _column(self, tensor: torch.Tensor) -> np.ndarray:
        return tensor[torch.as_tensor(self.rows)].cpu().numpy()

    @cached_property
    def label(self) -> np.ndarray:
        return self._column(self.data.label)

    @cached_property
    def labels(self) -> np.ndarray:
        return self._column(self.data.labels)

    @cached_property
    def steps(self) -> np.ndarray:
        return self._column(self.data.steps)

    @cached_property
    def frame_mask(self) -> np.ndarray:
        return self._column(self.data.frame_mask)

    @cached_property
    def segments(self) -> list[np.ndarray]:
        """Each row's step segments [step, start_s, end_s] (k, 3)."""
        return self.data.feature_set.read_segments(self.data.positions[self.rows])

    @cached_property
    def factors(self) -> tuple[np.ndarray | None, list[str]]:
        """((n, K) context values, their factor names): head/metrics/leakage.py's `context_factors`."""
        from .leakage import context_factors

        return context_factors(self.data.feature_set, self.data.positions[self.rows])


def resolve_path(path: str):
    """Like registry.resolve, with a dotted attribute after the colon ("module:Class.method")."""
    module, _, dotted = path.partition(":")
    head, _, rest = dotted.partition(".")
    target = resolve(f"{module}:{head}")
    for part in filter(None, rest.split(".")):
        target = getattr(target, part)
    return target
