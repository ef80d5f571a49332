"""The report's spatial-grounding figure (paper fig. 7, over space with the ground truth): for a few videos of
the split, one frame with the patch attention of its true step overlaid and the object's true box drawn.

Drawn only when the head outputs `spatial_attention` and the feature file stores boxes (/boxes/xyxy); the
box and the patch grid share the model's input-image coordinates (docs/FORMAT.md), so they line up.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cmdcl.core.store import FeatureSet

from ..data import FeatureData
from ..metrics.spatial import frame_boxes, patch_overlap
from .figures import Figure, _figure, _save, _wrap
from .scoring import video_view
from .video_figures import FrameReader, decode_frames

MAX_GROUNDING_VIDEOS = 4
TITLE = "Spatial grounding: attention of the true step on the true object"


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


def spatial_grounding_figure(model: torch.nn.Module, data: FeatureData, device: torch.device,
                             step_names: list[str], path: Path, read_frames: FrameReader | None = None) -> Figure:
    """Up to MAX_GROUNDING_VIDEOS panels; a skipped Figure (with the reason) when there is nothing to draw."""
    fs: FeatureSet = data.feature_set
    if not fs.has_boxes:
        return Figure("spatial_grounding", TITLE, notes=["Skipped: the feature file stores no object boxes."])
    if not data.use_patches:
        return Figure("spatial_grounding", TITLE, notes=["Skipped: the run was trained without --use-patches."])
    rows = np.arange(len(data))
    boxes = frame_boxes(data, rows)
    panels = []
    for row in rows:
        if np.isnan(boxes[row]).all() or not len(fs.read_segments(data.positions[[row]])[0]):
            continue
        view = video_view(model, data, int(row), device)
        if view.get("spatial_attention") is None:
            return Figure("spatial_grounding", TITLE, notes=["Skipped: the head returned no spatial attention."])
        chosen = pick_instances(view, boxes[row])
        if chosen is not None:
            panels.append((view, *chosen, boxes[row][chosen[1]]))
        if len(panels) == MAX_GROUNDING_VIDEOS:
            break
    if not panels:
        return Figure("spatial_grounding", TITLE, notes=["Skipped: no video with both a box and a step segment."])
    figure = Figure("spatial_grounding", TITLE,
                    caption="For each video, a frame inside one of its annotated steps: the head's attention of that "
                            "step over the patch grid (colour, red = the frame's maximum) and the object's annotated "
                            "box (white). Below: the attention mass on the patches the box overlaps, and their share "
                            "of the grid (what uniform attention would put there).")
    figure.notes += _draw(panels, fs, step_names, path, read_frames)
    figure.file = path.name
    return figure


def _draw(panels: list, fs: FeatureSet, step_names: list[str], path: Path,
          read_frames: FrameReader | None) -> list[str]:
    from matplotlib.patches import Rectangle

    fig = _figure("spatial_grounding")
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    grid = int(fs.attrs.get("patch_grid", 0))
    extent, notes = (0, 1, 1, 0), []
    for ax, (view, step, frame, box) in zip(axes, panels):
        attention = np.clip(view["spatial_attention"][step, frame].astype(np.float64), 0, None)
        pixels, reason = decode_frames(view["path"], view["frame_index"][[frame]], fs, read_frames)
        if pixels is not None:
            ax.imshow(pixels[0], extent=extent, aspect="auto")
        elif reason not in notes:
            notes.append(f"Frames not shown ({reason}).")
        cells = attention.reshape(grid, grid) / max(attention.max(), 1e-12)
        ax.imshow(cells, extent=extent, aspect="auto", cmap="jet", alpha=0.5 if pixels is not None else 1.0,
                  vmin=0, vmax=1, interpolation="nearest")
        x0, y0, x1, y1 = (float(v) for v in box)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linewidth=2))
        inside = patch_overlap(box, grid)
        mass = attention[inside].sum() / max(attention.sum(), 1e-12)
        ax.set_title(f"{view['video_id']}\n{_wrap(step_names[step], 24)} @ {view['timestamps_s'][frame]:.1f} s",
                     fontsize=8)
        ax.set_xlabel(f"mass on box {mass:.2f} (share {inside.mean():.2f})", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_box_aspect(1)
    fig.suptitle("Spatial grounding")
    _save(fig, path)
    return notes


def figure_for_run(scored: Any, out: Path, read_frames: Callable | None) -> Figure:
    """The figure for build_report's ScoredRun."""
    return spatial_grounding_figure(scored.model, scored.data, scored.device, scored.step_names,
                                    out / "spatial_grounding.png", read_frames)
