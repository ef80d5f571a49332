"""`build_report(RUN)`: score a trained run on one split and write its figures, report.json and report.html.

    run folder (config.json, metrics.jsonl, best.pt) + the features it was trained on
      -> score the report's split(s) with the checkpoint's head (evaluation helpers of head/metrics/evaluate.py):
         the first split for every figure, the others too for calibration and spatial grounding
      -> PNG figures (matplotlib Agg, fixed sizes) + report.json (the numbers drawn) + report.html
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cmdcl.core.atomic import write_text_atomic
from cmdcl.core.errors import CheckpointError, CmdclError
from cmdcl.core.json_files import write_json
from cmdcl.core.relocate import find_file
from cmdcl.core.store import FeatureSet
from cmdcl.core.version import code_version
from ..model.checkpoint import check_compatible
from ..model.config import HeadConfig
from ..data import FeatureData
from ..metrics.evaluate import load_model
from ..model.factory import text_tensors
from ..training.run_files import METRICS_FILE, read_metrics as read_history  # the one reader (resume uses it)
from ..metrics.table import SplitScores
from .figures import (DPI, Figure, plot_confusion, plot_curves, plot_per_class_ap,
                      plot_text_similarity)
from .html import render_html
from .scoring import (MAX_TRACKED_ACTIONS, _matching_summary, activity_steps, default_similarity_actions,
                      default_tracked_actions, matching_probabilities, pick_video, resolve_actions,
                      score_split, video_view)
from .video_figures import (FrameReader, plot_matching, plot_temporal_attention,
                            spatial_attention_figure)

from .calibration_figure import reliability_figure
from .comparison import comparison_figure, find_comparison
from .spatial_figure import figure_for_run as spatial_grounding_for_run


@dataclass
class ScoredRun:
    """A run's head scored on one split, with the texts and activity steps the figures draw."""

    checkpoint: Path
    model: torch.nn.Module
    cfg: HeadConfig
    state: dict[str, Any]
    fs: FeatureSet
    data: FeatureData
    device: torch.device
    multilabel: bool
    method: str
    scores: dict[str, np.ndarray | None]
    metrics: dict[str, Any]
    class_names: list[str]
    clip_step_text: np.ndarray
    step_names: list[str]
    activities: list[np.ndarray]
    annotated: bool

    def no_outputs(self, what: str) -> str:
        return f"the {self.method} head does not output {what} (only CMDCL does)"


# ============================================================================================ entry point

def build_report(run: Path, features: str | list | None = None, out: Path | None = None, video: str | None = None,
                 actions: list[str] | None = None, split: str | Sequence[str] = "test", device: str = "auto",
                 read_frames: FrameReader | None = None, compare: Path | None = None) -> Path:
    """Render the report of run folder `run` into `out` (default RUN/report/); returns the report.html path.

    features: the feature files to score (default: those recorded in RUN/config.json).
    split: one split, or several (e.g. ["test", "test_ood"]): the first is the report's split (metrics, every
    per-video figure); the reliability diagram and the spatial-grounding figure cover each of them.
    video: the video of the attention and matching figures (default: the first video of the first split).
    actions: atomic-action names for the similarity heatmap and the attention plots (default: chosen).
    read_frames: reads video frames for the spatial-attention overlay (None: the patch grid is drawn alone).
    compare: a `cmdcl compare` compare.json (or its folder) to show; default: RUN/../compare-<split>/ when it
    compares this run (head/report/comparison.py).
    """
    run = Path(run)
    if not run.is_dir():
        raise CmdclError(f"{run}: run folder does not exist.", fix="pass the --out folder of `cmdcl train-head`.")
    out = Path(out) if out is not None else run / "report"
    splits = list(dict.fromkeys([split] if isinstance(split, str) else split)) or ["test"]
    split = splits[0]
    out.mkdir(parents=True, exist_ok=True)
    config = _read_json(run / "config.json")
    history = read_history(run / METRICS_FILE, note=lambda message: print(message, file=sys.stderr))
    scored = score_run(run, config, features, split, device)
    by_split = [(split, scored.data, scored.scores["logits"])] + [score_other_split(scored, s) for s in splits[1:]]
    view = video_view(scored.model, scored.data, pick_video(scored.data, video, split), scored.device)
    chosen = resolve_actions(actions, scored.step_names)

    figures = [plot_curves(history, out / "curves.png"), _class_figure(scored, out)]
    similarity_figure, similarity_actions = _similarity_figure(scored, chosen, out)
    figures.append(similarity_figure)
    tracked = _tracked(chosen, view)
    figures += _attention_figures(scored, view, tracked, out, read_frames)
    grounding_figure, grounding_panels = spatial_grounding_for_run(scored, [(s, d) for s, d, _ in by_split], out,
                                                                   read_frames)
    figures.append(grounding_figure)
    matching_figure, matching = _matching_figure(scored, view, out)
    figures.append(matching_figure)
    calibration_figure, calibration = _reliability(scored, by_split, out)
    figures.append(calibration_figure)
    compare_figure, compared = comparison_figure(find_comparison(run, split, compare), out)
    figures += [compare_figure] if compare_figure is not None else []

    summary = _summary(run, scored, split, view, similarity_actions, tracked, matching, figures)
    summary.update(comparison=compared, splits=splits, calibration=calibration,
                   spatial_grounding=grounding_panels)
    write_json(out / "report.json", summary)
    page = out / "report.html"
    write_text_atomic(page, render_html(summary, config, figures, scored.class_names))
    return page


