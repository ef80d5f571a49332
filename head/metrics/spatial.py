"""Spatial grounding: does a head's patch attention fall on the annotated object (paper fig 7)?

For every annotated step instance [step, start_s, end_s] of a video, on each valid sampled frame inside the
segment that has a box (/boxes/xyxy of the feature file, [0, 1] coordinates of the model's input image),
with a = the head's `spatial_attention` of the step over the frame's P = G*G patches:

    mass     = sum of a over the patches overlapping the box / sum of a
    share    = patches overlapping the box / P          (the mass of uniform attention; chance pointing)
    pointing = 1 if the patch of highest a overlaps the box, else 0 (ties: the share of tied patches that do)

Patch (i, j) of the grid (row-major: p = i * G + j) covers [j/G, (j+1)/G) x [i/G, (i+1)/G); it overlaps the
box when the two rectangles intersect with positive area. Each instance averages its frames; the summary
averages instances: spatial_mass_ratio = mean mass / mean share (1.0 = no better than uniform attention).

Props (objects with no part in the action, /boxes/props_xyxy (N, F, M, 4)) are scored the same way on the same
step instances, over the union of the props in view in each frame (frames with no prop in view do not count):
spatial_prop_mass_ratio = mean mass on the props' patches / their mean share, so "the attention mass on the
props is at most their share" reads spatial_prop_mass_ratio <= 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import FeatureData, frame_subsample_index
from .grounding import TIE_TOLERANCE


def patch_overlap(boxes: np.ndarray, grid: int) -> np.ndarray:
    """(..., 4) [x0, y0, x1, y1] boxes in [0, 1] -> (..., G*G) bool: the patches each box overlaps."""
    edges = np.arange(grid + 1) / grid
    boxes = np.asarray(boxes, np.float64)[..., None]  # (..., 4, 1)
    cols = (boxes[..., 0, :] < edges[1:]) & (boxes[..., 2, :] > edges[:-1])  # (..., G)
    rows = (boxes[..., 1, :] < edges[1:]) & (boxes[..., 3, :] > edges[:-1])
    return (rows[..., :, None] & cols[..., None, :]).reshape(*rows.shape[:-1], grid * grid)


@dataclass
class SpatialInstances:
    """Per scored step instance: mean mass on the box, mean share of box patches, mean pointing hit."""

    mass: list[float] = field(default_factory=list)
    share: list[float] = field(default_factory=list)
    pointing: list[float] = field(default_factory=list)
    frames: int = 0
    prop_mass: list[float] = field(default_factory=list)  # the same on the union of the props' boxes
    prop_share: list[float] = field(default_factory=list)

    def add_video(self, attention: np.ndarray, times_s: np.ndarray, frame_mask: np.ndarray, boxes: np.ndarray,
                  segments: np.ndarray, prop_boxes: np.ndarray | None = None) -> None:
        """attention (S, F, P), frame times (F,), valid frames (F,), boxes (F, 4) (NaN: none), segments (k, 3),
        prop_boxes (F, M, 4) or None (NaN: that prop is not in view)."""
        steps, _, patches = attention.shape
        grid = int(round(np.sqrt(patches)))
        valid = np.asarray(frame_mask, bool)
        has_box = valid & ~np.isnan(boxes).any(axis=1)
        overlap = patch_overlap(np.nan_to_num(boxes), grid)  # (F, P)
        props = None
        if prop_boxes is not None:
            in_view = ~np.isnan(prop_boxes).any(axis=2)  # (F, M)
            props = (patch_overlap(np.nan_to_num(prop_boxes), grid) & in_view[..., None]).any(axis=1)  # (F, P)
            props &= valid[:, None]
        for step, start, end in np.asarray(segments, np.float64).reshape(-1, 3):
            s = int(step)
            if step != s or not 0 <= s < steps:
                continue
            in_segment = (times_s >= start) & (times_s < end)
            self._add_object(attention[s], np.flatnonzero(has_box & in_segment), overlap)
            if props is not None:
                frames = np.flatnonzero(in_segment & props.any(axis=1))
                scored = _box_mass(attention[s, frames], props[frames])
                if scored is not None:
                    self.prop_mass.append(float(scored[0].mean()))
                    self.prop_share.append(float(scored[1].mean()))

    def _add_object(self, attention: np.ndarray, frames: np.ndarray, overlap: np.ndarray) -> None:
        """One step instance on the action's object: attention (F, P) of the step, its scored frames."""
        scored = _box_mass(attention[frames], overlap[frames])
        if scored is None:
            return
        mass, share, weights, inside = scored
        tied = weights >= weights.max(axis=1, keepdims=True) * (1 - TIE_TOLERANCE)
        self.mass.append(float(mass.mean()))
        self.share.append(float(share.mean()))
        self.pointing.append(float(((tied & inside).sum(axis=1) / tied.sum(axis=1)).mean()))
        self.frames += len(weights)

    def summary(self) -> dict[str, float | int]:
        if not self.mass and not self.prop_mass:
            return {}
        return {**self._object_summary(), **self._prop_summary()}

    def _prop_summary(self) -> dict[str, float | int]:
        if not self.prop_mass:
            return {}
        mass, share = float(np.mean(self.prop_mass)), float(np.mean(self.prop_share))
        return {"spatial_prop_mass": mass, "spatial_prop_share": share,
                "spatial_prop_mass_ratio": mass / share if share > 0 else float("nan"),
                "spatial_prop_instances": len(self.prop_mass)}

    def _object_summary(self) -> dict[str, float | int]:
        if not self.mass:
            return {}
        mass, share = float(np.mean(self.mass)), float(np.mean(self.share))
        return {
            "spatial_mass": mass,
            "spatial_share": share,
            "spatial_mass_ratio": mass / share if share > 0 else float("nan"),
            "spatial_pointing": float(np.mean(self.pointing)),
            "spatial_pointing_chance": share,
            "spatial_instances": len(self.mass),
            "spatial_frames": self.frames,
        }


