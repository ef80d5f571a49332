"""The report's run-level figures (training curves, confusion matrix, per-class AP, text similarity) and
what every figure shares: the `Figure` record, fixed sizes, the Agg canvas."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .scoring import MAX_SIMILARITY_ACTIONS, _unit

# Every figure has a fixed size at a fixed dpi, so its pixel size never depends on the data.
DPI = 100
FIGSIZE = {
    "curves": (11.0, 4.0),
    "confusion": (8.0, 7.0),
    "per_class_ap": (8.0, 7.0),
    "text_similarity": (14.0, 6.5),
    "temporal_attention": (10.0, 4.5),
    "spatial_attention": (12.0, 6.0),
    "spatial_grounding": (12.0, 7.6),
    "reliability": (12.0, 5.0),
    "matching": (10.0, 6.0),
}
MAX_CONFUSION_CLASSES = 30

# Blue - white - purple, as in the paper's figure 5.
SIMILARITY_COLOURS = ["#232c74", "#3f86d4", "#8fcdf0", "#f2eff7", "#e6bddb", "#c18bc4", "#a063a9"]


@dataclass
class Figure:
    """One figure of the report: its file (None when skipped), title, how to read it, notes."""

    key: str
    title: str
    file: str | None = None
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    text: str = ""  # preformatted text shown under the figure (e.g. the comparison table)


def _figure(key: str):
    """A matplotlib Figure of the key's fixed size, drawn by the Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=FIGSIZE[key], dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=DPI)  # never bbox_inches="tight": that would make the size depend on the labels
    return path.name


def _wrap(name: str, width: int = 16) -> str:
    return textwrap.fill(name, width) or name


