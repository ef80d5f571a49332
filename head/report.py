"""`cmdcl report RUN`: figures of a trained head and one HTML page that shows them (docs/REPORT.md).

    run folder (config.json, metrics.jsonl, best.pt) + the features it was trained on
      -> score one split with the checkpoint's head (evaluation helpers of head/evaluate.py)
      -> PNG figures (matplotlib Agg, fixed sizes) + report.json (the numbers drawn) + report.html

The figures follow the paper: training curves; confusion matrix (single-label) or per-class AP
(multi-label); atomic-action text similarity before/after the textual intervention (fig. 5);
temporal and spatial attention of atomic actions over one video (fig. 7a/b); cross-modal matching
probabilities of that video against two activities' atomic actions, before/after (fig. 7c).
Heads without those outputs (the baselines) get the first two; the page says what was skipped and why.
The folder is self-contained: the page references its PNGs by relative name, so it can be copied.
"""
from __future__ import annotations

import html
import json
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cmdcl.core.errors import CheckpointError, CmdclError
from cmdcl.core.store import FeatureSet
from cmdcl.core.version import code_version
from cmdcl.head.baselines import CLIP_LOGIT_SCALE
from cmdcl.head.checkpoint import check_compatible
from cmdcl.head.data import FeatureData, frame_subsample_index
from cmdcl.head.evaluate import compute_metrics, load_model, write_json
from cmdcl.head.factory import text_tensors

# Every figure has a fixed size at a fixed dpi, so its pixel size never depends on the data.
DPI = 100
FIGSIZE = {
    "curves": (11.0, 4.0),
    "confusion": (8.0, 7.0),
    "per_class_ap": (8.0, 7.0),
    "text_similarity": (14.0, 6.5),
    "temporal_attention": (10.0, 4.5),
    "spatial_attention": (12.0, 6.0),
    "matching": (10.0, 6.0),
}
MAX_SIMILARITY_ACTIONS = 12  # the paper's figure 5 shows 10
MAX_TRACKED_ACTIONS = 6  # lines in the temporal-attention plot
MAX_SPATIAL_ACTIONS = 3  # rows of the spatial-attention grid
MAX_SPATIAL_FRAMES = 8  # columns of the spatial-attention grid
MAX_ACTIVITY_STEPS = 8  # steps drawn per activity in the matching figure
MAX_CONFUSION_CLASSES = 30
FALLBACK_TOP_K = 6  # steps per activity when step presence is not annotated

# Blue - white - purple, as in the paper's figure 5.
SIMILARITY_COLOURS = ["#232c74", "#3f86d4", "#8fcdf0", "#f2eff7", "#e6bddb", "#c18bc4", "#a063a9"]
MATCHING_COLOURS = {"a_before": "#a25ca8", "a_after": "#dfa3d2", "b_before": "#2a2f7a", "b_after": "#76bde9"}


@dataclass
class Figure:
    """One figure of the report: its file (None when skipped), title, how to read it, notes."""

    key: str
    title: str
    file: str | None = None
    caption: str = ""
    notes: list[str] = field(default_factory=list)


# ============================================================================================ entry point