def _box_mass(weights: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """Per frame with any attention: (mass of `weights` (n, P) on the `inside` (n, P) patches, their share,
    the kept weights, the kept inside); None when no frame has attention (such a frame says nothing)."""
    weights = np.clip(np.asarray(weights, np.float64), 0, None)
    total = weights.sum(axis=1)
    keep = total > 0
    if not keep.any():
        return None
    weights, inside, total = weights[keep], inside[keep], total[keep]
    return (weights * inside).sum(axis=1) / total, inside.mean(axis=1), weights, inside


def frame_boxes(data: FeatureData, rows: np.ndarray, props: bool = False) -> np.ndarray | None:
    """(n, F', 4) boxes of `rows` (with `props`: (n, F', M, 4) boxes of the props) aligned with the frames the
    head sees; None when the file has none."""
    fs = data.feature_set
    positions = data.positions[np.asarray(rows, np.int64)]
    boxes = fs.read_prop_boxes(positions) if props else fs.read_boxes(positions)
    if boxes is None:
        return None
    if data.frames < fs.dims["F"]:
        take, _ = frame_subsample_index(fs.index["frame_mask"][positions], data.frames)
        take = take.reshape(*take.shape, *([1] * (boxes.ndim - 2)))
        boxes = np.take_along_axis(boxes, take, axis=1)
    return boxes



class SpatialCollector:
    """Scores spatial grounding batch by batch (the `on_batch` hook of evaluate.collect_outputs), so no
    (N, S, F, P) attention is kept. `summary` is {} without spatial attention, boxes or segments."""

    def __init__(self, data: FeatureData, rows: np.ndarray, segments: list[np.ndarray]):
        from .grounding import stored_frame_column

        self.data = data
        rows = np.asarray(rows, np.int64)
        annotated = any(len(s) for s in segments)
        boxes = frame_boxes(data, rows) if annotated else None
        props = frame_boxes(data, rows, props=True) if annotated else None
        self.by_row = {}
        if boxes is not None or props is not None:
            times = stored_frame_column(data, rows, "timestamps_ms") / 1000.0
            nothing = np.full((times.shape[1], 4), np.nan)
            for i, r in enumerate(rows):
                box = boxes[i] if boxes is not None else nothing
                prop = props[i] if props is not None else None
                if len(segments[i]) and not (np.isnan(box).all() and (prop is None or np.isnan(prop).all())):
                    self.by_row[int(r)] = (times[i], box, segments[i], prop)
        self.instances = SpatialInstances()

    @classmethod
    def for_split(cls, split) -> "SpatialCollector":
        """The metric table's `collect` (head/metrics/registry.py): a collector over a SplitScores' rows."""
        return cls(split.data, split.rows, split.segments)

    def add(self, rows: np.ndarray, outputs: dict[str, torch.Tensor]) -> None:
        if "spatial_attention" not in outputs or not self.by_row:
            return
        wanted = [i for i, r in enumerate(rows) if int(r) in self.by_row]
        if not wanted:
            return
        attention = outputs["spatial_attention"][wanted].float().cpu().numpy()
        mask = self.data.frame_mask[torch.as_tensor(np.asarray(rows)[wanted])].cpu().numpy()
        for j, i in enumerate(wanted):
            times, boxes, segments, props = self.by_row[int(rows[i])]
            self.instances.add_video(attention[j], times, mask[j], boxes, segments, props)

    def summary(self) -> dict[str, float | int]:
        return self.instances.summary()
