"""The report's spatial-grounding figure (paper fig. 7, over space with the ground truth): for a few videos of
each split the report covers (rows: e.g. IID `test` and OOD `test_ood`), one frame as the encoder saw it, the
patch attention of its true step drawn over it, the action object's true box and, when the feature file
stores them, the props' boxes (head/metrics/spatial.py `prop_boxes`).

Drawn only when the head outputs `spatial_attention` and the feature file stores boxes (/boxes/xyxy); the
boxes and the patch grid share the model's input-image coordinates (docs/FORMAT.md), so they line up. Without
a readable video the attention is drawn alone, with a note saying why.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from cmdcl.core.store import FeatureSet

from ..data import FeatureData
from ..metrics.spatial import frame_boxes, patch_overlap
from .figures import Figure, _figure, _save, _wrap
from .scoring import video_view
from .video_figures import FrameReader, decode_frames

MAX_GROUNDING_VIDEOS = 4  # panels per split
MAX_GROUNDING_SPLITS = 2  # rows: the report's first two splits
TITLE = "Spatial grounding: attention of the true step on the true object"
BOX_COLOUR, PROP_COLOUR = "white", "#ff3fd2"


@dataclass
class Panel:
    """One video's drawn frame: its split, the report's view of the video, the step and frame index drawn, the
    action object's box (4,) and the props' boxes present in that frame (k, 4)."""

    split: str
    view: dict[str, Any]
    step: int
    frame: int
    box: np.ndarray
    props: np.ndarray


def pick_instances(view: dict[str, Any], boxes: np.ndarray) -> tuple[int, int] | None:
    """(step, frame) to draw for one video: the middle boxed valid frame of its first annotated step instance
    that has one; None when no instance has a boxed frame the head saw."""
    usable = view["frame_mask"] & ~np.isnan(boxes).any(axis=1)
    times = view["timestamps_s"]
    steps = view["spatial_attention"].shape[0]
    for step, start, end in view["segments"]:
        frames = np.flatnonzero(usable & (times >= start) & (times < end))
        if len(frames) and 0 <= int(step) < steps:
            return int(step), int(frames[len(frames) // 2])
    return None


def spread(rows: np.ndarray, k: int) -> np.ndarray:
    """`rows` in the order tried: k evenly spaced over the split first (ids sort by activity in the synthetic
    worlds, so the panels span activities), then the others in order. Deterministic, never chosen by score."""
    rows = np.asarray(rows, np.int64)
    if len(rows) <= k:
        return rows
    first = np.unique(np.linspace(0, len(rows) - 1, k).round().astype(np.int64))
    return np.concatenate([rows[first], np.delete(rows, first)])


def split_panels(model: torch.nn.Module, split: str, data: FeatureData, device: torch.device) -> list[Panel] | None:
    """Up to MAX_GROUNDING_VIDEOS panels of one split; None when the head returns no spatial attention."""
    rows = np.arange(len(data))
    boxes = frame_boxes(data, rows)
    props = frame_boxes(data, rows, props=True)
    segments = data.feature_set.read_segments(data.positions)
    eligible = [r for r in rows if not np.isnan(boxes[r]).all() and len(segments[r])]
    panels = []
    for row in spread(np.asarray(eligible, np.int64), MAX_GROUNDING_VIDEOS):
        view = video_view(model, data, int(row), device)
        if view.get("spatial_attention") is None:
            return None
        chosen = pick_instances(view, boxes[row])
        if chosen is None:
            continue
        step, frame = chosen
        frame_props = np.zeros((0, 4), np.float32) if props is None else props[row, frame]
        frame_props = frame_props[~np.isnan(frame_props).any(axis=1)]
        panels.append(Panel(split, view, step, frame, boxes[row][frame], frame_props))
        if len(panels) == MAX_GROUNDING_VIDEOS:
            break
    return panels


def spatial_grounding_figure(model: torch.nn.Module, splits: Sequence[tuple[str, FeatureData]],
                             device: torch.device, step_names: list[str], path: Path,
                             read_frames: FrameReader | None = None) -> tuple[Figure, list[dict[str, Any]]]:
    """One row of panels per split (the first MAX_GROUNDING_SPLITS); a skipped Figure (with the reason) when
    there is nothing to draw. Also returns what each panel shows, for report.json."""
    data = splits[0][1]
    fs: FeatureSet = data.feature_set
    if not fs.has_boxes:
        return Figure("spatial_grounding", TITLE, notes=["Skipped: the feature file stores no object boxes."]), []
    if not data.use_patches:
        return Figure("spatial_grounding", TITLE, notes=["Skipped: the run was trained without --use-patches."]), []
    rows = []
    for split, split_data in splits[:MAX_GROUNDING_SPLITS]:
        panels = split_panels(model, split, split_data, device)
        if panels is None:
            return Figure("spatial_grounding", TITLE, notes=["Skipped: the head returned no spatial attention."]), []
        if panels:
            rows.append(panels)
    if not rows:
        return Figure("spatial_grounding", TITLE,
                      notes=["Skipped: no video with both a box and a step segment."]), []
    figure = Figure("spatial_grounding", TITLE,
                    caption="Rows: the report's splits; in each, videos evenly spaced over the split's ids (not chosen "
                            "by score). Each panel: a frame inside one of the video's annotated steps, as the encoder "
                            "saw it, under the head's attention of that step over the patch grid (colour, red = the "
                            "frame's maximum), the action object's annotated box (white) and the props' boxes "
                            "(magenta, dashed) when the features store them. Below: the attention mass on the patches "
                            "each kind of box overlaps, and their share of the grid (what uniform attention would put "
                            "there).")
    if len(splits) > MAX_GROUNDING_SPLITS:
        figure.notes.append(f"{len(splits)} splits: drawing the first {MAX_GROUNDING_SPLITS}.")
    notes, records = _draw(rows, fs, step_names, path, read_frames)
    figure.notes += notes
    figure.file = path.name
    return figure, records


def _draw(rows: list[list[Panel]], fs: FeatureSet, step_names: list[str], path: Path,
          read_frames: FrameReader | None) -> tuple[list[str], list[dict[str, Any]]]:
    fig = _figure("spatial_grounding")
    axes = fig.subplots(len(rows), MAX_GROUNDING_VIDEOS, squeeze=False)
    grid = int(fs.attrs.get("patch_grid", 0))
    notes, records = [], []
    for r, panels in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            if c >= len(panels):
                ax.set_axis_off()
                continue
            p = panels[c]
            pixels, reason = decode_frames(p.view["path"], p.view["frame_index"][[p.frame]], fs, read_frames)
            if pixels is None and f"Frames not shown ({reason})." not in notes:
                notes.append(f"Frames not shown ({reason}).")
            attention = np.clip(p.view["spatial_attention"][p.step, p.frame].astype(np.float64), 0, None)
            record = draw_panel(ax, None if pixels is None else pixels[0], attention, grid, p.box, p.props)
            ax.set_title(f"{p.view['video_id']}\n{_wrap(step_names[p.step], 24)} @ "
                         f"{p.view['timestamps_s'][p.frame]:.1f} s", fontsize=8)
            records.append({"split": p.split, "video": p.view["video_id"], "step": step_names[p.step],
                            "time_s": float(p.view["timestamps_s"][p.frame]), **record})
        axes[r, 0].set_ylabel(rows[r][0].split, fontsize=10)
    fig.suptitle("Spatial grounding over the frame")
    _save(fig, path)
    return notes, records


def draw_panel(ax, frame: np.ndarray | None, attention: np.ndarray, grid: int, box: np.ndarray,
               props: np.ndarray) -> dict[str, Any]:
    """One panel: the frame (when decoded) under the attention map, the action box and the prop boxes; returns
    the masses written under it."""
    from matplotlib.patches import Rectangle

    extent = (0, 1, 1, 0)
    cells = attention.reshape(grid, grid) / max(attention.max(), 1e-12)
    if frame is not None:
        ax.imshow(frame, extent=extent, aspect="auto")
        ax.imshow(cells, extent=extent, aspect="auto", cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")
    else:
        ax.imshow(cells, extent=extent, aspect="auto", cmap="jet", vmin=0, vmax=1, interpolation="nearest")
    for (x0, y0, x1, y1), colour, style in [(box, BOX_COLOUR, "-")] + [(b, PROP_COLOUR, "--") for b in props]:
        ax.add_patch(Rectangle((float(x0), float(y0)), float(x1 - x0), float(y1 - y0), fill=False, edgecolor=colour,
                               linewidth=2, linestyle=style))
    total = max(attention.sum(), 1e-12)
    inside = patch_overlap(box, grid)
    record = {"mass": float(attention[inside].sum() / total), "share": float(inside.mean()),
              "frame_drawn": frame is not None}
    label = f"box: mass {record['mass']:.2f} (share {record['share']:.2f})"
    if len(props):
        on_props = patch_overlap(props, grid).any(axis=0)
        record.update(props_mass=float(attention[on_props].sum() / total), props_share=float(on_props.mean()))
        label += f"\nprops: mass {record['props_mass']:.2f} (share {record['props_share']:.2f})"
    ax.set_xlabel(label, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_box_aspect(1)
    return record


def figure_for_run(scored: Any, splits: Sequence[tuple[str, FeatureData]], out: Path,
                   read_frames: Callable | None) -> tuple[Figure, list[dict[str, Any]]]:
    """The figure for build_report's ScoredRun and its (split, data) pairs."""
    return spatial_grounding_figure(scored.model, splits, scored.device, scored.step_names,
                                    out / "spatial_grounding.png", read_frames)
