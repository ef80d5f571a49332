"""Step grounding: does a head's step attention fall on the frames where the step happens?

For every annotated step instance (segment [step, start_s, end_s] from the feature store) of a video,
with the head's attention a_s over the video's F frames (step s's row of `step_attention`, (S, F)):

    mass     = sum of a_s over the valid frames inside the segment / sum of a_s over the valid frames
    uniform  = valid frames inside the segment / valid frames      (the mass of uniform attention)
    pointing = 1 if the frame of highest a_s lies inside the segment, else 0 (ties: the share of the
               tied frames inside, the expected hit of breaking the tie at random)

A frame lies inside when start_s <= t < end_s, t being its stored presentation time. The random
pointing baseline (a frame drawn uniformly from the valid frames) equals `uniform` per instance.
Instances with no valid sampled frame inside (shorter than the sampling step) or with a step outside
the attention's vocabulary cannot be scored and are counted apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import FeatureData, frame_subsample_index

# Attention values this close (relative) to the maximum count as tied for the pointing game.
TIE_TOLERANCE = 1e-6


@dataclass
class InstanceGrounding:
    """Per scored step instance: mass in the segment, the uniform share, the pointing hit."""

    mass: np.ndarray = field(default_factory=lambda: np.zeros(0))
    uniform: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pointing: np.ndarray = field(default_factory=lambda: np.zeros(0))
    unscored: int = 0

    def extend(self, other: "InstanceGrounding") -> None:
        self.mass = np.concatenate([self.mass, other.mass])
        self.uniform = np.concatenate([self.uniform, other.uniform])
        self.pointing = np.concatenate([self.pointing, other.pointing])
        self.unscored += other.unscored


def segment_grounding(attention: np.ndarray, timestamps_s: np.ndarray, frame_mask: np.ndarray,
                      segments: np.ndarray) -> InstanceGrounding:
    """Grounding of one video: attention (S, F), frame times in seconds (F,), valid frames (F,) bool,
    segments (k, 3) rows [step, start_s, end_s]."""
    attention = np.asarray(attention, np.float64)
    valid = np.asarray(frame_mask, bool)
    times = np.asarray(timestamps_s, np.float64)
    segments = np.asarray(segments, np.float64).reshape(-1, 3)
    mass, uniform, pointing = [], [], []
    unscored = 0
    for step, start, end in segments:
        inside = valid & (times >= start) & (times < end)
        s = int(step)
        if not inside.any() or not 0 <= s < attention.shape[0] or step != s:
            unscored += 1
            continue
        weights = np.where(valid, np.clip(attention[s], 0, None), 0.0)
        total = weights.sum()
        if total <= 0:  # no attention on any valid frame: the head says nothing about this step
            unscored += 1
            continue
        tied = valid & (weights >= weights.max() * (1 - TIE_TOLERANCE))
        mass.append(weights[inside].sum() / total)
        uniform.append(inside.sum() / valid.sum())
        pointing.append((tied & inside).sum() / tied.sum())
    return InstanceGrounding(np.array(mass), np.array(uniform), np.array(pointing), unscored)


def grounding_summary(instances: InstanceGrounding) -> dict[str, float | int]:
    """The means over instances, flat so that they sit beside top-1 in metrics.json and the report.

    grounding_mass_ratio (mean mass / mean uniform share; 1 = no better than uniform) is the headline.
    """
    n = len(instances.mass)
    if n == 0:
        return {"grounding_instances": 0, "grounding_unscored": instances.unscored}
    mass, uniform = float(instances.mass.mean()), float(instances.uniform.mean())
    return {
        "grounding_mass": mass,
        "grounding_uniform": uniform,
        "grounding_mass_ratio": mass / uniform if uniform > 0 else float("nan"),
        "grounding_pointing": float(instances.pointing.mean()),
        "grounding_pointing_random": uniform,
        "grounding_instances": n,
        "grounding_unscored": instances.unscored,
    }


def stored_frame_column(data: FeatureData, rows: np.ndarray, name: str) -> np.ndarray:
    """A per-frame /videos column (e.g. "timestamps_ms", "frame_index") of `rows`, (n, F'), aligned with the
    frames the head sees: FeatureData's frame subsample of the stored frames when it keeps fewer."""
    fs = data.feature_set
    positions = data.positions[np.asarray(rows, np.int64)]
    column = np.asarray(fs.index[name][positions])
    if data.frames < fs.dims["F"]:
        take, _ = frame_subsample_index(fs.index["frame_mask"][positions], data.frames)
        column = np.take_along_axis(column, take, axis=1)
    return column


def frame_step_ids(data: FeatureData, rows: np.ndarray, segments: list[np.ndarray]) -> np.ndarray | None:
    """(n, F) int64 step id of every frame the head sees of `rows` (their `segments` [step, start_s, end_s]; a
    frame at time t is inside when start_s <= t < end_s, the last segment listed winning where they overlap;
    -1 outside every segment), or None when no row has a segment."""
    if not any(len(s) for s in segments):
        return None
    times = stored_frame_column(data, rows, "timestamps_ms") / 1000.0
    table = np.full(times.shape, -1, np.int64)
    for i, video in enumerate(segments):
        for step, start, end in np.asarray(video, np.float64).reshape(-1, 3):
            table[i, (times[i] >= start) & (times[i] < end)] = int(step)
    return table


class GroundingCollector:
    """Scores step grounding batch by batch during evaluation, so no (N, S, F) attention is kept.

    `add` is the `on_batch` hook of evaluate.collect_outputs; `summary` is {} when the head has no step
    attention or the rows have no segments, so the keys appear only where they mean something.
    """

    def __init__(self, data: FeatureData, rows: np.ndarray, segments: list[np.ndarray]):
        self.data = data
        self.segments = {int(r): s for r, s in zip(rows, segments)}
        self.instances = InstanceGrounding()
        self.saw_attention = False

    @classmethod
    def for_split(cls, split) -> "GroundingCollector":
        """The metric table's `collect` (head/metrics/registry.py): a collector over a SplitScores' rows."""
        return cls(split.data, split.rows, split.segments)

    @property
    def has_segments(self) -> bool:
        return any(len(s) for s in self.segments.values())

    def add(self, rows: np.ndarray, outputs: dict[str, torch.Tensor]) -> None:
        if "step_attention" not in outputs or not self.has_segments:
            return
        self.saw_attention = True
        attention = outputs["step_attention"].float().cpu().numpy()
        times = stored_frame_column(self.data, rows, "timestamps_ms") / 1000.0
        mask = self.data.frame_mask[torch.as_tensor(rows)].cpu().numpy()
        for i, row in enumerate(rows):
            self.instances.extend(segment_grounding(attention[i], times[i], mask[i], self.segments[int(row)]))

    def summary(self) -> dict[str, float | int]:
        return grounding_summary(self.instances) if self.saw_attention else {}