def score_run(run: Path, config: dict[str, Any], features: str | Sequence[str] | None, split: str,
              device: str) -> ScoredRun:
    """Load the run's checkpoint and features, score `split`, and gather the texts the figures draw."""
    checkpoint = _checkpoint_of(run)
    model, cfg, state = load_model(checkpoint, device)
    fs = FeatureSet(_feature_spec(run, config, features))
    check_compatible(state, fs, checkpoint)
    data = FeatureData(fs, [split], frames=state.frames, use_patches=cfg.use_patches,
                       mode=cfg.data_mode, log=lambda message: None)
    multilabel = state.multilabel
    dev = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))

    # The metric table's entries that the report's outputs allow (the leakage probe needs "representation",
    # which the report does not collect: `cmdcl evaluate` scores it).
    table = SplitScores(data, np.arange(len(data)), multilabel)
    scores = score_split(model, data, dev, on_batch=table.on_batch)
    metrics = table.metrics(scores)
    class_names = list(fs.text.class_names)
    class_text, clip_step_text = text_tensors(fs.text)
    step_names = list(fs.text.step_names) or class_names  # no step vocabulary: the classes are the actions
    activities, annotated = activity_steps(fs, class_text.numpy(), clip_step_text.numpy())
    return ScoredRun(checkpoint, model, cfg, state, fs, data, dev, multilabel, state.method,
                     scores, metrics, class_names, clip_step_text.numpy(), step_names, activities, annotated)


def score_other_split(scored: ScoredRun, split: str) -> tuple[str, FeatureData, np.ndarray]:
    """(split, its data, the head's logits) for a split beyond the report's first."""
    data = FeatureData(scored.fs, [split], frames=scored.state.frames, use_patches=scored.cfg.use_patches,
                       mode=scored.cfg.data_mode, log=lambda message: None)
    return split, data, score_split(scored.model, data, scored.device)["logits"]


# ============================================================================================ figures

def _reliability(scored: ScoredRun, by_split: list[tuple[str, FeatureData, np.ndarray]],
                 out: Path) -> tuple[Figure, dict[str, Any]]:
    labelled = [(s, logits, data.label.cpu().numpy(), data.labels.cpu().numpy()) for s, data, logits in by_split]
    return reliability_figure(labelled, scored.multilabel, out / "reliability.png")


def _class_figure(scored: ScoredRun, out: Path) -> Figure:
    if scored.multilabel:
        return plot_per_class_ap(scored.metrics, out / "per_class_ap.png")
    return plot_confusion(np.asarray(scored.metrics["confusion_matrix"]), scored.class_names, out / "confusion.png")


def _similarity_figure(scored: ScoredRun, chosen: list[int], out: Path) -> tuple[Figure, list[int]]:
    if scored.scores.get("debiased_text") is None:
        return Figure("text_similarity", "Atomic-action text similarity",
                      notes=[f"Skipped: {scored.no_outputs('debiased texts')}."]), chosen or []
    actions, groups = (chosen, []) if chosen else default_similarity_actions(
        scored.metrics, scored.multilabel, scored.activities, len(scored.step_names))
    figure = plot_text_similarity(scored.clip_step_text, scored.scores["debiased_text"], actions, groups,
                                  scored.step_names, scored.cfg.use_tci, out / "text_similarity.png")
    return figure, actions


