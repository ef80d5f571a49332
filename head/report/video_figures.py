"""The report's per-video figures (paper fig. 7): temporal and spatial attention of atomic actions, and
cross-modal matching probabilities before and after the interventions.

Video frames for the spatial overlay come from a `FrameReader` the caller passes in (the CLI builds one
from cmdcl.extract's decoders), so that the head stage never imports the extraction stage.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cmdcl.core.errors import shorten
from cmdcl.core.store import FeatureSet
from .figures import Figure, _figure, _no_data, _save, _wrap
from .scoring import FALLBACK_TOP_K

MAX_SPATIAL_ACTIONS = 3  # rows of the spatial-attention grid
MAX_SPATIAL_FRAMES = 8  # columns of the spatial-attention grid
THUMBNAIL_SHORT_SIDE = 160  # pixels: enough for a thumbnail under the patch grid
MATCHING_COLOURS = {"a_before": "#a25ca8", "a_after": "#dfa3d2", "b_before": "#2a2f7a", "b_after": "#76bde9"}

# (video path, frame indices, short side in pixels) -> frames (n, H, W, 3) uint8, short side scaled to it.
FrameReader = Callable[[str, np.ndarray, int], np.ndarray]


def plot_temporal_attention(view: dict[str, Any], actions: list[int], step_names: list[str], path: Path) -> Figure:
    """Attention of each tracked atomic action over the video's valid frames, at their stored times; the
    annotated segments of those actions (when the features store them) as bars under the curves."""
    figure = Figure("temporal_attention", "Temporal attention of atomic actions",
                    caption=f"Video {view['video_id']}: how much each atomic action's visual evidence V'_i draws "
                            "on each sampled frame (the head's step attention; each action's weights sum to 1 over "
                            "the frames). x is the presentation time of the sampled frame. A good head puts an "
                            "action's weight where that action happens, in script order.")
    fig = _figure("temporal_attention")
    ax = fig.subplots()
    mask = view["frame_mask"]
    times = view["timestamps_s"][mask]
    attention = view["step_attention"]
    colours = {}
    for s in actions:
        (line,) = ax.plot(times, attention[s][mask], "-o", markersize=3, label=step_names[s])
        colours[s] = line.get_color()
    if not actions:
        _no_data(ax, "no atomic action to track")
    else:
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("attention")
    segments = view.get("segments")
    if segments is not None and _draw_segments(ax, segments, colours, attention[:, mask]):
        figure.caption += (" Bars under the curves: the annotated segments of each tracked action (in its "
                           "colour), as stored in the feature file; the attention should peak over its bars.")
    else:
        ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(f"Temporal attention, video {view['video_id']}")
    figure.file = _save(fig, path)
    return figure


def _draw_segments(ax, segments: np.ndarray, colours: dict[int, str], attention: np.ndarray) -> bool:
    """One lane per tracked action below y = 0, with a bar over each of its true segments; False when no
    tracked action has a segment."""
    lanes = [s for s in colours if (segments[:, 0] == s).any()]
    if not lanes:
        return False
    top = max(float(attention[list(colours)].max()) if attention.size else 0.0, 1e-6)
    height = 0.07 * top
    for lane, s in enumerate(lanes):
        rows = segments[segments[:, 0] == s]
        ax.broken_barh([(float(a), float(b - a)) for _, a, b in rows], (-(lane + 1) * 1.3 * height, height),
                       facecolors=colours[s], alpha=0.7)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_ylim(bottom=-(len(lanes) + 0.5) * 1.3 * height, top=1.1 * top)
    ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= 1.1 * top])  # no attention ticks below 0
    ax.text(0.005, 0.01, "true segments", transform=ax.transAxes, fontsize=7, color="0.3", va="bottom")
    return True


def spatial_attention_figure(view: dict[str, Any], actions: list[int], step_names: list[str], fs: FeatureSet,
                             used_patches: bool, path: Path, read_frames: FrameReader | None = None) -> Figure:
    title = "Spatial attention of atomic actions"
    if view.get("spatial_attention") is None:
        why = ("the run was trained without --use-patches" if fs.has_patches
               else "the features hold no patch tokens (extract with --patch-grid)")
        if not used_patches or not fs.has_patches:
            return Figure("spatial_attention", title, notes=[f"Skipped: {why}."])
        return Figure("spatial_attention", title, notes=["Skipped: the head returned no spatial attention."])
    mask = view["frame_mask"]
    valid = np.flatnonzero(mask)
    columns = valid[np.unique(np.linspace(0, len(valid) - 1, min(MAX_SPATIAL_FRAMES, len(valid))).round().astype(int))]
    frames, reason = decode_frames(view["path"], view["frame_index"][columns], fs, read_frames)
    grid = int(fs.attrs.get("patch_grid", 0))
    figure = Figure("spatial_attention", title,
                    caption=f"Video {view['video_id']}: for each tracked atomic action (rows) and sampled frame "
                            f"(columns, time on top), the head's attention over the {grid}x{grid} patch grid of the "
                            "square the encoder saw (a softmax over the patches of each frame: where in the frame "
                            "the action looks; the temporal plot says which frames count). One colour scale per "
                            "row (red = that row's maximum).")
    if frames is None:
        figure.notes.append(f"Frames not shown ({reason}): the patch grid is drawn alone.")
    figure.file = plot_spatial_attention(view, actions[:MAX_SPATIAL_ACTIONS], columns, frames, grid, step_names,
                                         fs, path)
    return figure


def plot_spatial_attention(view: dict[str, Any], actions: list[int], columns: np.ndarray,
                           frames: np.ndarray | None, grid: int, step_names: list[str], fs: FeatureSet,
                           path: Path) -> str:
    fig = _figure("spatial_attention")
    rows = len(actions) + (frames is not None)
    axes = np.atleast_2d(fig.subplots(max(rows, 1), len(columns), squeeze=False))
    spatial = view["spatial_attention"]
    extent = (0, 1, 1, 0)
    r = 0
    if frames is not None:
        for c, frame in enumerate(frames):
            axes[0, c].imshow(frame, extent=extent, aspect="auto")
        axes[0, 0].set_ylabel("frames", fontsize=8)
        r = 1
    for s in actions:
        row_max = max(float(spatial[s][columns].max()), 1e-12)
        for c, f in enumerate(columns):
            ax = axes[r, c]
            cells = spatial[s, f].reshape(grid, grid) / row_max
            if frames is not None:
                ax.imshow(frames[c], extent=extent, aspect="auto")
                ax.imshow(cells, extent=extent, aspect="auto", cmap="jet", alpha=0.5, vmin=0, vmax=1,
                          interpolation="bilinear")
            else:
                ax.imshow(cells, extent=extent, aspect="auto", cmap="jet", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(_wrap(step_names[s], 14), fontsize=8)
        r += 1
    digits = 2 if view["timestamps_s"][columns].max() < 10 else 1
    for c, f in enumerate(columns):
        axes[0, c].set_title(f"{view['timestamps_s'][f]:.{digits}f} s", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_box_aspect(1)
    fig.suptitle(f"Spatial attention, video {view['video_id']}")
    return _save(fig, path)


def decode_frames(path: str, frame_index: np.ndarray, fs: FeatureSet,
                  read_frames: FrameReader | None) -> tuple[np.ndarray | None, str]:
    """The sampled frames as the encoder saw them (centre crop or padding to a square), or (None, reason)."""
    if read_frames is None:
        return None, "no frame reader was given"
    if not path or not Path(path).exists():
        return None, f"video file {path or '(no path)'} is not readable here"
    preprocess = fs.attrs.get("preprocess") or "{}"
    try:
        mode = (json.loads(preprocess) if isinstance(preprocess, str) else dict(preprocess)).get("resize_mode")
    except (json.JSONDecodeError, TypeError, ValueError):
        mode = None
    try:
        frames = read_frames(path, np.asarray(frame_index, np.int64), THUMBNAIL_SHORT_SIDE)
    except Exception as exc:  # any decoder failure only costs the thumbnails
        return None, f"could not decode {path}: {shorten(str(exc), 120)}"
    return np.stack([_as_model_view(f, mode) for f in frames]), ""


def _as_model_view(frame: np.ndarray, resize_mode: str | None) -> np.ndarray:
    """The square region the patch grid covers: centre crop ("shortest"), centre padding ("longest") or the
    whole frame squashed ("squash"; drawn stretched)."""
    h, w = frame.shape[:2]
    if resize_mode == "longest":
        side = max(h, w)
        square = np.zeros((side, side, 3), frame.dtype)
        top, left = (side - h) // 2, (side - w) // 2
        square[top:top + h, left:left + w] = frame
        return square
    if resize_mode == "squash":
        return frame
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return frame[top:top + side, left:left + side]


def plot_matching(matching: dict[str, Any], step_names: list[str], annotated: bool, path: Path) -> Figure:
    """Figure 7c: probabilities of the video over two activities' atomic actions, before and after."""
    names = matching["class_names"]
    a, b = names[matching["class_a"]], names[matching["class_b"]]
    source = ("steps annotated in the activity's training videos" if annotated
              else f"the {FALLBACK_TOP_K} steps whose CLIP texts are closest to the activity name (steps not annotated)")
    figure = Figure("matching", "Cross-modal matching probabilities before and after the interventions",
                    caption=f"Video {matching['video_id']} against the atomic actions of its {matching['kind_a']} "
                            f"activity A = \u201c{a}\u201d (left) and of the activity the head finds most "
                            f"confusable, B = \u201c{b}\u201d (right). Each activity's actions are {source}. "
                            "Actions of both activities are drawn on both sides. "
                            "Probabilities are one softmax over all drawn actions: before = frozen CLIP, "
                            "cos(mean frame, action text) / 0.01; after = the head's atomic-action scores. "
                            "After the interventions, mass should move to A's actions.")
    fig = _figure("matching")
    ax = fig.subplots()
    rows = matching["rows"]
    y = np.arange(len(rows))
    height = 0.38
    before, after = matching["before"], matching["after"]
    in_a, in_b = matching["member_a"], matching["member_b"]
    short_a, short_b = textwrap.shorten(a, 28), textwrap.shorten(b, 28)
    bars = (("a_before", -before * in_a, -height / 2, f"A {short_a} (before)"),
            ("a_after", -after * in_a, height / 2, f"A {short_a} (after)"),
            ("b_before", before * in_b, -height / 2, f"B {short_b} (before)"),
            ("b_after", after * in_b, height / 2, f"B {short_b} (after)"))
    for key, values, offset, label in bars:
        drawn = ax.barh(y + offset, values, height=height, color=MATCHING_COLOURS[key], label=label)
        for rect, value in zip(drawn, values):
            if abs(value) >= 0.005:  # no labels on empty bars
                ax.text(value + (0.005 if value > 0 else -0.005), rect.get_y() + height / 2, f"{abs(value):.2f}",
                        ha="left" if value > 0 else "right", va="center", fontsize=7)
    limit = 1.25 * max(float(np.max(before)), float(np.max(after)), 1e-6)
    ax.set_xlim(-limit, limit)
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.set_yticks(y, [_wrap(step_names[s], 24) for s in rows], fontsize=8)
    ax.invert_yaxis()
    ax.yaxis.tick_right()
    ax.xaxis.set_major_formatter(lambda value, _: f"{abs(value):.2f}")
    ax.set_xlabel(f"\u2190 probability, A: {_wrap(a, 40)}    |    B: {_wrap(b, 40)} \u2192", fontsize=9)
    mass = {k: float((p * m).sum()) for k, p, m in (("a0", before, in_a), ("a1", after, in_a),
                                                     ("b0", before, in_b), ("b1", after, in_b))}
    ax.set_title(f"P(A's actions) {mass['a0']:.2f} \u2192 {mass['a1']:.2f},   "
                 f"P(B's actions) {mass['b0']:.2f} \u2192 {mass['b1']:.2f}   (before \u2192 after)", fontsize=10)
    fig.legend(fontsize=8, loc="outside lower center", ncol=4)
    ax.grid(axis="x", alpha=0.3)
    if matching["class_a"] == matching["class_b"]:
        figure.notes.append("Only one class: A and B are the same activity.")
    figure.file = _save(fig, path)
    return figure