def build_report(run: Path, features: str | list | None = None, out: Path | None = None, video: str | None = None,
                 actions: list[str] | None = None, split: str = "test", device: str = "auto") -> Path:
    """Render the report of run folder `run` into `out` (default RUN/report/); returns the report.html path.

    features: the feature files to score (default: those recorded in RUN/config.json).
    video: the video of the attention and matching figures (default: the first video of `split`).
    actions: atomic-action names for the similarity heatmap and the attention plots (default: chosen).
    """
    run = Path(run)
    if not run.is_dir():
        raise CmdclError(f"{run}: run folder does not exist.", fix="pass the --out folder of `cmdcl train-head`.")
    out = Path(out) if out is not None else run / "report"
    out.mkdir(parents=True, exist_ok=True)
    config = _read_json(run / "config.json")
    history = read_history(run / "metrics.jsonl")
    checkpoint = _checkpoint_of(run)
    model, cfg, state = load_model(checkpoint, device)
    fs = FeatureSet(_feature_spec(run, config, features))
    check_compatible(state, fs, checkpoint)
    data = FeatureData(fs, [split], frames=state.frames, use_patches=cfg.use_patches,
                       mode=cfg.data_mode, log=lambda message: None)
    multilabel = state.multilabel
    dev = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))

    scores = score_split(model, data, dev)
    metrics = compute_metrics(scores, data, np.arange(len(data)), multilabel, detailed=True)
    class_names = list(fs.text.class_names)
    class_text, clip_step_text = text_tensors(fs.text)
    step_names = list(fs.text.step_names) or class_names  # no step vocabulary: the classes are the actions
    activities, annotated = activity_steps(fs, class_text.numpy(), clip_step_text.numpy())
    row = pick_video(data, video, split)
    view = video_view(model, data, row, dev)
    chosen = resolve_actions(actions, step_names)

    figures = [plot_curves(history, out / "curves.png")]
    if multilabel:
        figures.append(plot_per_class_ap(metrics, out / "per_class_ap.png"))
    else:
        figures.append(plot_confusion(np.asarray(metrics["confusion_matrix"]), class_names, out / "confusion.png"))

    method = state.method
    no_outputs = f"the {method} head does not output {{}} (only CMDCL does)"
    if scores.get("debiased_text") is None:
        figures.append(Figure("text_similarity", "Atomic-action text similarity",
                              notes=[f"Skipped: {no_outputs.format('debiased texts')}."]))
        similarity_actions, groups = chosen or [], []
    else:
        similarity_actions, groups = (chosen, []) if chosen else default_similarity_actions(
            metrics, multilabel, activities, len(step_names))
        figures.append(plot_text_similarity(clip_step_text.numpy(), scores["debiased_text"], similarity_actions, groups,
                                            step_names, cfg.use_tci, out / "text_similarity.png"))

    tracked = chosen[:MAX_TRACKED_ACTIONS] if chosen else default_tracked_actions(view)
    if view.get("step_attention") is None:
        figures.append(Figure("temporal_attention", "Temporal attention of atomic actions",
                              notes=[f"Skipped: {no_outputs.format('step attention')}."]))
        figures.append(Figure("spatial_attention", "Spatial attention of atomic actions",
                              notes=[f"Skipped: {no_outputs.format('spatial attention')}."]))
    else:
        figures.append(plot_temporal_attention(view, tracked, step_names, out / "temporal_attention.png"))
        figures.append(spatial_attention_figure(view, tracked, step_names, fs, cfg.use_patches,
                                                out / "spatial_attention.png"))

    matching: dict[str, Any] = {}
    if view.get("step_logits") is None or method == "zeroshot":
        why = ("its step scores are the CLIP similarities themselves (no intervention)" if method == "zeroshot"
               else no_outputs.format("atomic-action scores"))
        figures.append(Figure("matching", "Cross-modal matching probabilities", notes=[f"Skipped: {why}."]))
    else:
        matching = matching_probabilities(view, clip_step_text.numpy(), activities, class_names, multilabel)
        figures.append(plot_matching(matching, step_names, annotated, out / "matching.png"))

    summary = {
        "run": str(run), "checkpoint": str(checkpoint), "epoch": state.epoch, "method": method,
        "features": [str(p) for p in fs.paths], "split": split, "video": view["video_id"],
        "similarity_actions": [step_names[i] for i in similarity_actions],
        "tracked_actions": [step_names[i] for i in tracked] if view.get("step_attention") is not None else [],
        "steps_annotated": annotated,
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "matching": _matching_summary(matching, step_names, class_names),
        "figures": {f.key: f.file for f in figures}, "notes": {f.key: f.notes for f in figures if f.notes},
        "dpi": DPI, "code_version": code_version(),
    }
    write_json(out / "report.json", summary)
    page = out / "report.html"
    page.write_text(render_html(summary, config, figures, class_names))
    return page