def _tracked(chosen: list[int], view: dict[str, Any]) -> list[int]:
    return chosen[:MAX_TRACKED_ACTIONS] if chosen else default_tracked_actions(view)


def _attention_figures(scored: ScoredRun, view: dict[str, Any], tracked: list[int], out: Path,
                       read_frames: FrameReader | None) -> list[Figure]:
    if view.get("step_attention") is None:
        return [Figure("temporal_attention", "Temporal attention of atomic actions",
                       notes=[f"Skipped: {scored.no_outputs('step attention')}."]),
                Figure("spatial_attention", "Spatial attention of atomic actions",
                       notes=[f"Skipped: {scored.no_outputs('spatial attention')}."])]
    return [plot_temporal_attention(view, tracked, scored.step_names, out / "temporal_attention.png"),
            spatial_attention_figure(view, tracked, scored.step_names, scored.fs, scored.cfg.use_patches,
                                     out / "spatial_attention.png", read_frames)]


def _matching_figure(scored: ScoredRun, view: dict[str, Any], out: Path) -> tuple[Figure, dict[str, Any]]:
    if view.get("step_logits") is None or scored.method == "zeroshot":
        why = ("its step scores are the CLIP similarities themselves (no intervention)" if scored.method == "zeroshot"
               else scored.no_outputs("atomic-action scores"))
        return Figure("matching", "Cross-modal matching probabilities", notes=[f"Skipped: {why}."]), {}
    matching = matching_probabilities(view, scored.clip_step_text, scored.activities, scored.class_names,
                                      scored.multilabel)
    return plot_matching(matching, scored.step_names, scored.annotated, out / "matching.png"), matching


def _summary(run: Path, scored: ScoredRun, split: str, view: dict[str, Any], similarity_actions: list[int],
             tracked: list[int], matching: dict[str, Any], figures: list[Figure]) -> dict[str, Any]:
    """report.json: the run, the choices made and the numbers drawn."""
    names = scored.step_names
    return {
        "run": str(run), "checkpoint": str(scored.checkpoint), "epoch": scored.state.epoch,
        "method": scored.method, "features": [str(p) for p in scored.fs.paths], "split": split,
        "video": view["video_id"], "similarity_actions": [names[i] for i in similarity_actions],
        "tracked_actions": [names[i] for i in tracked] if view.get("step_attention") is not None else [],
        "steps_annotated": scored.annotated,
        "metrics": {k: v for k, v in scored.metrics.items() if isinstance(v, (int, float))},
        "matching": _matching_summary(matching, names, scored.class_names),
        "figures": {f.key: f.file for f in figures}, "notes": {f.key: f.notes for f in figures if f.notes},
        "dpi": DPI, "code_version": code_version(),
    }


# ============================================================================================ inputs

def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CmdclError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}).") from None


def _checkpoint_of(run: Path) -> Path:
    for name in ("best.pt", "last.pt"):
        if (run / name).exists():
            return run / name
    raise CheckpointError(f"{run}: no best.pt or last.pt in the run folder.",
                          fix="pass the folder `cmdcl train-head --out` wrote.")


def _feature_spec(run: Path, config: dict[str, Any], features: str | Sequence[str] | None) -> list[str] | str:
    """The given features, else the files recorded in config.json, where they are now (core/relocate.py)."""
    if features:
        return [str(f) for f in features] if isinstance(features, (list, tuple)) else str(features)
    recorded = config.get("features") or _read_json(run / "provenance.json").get("files") or []
    if not recorded:
        raise CmdclError(f"{run}: config.json records no feature files.", fix="pass --features.")
    resolved = []
    for name in recorded:
        # As recorded, else beside the run (a moved or copied run folder: see core/relocate.py).
        found = find_file(name, [run], min_parts=2)
        if found is None:
            raise CmdclError(f"{run}/config.json: recorded feature file {name} does not exist (moved?).",
                             fix="pass --features.")
        resolved.append(str(found))
    return resolved