def _no_data(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_curves(history: list[dict[str, Any]], path: Path) -> Figure:
    """Loss (train, val) and the validation (and any train) metrics per epoch; the best epoch dashed."""
    figure = Figure("curves", "Training curves",
                    caption="Left: mean training loss per epoch and validation loss. Right: validation metrics "
                            "per epoch (top-1/top-5/mean class accuracy or mAP, and atomic-action mAP when steps "
                            "are annotated). The dotted line marks the epoch whose checkpoint is best.pt.")
    from matplotlib.ticker import MaxNLocator

    fig = _figure("curves")
    loss_ax, metric_ax = fig.subplots(1, 2)
    if not history:
        _no_data(loss_ax, "no metrics.jsonl")
        _no_data(metric_ax, "no metrics.jsonl")
        figure.notes.append("The run folder has no metrics.jsonl: no curves to draw.")
    epochs = np.array([r.get("epoch", i) for i, r in enumerate(history)], np.float64)
    keys = sorted({k for r in history for k in r if isinstance(r[k], (int, float)) and not isinstance(r[k], bool)})
    for key, style in (("train_loss", "-o"), ("val_loss", "--s")):
        if key in keys:
            loss_ax.plot(epochs, _column(history, key), style, label=key.replace("_", " "), markersize=4)
    metric_keys = [k for k in keys if (k.startswith("val_") or k.startswith("train_")) and not k.endswith("loss")]
    for key in metric_keys:
        metric_ax.plot(epochs, _column(history, key), "-o" if key.startswith("train_") else "--s",
                       label=key.replace("_", " "), markersize=4)
    best = [r.get("epoch") for r in history if r.get("best")]
    for ax, title, ylabel in ((loss_ax, "Loss", "loss"), (metric_ax, "Metrics", "score")):
        if best:
            ax.axvline(best[-1], color="0.5", linestyle=":", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if history and not any(k in keys for k in ("train_loss", "val_loss")):
        figure.notes.append("No loss was recorded (a head without trainable parameters is scored only).")
    if "train_loss" in keys and not any(k.startswith("train_") and not k.endswith("loss") for k in keys):
        figure.notes.append("Training accuracy/mAP is not recorded in metrics.jsonl: only the training loss.")
    figure.file = _save(fig, path)
    return figure


def _column(history: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in history], np.float64)


def plot_confusion(confusion: np.ndarray, class_names: list[str], path: Path) -> Figure:
    """Row-normalised confusion matrix (colour: fraction of the true class; numbers: video counts)."""
    figure = Figure("confusion", "Confusion matrix",
                    caption="Rows are true classes, columns predicted classes. Colour is the fraction of the "
                            "row's videos (the diagonal is per-class recall); numbers are video counts. "
                            "Dark off-diagonal cells are the activities the head confuses.")
    shown = np.arange(len(confusion))
    if len(confusion) > MAX_CONFUSION_CLASSES:
        off = confusion - np.diag(np.diag(confusion))
        involvement = off.sum(0) + off.sum(1)
        shown = np.sort(np.argsort(-involvement, kind="stable")[:MAX_CONFUSION_CLASSES])
        figure.notes.append(f"{len(confusion)} classes: showing the {MAX_CONFUSION_CLASSES} involved in the most "
                            "confusions.")
    sub = confusion[np.ix_(shown, shown)]
    fraction = sub / np.maximum(confusion[shown].sum(1, keepdims=True), 1)
    fig = _figure("confusion")
    ax = fig.subplots()
    image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    labels = [_wrap(class_names[i], 22) for i in shown]
    small = len(shown) > 12
    ax.set_xticks(range(len(shown)), labels, rotation=90, fontsize=6 if small else 8)
    ax.set_yticks(range(len(shown)), labels, fontsize=6 if small else 8)
    if len(shown) <= 20:
        for i, j in np.ndindex(sub.shape):
            if sub[i, j]:
                ax.text(j, i, str(int(sub[i, j])), ha="center", va="center", fontsize=7 if small else 10,
                        color="white" if fraction[i, j] > 0.5 else "black")
    accuracy = np.trace(confusion) / max(confusion.sum(), 1)
    ax.set_title(f"Confusion matrix ({int(confusion.sum())} videos, top-1 {accuracy:.3f})")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    figure.file = _save(fig, path)
    return figure


def plot_per_class_ap(metrics: dict[str, Any], path: Path) -> Figure:
    """Average precision per class, sorted; with many classes the 20 best and 20 worst."""
    figure = Figure("per_class_ap", "Per-class average precision",
                    caption="Average precision of each class on the split, sorted. The dashed line is the mAP. "
                            "Classes without a positive video in the split have no AP and are left out.")
    ap = {n: v for n, v in metrics.get("per_class_AP", {}).items() if v is not None}
    names = sorted(ap, key=lambda n: -ap[n])
    if len(names) > 40:
        figure.notes.append(f"{len(names)} classes with an AP: showing the 20 best and the 20 worst.")
        names = names[:20] + names[-20:]
    fig = _figure("per_class_ap")
    ax = fig.subplots()
    if names:
        y = np.arange(len(names))
        ax.barh(y, [ap[n] for n in names], color="#5b8fd1")
        ax.set_yticks(y, [_wrap(n, 30) for n in names], fontsize=6 if len(names) > 20 else 8)
        ax.invert_yaxis()
        ax.axvline(metrics["mAP"], color="0.3", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_title(f"Per-class AP (mAP {metrics['mAP']:.3f}, {metrics['num_videos']} videos)")
        ax.set_xlabel("average precision")
    else:
        _no_data(ax, "no class has a positive video in this split")
    figure.file = _save(fig, path)
    return figure


def _similarity_cmap():
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("cmdcl_similarity", SIMILARITY_COLOURS)


def normalised_similarity(text: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Cosine similarity of the rows, min-max rescaled over the off-diagonal cells to [0, 1] (diagonal 1),
    as in the paper's figure 5; also returns the raw off-diagonal (min, max)."""
    unit = _unit(text)
    cosine = unit @ unit.T
    n = len(cosine)
    off = cosine[~np.eye(n, dtype=bool)]
    low, high = (float(off.min()), float(off.max())) if len(off) else (1.0, 1.0)
    scaled = (cosine - low) / (high - low) if high > low else np.zeros_like(cosine)
    np.fill_diagonal(scaled, 1.0)
    return np.clip(scaled, 0, 1), low, high


def plot_text_similarity(clip_text: np.ndarray, debiased_text: np.ndarray, actions: list[int],
                         groups: list[tuple[int, int, int]], step_names: list[str], used_tci: bool,
                         path: Path) -> Figure:
    """Figure 5: cosine similarity of atomic-action texts, CLIP (before) vs the head's T' (after)."""
    figure = Figure("text_similarity", "Atomic-action text similarity before and after the textual intervention",
                    caption="Cosine similarity between atomic-action text embeddings: frozen CLIP texts (left) "
                            "and the debiased texts T' of the head (right; averaged over the split's videos when "
                            "T' depends on the video). As in the paper, each panel is min-max rescaled over its "
                            "off-diagonal cells (raw range in the title). Before the intervention, generic actions "
                            "are close to everything; after it, actions of the same activity (dashed boxes) should "
                            "stay close and those of different activities move apart.")
    if not used_tci:
        figure.notes.append("This run was trained with --no-tci: T' is the frozen CLIP text, so both panels agree.")
    fig = _figure("text_similarity")
    axes = fig.subplots(1, 2)
    if len(actions) < 2:
        for ax in axes:
            _no_data(ax, "fewer than two atomic actions")
        figure.notes.append("Fewer than two atomic actions to compare.")
        figure.file = _save(fig, path)
        return figure
    labels = [_wrap(step_names[i]) for i in actions]
    fontsize = 8 if len(actions) <= 12 else 6
    image = None
    for ax, text, title in ((axes[0], clip_text, "CLIP (before)"), (axes[1], debiased_text, "CMDCL T' (after)")):
        scaled, low, high = normalised_similarity(np.asarray(text)[actions])
        image = ax.imshow(scaled, cmap=_similarity_cmap(), vmin=0, vmax=1)
        ax.set_title(f"{title}\ncosine {low:.2f} .. {high:.2f}", fontsize=11)
        ax.set_xticks(range(len(actions)), labels, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(len(actions)), labels, fontsize=fontsize)
        if len(actions) <= MAX_SIMILARITY_ACTIONS:
            for i, j in np.ndindex(scaled.shape):
                if i != j:
                    ax.text(j, i, f"{scaled[i, j]:.2f}", ha="center", va="center", fontsize=7 if len(actions) > 8 else 9,
                            color="white" if scaled[i, j] < 0.2 or scaled[i, j] > 0.85 else "black")
        for _, first, last in groups:
            ax.add_patch(_dashed_box(first, last))
    fig.colorbar(image, ax=list(axes), fraction=0.03, label="rescaled cosine similarity")
    figure.file = _save(fig, path)
    return figure


def _dashed_box(first: int, last: int):
    from matplotlib.patches import Rectangle

    size = last - first + 1
    return Rectangle((first - 0.5, first - 0.5), size, size, fill=False, linestyle="--", linewidth=1.5,
                     edgecolor="black")