# ============================================================================================ inputs

def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CmdclError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}).") from None


def read_history(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of metrics.jsonl ([] when the file is missing); a torn last line is ignored."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise CmdclError(f"{path}: line {number} is not JSON.") from None
    return records


def _checkpoint_of(run: Path) -> Path:
    for name in ("best.pt", "last.pt"):
        if (run / name).exists():
            return run / name
    raise CheckpointError(f"{run}: no best.pt or last.pt in the run folder.",
                          fix="pass the folder `cmdcl train-head --out` wrote.")


def _feature_spec(run: Path, config: dict[str, Any], features: str | Sequence[str] | None) -> list[str] | str:
    """The given features, else the files recorded in config.json (relative paths: as given, else from the run)."""
    if features:
        return [str(f) for f in features] if isinstance(features, (list, tuple)) else str(features)
    recorded = config.get("features") or _read_json(run / "provenance.json").get("files") or []
    if not recorded:
        raise CmdclError(f"{run}: config.json records no feature files.", fix="pass --features.")
    resolved = []
    for name in recorded:
        candidates = [Path(name)] + ([] if Path(name).is_absolute() else [run / name, run.parent / name])
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise CmdclError(f"{run}/config.json: recorded feature file {name} does not exist (moved?).",
                             fix="pass --features.")
        resolved.append(str(found))
    return resolved


# ============================================================================================ model outputs

@torch.no_grad()
def score_split(model: torch.nn.Module, data: FeatureData, device: torch.device,
                batch_size: int = 256) -> dict[str, np.ndarray | None]:
    """Logits, step logits and the debiased texts T' (mean over the split's videos) of every video."""
    model.eval()
    logits, step_logits, text_sum = [], [], None
    for start in range(0, len(data), batch_size):
        rows = np.arange(start, min(start + batch_size, len(data)))
        batch = data.batch(rows, device)
        out = model(batch["features"], batch["frame_mask"], batch.get("patches"))
        logits.append(out["logits"].float().cpu())
        if "step_logits" in out:
            step_logits.append(out["step_logits"].float().cpu())
        if "debiased_text" in out:  # a batch mean when T' depends on the video: weight by batch size
            part = out["debiased_text"].float().cpu() * len(rows)
            text_sum = part if text_sum is None else text_sum + part
    return {"logits": torch.cat(logits).numpy(),
            "step_logits": torch.cat(step_logits).numpy() if step_logits else None,
            "debiased_text": (text_sum / len(data)).numpy() if text_sum is not None else None}


def pick_video(data: FeatureData, video: str | None, split: str) -> int:
    if video is None:
        return 0
    hits = np.flatnonzero(data.video_id == video)
    if not len(hits):
        raise CmdclError(f"--video {video}: no such video in split {split!r} (first ids: "
                         f"{', '.join(map(str, data.video_id[:3]))}).", fix="pass an id of that split, or --split.")
    return int(hits[0])


@torch.no_grad()
def video_view(model: torch.nn.Module, data: FeatureData, row: int, device: torch.device) -> dict[str, Any]:
    """Everything the per-video figures draw: the head's outputs for this one video, its stored frame times
    and indices (of the frames the head saw), labels, and the mean of its valid CLIP frame features."""
    batch = data.batch(np.array([row]), device)
    out = model(batch["features"], batch["frame_mask"], batch.get("patches"))
    fs = data.feature_set
    position = int(data.positions[row])
    stored_mask = fs.index["frame_mask"][position:position + 1]
    timestamps = fs.index["timestamps_ms"][position]
    frame_index = fs.index["frame_index"][position]
    if data.frames < fs.dims["F"]:  # the head saw a subsample of the stored frames
        take, _ = frame_subsample_index(stored_mask, data.frames)
        timestamps, frame_index = timestamps[take[0]], frame_index[take[0]]
    mask = batch["frame_mask"][0].cpu().numpy()
    features = F.normalize(batch["features"][0].float().cpu(), dim=-1).numpy()
    mean_frame = features[mask].mean(0) if mask.any() else features.mean(0)

    def numpy(name: str) -> np.ndarray | None:
        return out[name][0].float().cpu().numpy() if name in out else None

    return {
        "row": row, "video_id": str(data.video_id[row]), "path": str(fs.index["path"][position]),
        "label": int(data.label[row]), "labels": data.labels[row].cpu().numpy(), "steps": data.steps[row].cpu().numpy(),
        "frame_mask": mask, "timestamps_s": np.asarray(timestamps, np.float64) / 1000.0,
        "frame_index": np.asarray(frame_index, np.int64), "mean_frame": mean_frame / np.linalg.norm(mean_frame),
        "logits": numpy("logits"), "step_logits": numpy("step_logits"), "step_attention": numpy("step_attention"),
        "spatial_attention": numpy("spatial_attention"),
    }


# ============================================================================================ selections

def activity_steps(fs: FeatureSet, class_text: np.ndarray, step_text: np.ndarray,
                   top_k: int = FALLBACK_TOP_K) -> tuple[list[np.ndarray], bool]:
    """Per class, the atomic actions of that activity, most frequent first; and whether steps are annotated.

    Annotated: the steps present (VideoRecord.steps) in the class's training videos. Otherwise (or for a
    class without annotated training videos): the top-k steps by CLIP similarity of class and step texts.
    """
    index = fs.index
    train = index["split"] == "train"
    if not train.any():
        train = np.ones(len(fs), bool)
    steps = index["steps"][train].astype(np.float64)
    labels = index["labels"][train] > 0
    annotated = bool(steps.any()) and steps.shape[1] == step_text.shape[0]
    similarity = _unit(class_text) @ _unit(step_text).T
    out = []
    for c in range(class_text.shape[0]):
        members = labels[:, c]
        frequency = steps[members].mean(0) if annotated and members.any() else None
        if frequency is not None and frequency.any():
            present = np.flatnonzero(frequency > 0)
            out.append(present[np.argsort(-frequency[present], kind="stable")])
        else:
            out.append(np.argsort(-similarity[c], kind="stable")[:top_k])
    return out, annotated


def default_similarity_actions(metrics: dict[str, Any], multilabel: bool, activities: list[np.ndarray],
                               num_steps: int) -> tuple[list[int], list[tuple[int, int, int]]]:
    """Steps of the most confused activities (as in the paper: scrambled egg vs pancake), up to 12.

    Classes are taken in order of confusion (single-label: pairs by confusion count; multi-label: lowest
    AP first) and their steps appended until 12. Returns (steps, groups (class, first, last) per activity).
    """
    if multilabel:
        ap = metrics.get("per_class_AP", {})
        values = np.array([np.inf if v is None else v for v in ap.values()])
        order = list(np.argsort(values, kind="stable")[:len(values)])
    else:
        confusion = np.asarray(metrics["confusion_matrix"], np.int64)
        mutual = confusion + confusion.T
        np.fill_diagonal(mutual, 0)
        upper = np.triu_indices_from(mutual, k=1)
        pairs = sorted(zip(upper[0], upper[1]), key=lambda ab: -mutual[ab])
        order = []
        for a, b in pairs:
            if mutual[a, b] == 0:
                break
            order += [c for c in (a, b) if c not in order]
    chosen: list[int] = []
    groups: list[tuple[int, int, int]] = []
    for c in order:
        new = [int(s) for s in activities[c] if int(s) not in chosen][:MAX_SIMILARITY_ACTIONS - len(chosen)]
        if new:
            groups.append((int(c), len(chosen), len(chosen) + len(new) - 1))
            chosen += new
        if len(chosen) >= MAX_SIMILARITY_ACTIONS:
            break
    if len(chosen) < 2:  # nothing confused (or no steps): the first actions of the vocabulary
        return list(range(min(MAX_SIMILARITY_ACTIONS, num_steps))), []
    return chosen, groups


def default_tracked_actions(view: dict[str, Any]) -> list[int]:
    """The video's annotated steps (else all), highest step score first, at most 6."""
    scores = view.get("step_logits")
    if scores is None:
        return []
    present = np.flatnonzero(view["steps"] > 0) if len(view["steps"]) == len(scores) else np.array([], np.int64)
    candidates = present if len(present) else np.arange(len(scores))
    return [int(s) for s in candidates[np.argsort(-scores[candidates], kind="stable")][:MAX_TRACKED_ACTIONS]]


def resolve_actions(actions: Sequence[str] | None, step_names: list[str]) -> list[int]:
    """Indices of the named atomic actions (exact match, else case-insensitive), in the given order."""
    if not actions:
        return []
    lower = {n.lower(): i for i, n in reversed(list(enumerate(step_names)))}
    exact = {n: i for i, n in reversed(list(enumerate(step_names)))}
    chosen = []
    for name in (a.strip() for a in actions):
        if not name:
            continue
        index = exact.get(name, lower.get(name.lower()))
        if index is None:
            raise CmdclError(f"--actions: {name!r} is not an atomic action of this run (e.g. "
                             f"{', '.join(repr(n) for n in step_names[:3])}).",
                             fix="use names from the features' step vocabulary, separated by commas.")
        if index not in chosen:
            chosen.append(index)
    return chosen


def matching_probabilities(view: dict[str, Any], clip_step_text: np.ndarray, activities: list[np.ndarray],
                           class_names: list[str], multilabel: bool) -> dict[str, Any]:
    """Figure 7c's numbers for one video: its true activity A, the most confusable other activity B, and
    softmax probabilities over the union of their steps, before (CLIP: cos(mean frame, step text) / tau,
    tau = 1/100 as CLIP's logit scale) and after (the head's step logits)."""
    logits = view["logits"]
    positives = np.flatnonzero(view["labels"] > 0)
    if not multilabel and view["label"] >= 0:
        a, kind = view["label"], "true"
    elif len(positives):
        a, kind = int(positives[np.argmax(logits[positives])]), "true"
    else:
        a, kind = int(np.argmax(logits)), "predicted"
    others = np.array([c for c in range(len(logits)) if c != a and c not in positives] or
                      [c for c in range(len(logits)) if c != a], np.int64)
    b = int(others[np.argmax(logits[others])]) if len(others) else a
    steps_a = [int(s) for s in activities[a][:MAX_ACTIVITY_STEPS]]
    steps_b = [int(s) for s in activities[b] if int(s) not in steps_a][:max(0, 2 * MAX_ACTIVITY_STEPS - len(steps_a))]
    rows = np.array(steps_a + steps_b, np.int64)
    in_b = set(int(s) for s in activities[b])
    before = CLIP_LOGIT_SCALE * (clip_step_text[rows] / np.linalg.norm(clip_step_text[rows], axis=1, keepdims=True)
                                 ) @ view["mean_frame"]
    after = view["step_logits"][rows]
    return {"class_a": a, "class_b": b, "kind_a": kind, "rows": rows,
            "member_a": np.isin(rows, steps_a), "member_b": np.array([int(s) in in_b for s in rows]),
            "before": _softmax(before), "after": _softmax(after), "video_id": view["video_id"],
            "predicted": int(np.argmax(logits)), "class_names": class_names}


def _matching_summary(matching: dict[str, Any], step_names: list[str], class_names: list[str]) -> dict[str, Any]:
    if not matching:
        return {}
    rows = [step_names[i] for i in matching["rows"]]
    return {"activity_a": class_names[matching["class_a"]], "activity_b": class_names[matching["class_b"]],
            "activity_a_is": matching["kind_a"], "steps": rows,
            "in_a": matching["member_a"].tolist(), "in_b": matching["member_b"].tolist(),
            "before": [round(float(p), 4) for p in matching["before"]],
            "after": [round(float(p), 4) for p in matching["after"]]}


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# ============================================================================================ figures

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


def plot_temporal_attention(view: dict[str, Any], actions: list[int], step_names: list[str], path: Path) -> Figure:
    """Attention of each tracked atomic action over the video's valid frames, at their stored times."""
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
    for s in actions:
        ax.plot(times, attention[s][mask], "-o", markersize=3, label=step_names[s])
    if not actions:
        _no_data(ax, "no atomic action to track")
    else:
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("attention")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(f"Temporal attention, video {view['video_id']}")
    figure.file = _save(fig, path)
    return figure


def spatial_attention_figure(view: dict[str, Any], actions: list[int], step_names: list[str], fs: FeatureSet,
                             used_patches: bool, path: Path) -> Figure:
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
    frames, reason = decode_frames(view["path"], view["frame_index"][columns], fs)
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


def decode_frames(path: str, frame_index: np.ndarray, fs: FeatureSet) -> tuple[np.ndarray | None, str]:
    """The sampled frames as the encoder saw them (centre crop or padding to a square), or (None, reason)."""
    if not path or not Path(path).exists():
        return None, f"video file {path or '(no path)'} is not readable here"
    preprocess = fs.attrs.get("preprocess") or "{}"
    try:
        mode = (json.loads(preprocess) if isinstance(preprocess, str) else dict(preprocess)).get("resize_mode")
    except (json.JSONDecodeError, TypeError, ValueError):
        mode = None
    from cmdcl.extract.decoders import open_video

    def small(height: int, width: int) -> tuple[int, int]:  # short side 160: enough for a thumbnail
        scale = 160 / max(1, min(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))

    try:
        with open_video(path, size=small) as decoder:
            frames, _ = decoder.read(np.asarray(frame_index, np.int64))
    except Exception as exc:  # any decoder failure only costs the thumbnails
        return None, f"could not decode {path}: {' '.join(str(exc).split())[:120]}"
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


# ============================================================================================ page

def render_html(summary: dict[str, Any], config: dict[str, Any], figures: list[Figure],
                class_names: list[str]) -> str:
    """One static page: run facts, headline metrics, then each figure (relative <img>) with how to read it."""
    e = html.escape
    metrics = summary["metrics"]
    headline = "".join(f"<tr><th>{e(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics.items())
    cfg = config.get("config", {})
    facts = {
        "method": summary["method"], "checkpoint": f"{summary['checkpoint']} (epoch {summary['epoch']})",
        "features": ", ".join(summary["features"]), "split": summary["split"], "video": summary["video"],
        "classes": len(class_names), "parameters": config.get("parameters", "?"),
        "options": ", ".join(f"{k}={cfg[k]}" for k in ("use_tci", "use_vci", "sta_layers", "use_patches",
                                                         "bias_estimator", "bias_source", "frontdoor_cross")
                             if k in cfg and summary["method"] == "cmdcl") or "-",
        "code version": summary["code_version"],
    }
    fact_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts.items())
    sections = []
    for figure in figures:
        parts = [f'<section id="{e(figure.key)}"><h2>{e(figure.title)}</h2>']
        if figure.file:
            parts.append(f'<img src="{e(figure.file)}" alt="{e(figure.title)}">')
        if figure.caption and figure.file:
            parts.append(f"<p>{e(figure.caption)}</p>")
        parts += [f'<p class="note">{e(note)}</p>' for note in figure.notes]
        parts.append("</section>")
        sections.append("\n".join(parts))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cmdcl report: {e(Path(summary['run']).name)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1450px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ text-align: left; padding: 2px 12px 2px 0; vertical-align: top; font-size: 14px; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
.note {{ color: #8a4b00; }}
section {{ margin-top: 2em; }}
</style></head><body>
<h1>cmdcl report: {e(str(summary['run']))}</h1>
<table>{fact_rows}</table>
<h2>Metrics on split {e(summary['split'])}</h2>
<table>{headline}</table>
{chr(10).join(sections)}
<p>Numbers behind the figures: <a href="report.json">report.json</a>.</p>
</body></html>
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return html.escape(str(value))
