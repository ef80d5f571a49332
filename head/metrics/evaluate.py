"""Evaluating a head on cached features: every entry of the metric table (head/metrics/registry.py, run over a
split by head/metrics/table.py): top-1/top-5 (single-label), mAP (multi-label), step mAP, calibration (ECE
and NLL, head/metrics/calibration.py), step grounding (head/metrics/grounding.py) where the features store
step segments and the head has step attention, spatial grounding (head/metrics/spatial.py) where they also
store object boxes and the head has patch attention, frame-level step top-1 and step leakage
(head/metrics/frame_steps.py) where the head has per-frame step logits, and context leakage
(head/metrics/leakage.py) where the features store context-factor labels or context vocabularies (zero-shot
pseudo labels, head/metrics/pseudo_labels.py).

`evaluate(checkpoint, features, split)` rebuilds the head from a checkpoint alone, checks that the
features match it, and writes metrics.json. The same metric functions score validation during training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from cmdcl.core.device import resolve_device
from cmdcl.core.errors import CheckpointError, CmdclError, shorten
from cmdcl.core.json_files import write_json
from cmdcl.core.provenance import identity
from cmdcl.core.store import FeatureSet, TextBank
from cmdcl.core.version import code_version
from ..model.checkpoint import Checkpoint, check_compatible, load_checkpoint
from ..model.config import HeadConfig
from ..data import FeatureData
from .predictions import Predictions, predictions_path, save_predictions
from .table import SplitScores

LEAKAGE_PROBES = "leakage_probes"  # SplitScores.shared key of the representation probes (entries.leakage)


# ---------------------------------------------------------------------------------------------- outputs

@torch.no_grad()
def collect_outputs(model: nn.Module, data: FeatureData, rows: np.ndarray, device: torch.device,
                    batch_size: int = 256, keys: Sequence[str] = ("logits", "step_logits"),
                    on_batch: Callable[[np.ndarray, dict[str, torch.Tensor]], None] | None = None,
                    ) -> dict[str, np.ndarray | None]:
    """The head's outputs `keys` for `rows` (eval mode, row order) as float32 numpy; None for keys it lacks.
    `on_batch(batch rows, all outputs)` sees every batch's outputs (e.g. attention maps not kept here)."""
    was_training = model.training
    model.eval()
    collected: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for start in range(0, len(rows), batch_size):
        batch_rows = rows[start:start + batch_size]
        batch = data.batch(batch_rows, device)
        out = model(batch["features"], batch["frame_mask"], batch.get("patches"))
        if on_batch is not None:
            on_batch(batch_rows, out)
        for key in keys:
            if key in out:
                collected[key].append(out[key].float().cpu())
    model.train(was_training)
    return {k: torch.cat(v).numpy() if v else None for k, v in collected.items()}


# ---------------------------------------------------------------------------------------------- metrics

def topk_accuracy(logits: np.ndarray, label: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((top == label[:, None]).any(axis=1).mean()) if len(label) else float("nan")


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Macro average precision over the columns with at least one positive; (mAP, per-column AP or NaN)."""
    from sklearn.metrics import average_precision_score

    per_column = np.full(scores.shape[1], np.nan)
    for j in np.flatnonzero(targets.sum(axis=0) > 0):
        per_column[j] = average_precision_score(targets[:, j], scores[:, j])
    valid = per_column[~np.isnan(per_column)]
    return (float(valid.mean()) if len(valid) else float("nan")), per_column


def single_label_metrics(logits: np.ndarray, label: np.ndarray, class_names: Sequence[str] | None = None,
                         detailed: bool = True) -> dict[str, Any]:
    """top1, top5, mean per-class accuracy; with `detailed`, per-class accuracy and the confusion matrix."""
    keep = label >= 0  # unlabelled videos carry -1
    logits, label = logits[keep], label[keep]
    num_classes = logits.shape[1]
    pred = logits.argmax(axis=1) if len(label) else np.zeros(0, np.int64)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (label, pred), 1)
    support = confusion.sum(axis=1)
    per_class = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
    metrics: dict[str, Any] = {
        "top1": topk_accuracy(logits, label, 1),
        "top5": topk_accuracy(logits, label, 5),
        "mean_class_accuracy": float(np.nanmean(per_class)) if (support > 0).any() else float("nan"),
        "num_videos": int(len(label)),
    }
    if detailed:
        names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        metrics["per_class_accuracy"] = {n: (None if np.isnan(a) else float(a)) for n, a in zip(names, per_class)}
        metrics["confusion_matrix"] = confusion.tolist()
    return metrics


def multi_label_metrics(logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None,
                        detailed: bool = True) -> dict[str, Any]:
    value, per_class = mean_average_precision(logits, labels)
    metrics: dict[str, Any] = {"mAP": value, "num_videos": int(len(labels))}
    if detailed:
        names = list(class_names) if class_names is not None else [str(i) for i in range(logits.shape[1])]
        metrics["per_class_AP"] = {n: (None if np.isnan(a) else float(a)) for n, a in zip(names, per_class)}
    return metrics


def compute_metrics(outputs: dict[str, np.ndarray | None], data: FeatureData, rows: np.ndarray, multilabel: bool,
                    detailed: bool = True) -> dict[str, Any]:
    """The metric table's entries (head/metrics/registry.py) that these outputs allow (no batch-wise ones):
    with `detailed` (the report) every such entry, else (validation during training) the `validation` ones in
    their cheap form (top-1/top-5/mean class accuracy or mAP, step mAP)."""
    return SplitScores(data, rows, multilabel, detailed, stream=False).metrics(outputs)


def main_metric_name(multilabel: bool) -> str:
    return "mAP" if multilabel else "top1"


# ---------------------------------------------------------------------------------------------- checkpoint

def model_from_checkpoint(state: Checkpoint) -> tuple[nn.Module, HeadConfig]:
    """Rebuild the head from a loaded checkpoint (no features needed) and load its weights."""
    from ..model.factory import build_model

    args = state.model_args
    text = TextBank(class_names=list(args.class_names), class_embeddings=args.class_text.numpy(),
                    step_names=list(args.step_names), step_embeddings=args.step_text.numpy(), templates=[])
    model = build_model(state.config, text, dict(args.dims), args.multilabel)
    model.load_state_dict(state.model)
    return model, state.config


def load_model(checkpoint: str | Path, device: str = "auto") -> tuple[nn.Module, HeadConfig, Checkpoint]:
    """(model in eval mode on device, its config, the loaded Checkpoint)."""
    state = load_checkpoint(checkpoint)
    try:
        model, cfg = model_from_checkpoint(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the head they describe "
                              f"({shorten(str(exc), 160)}).") from None
    return model.to(resolve_device(device)).eval(), cfg, state


def _data_for(state: Checkpoint, fs: FeatureSet, splits: Sequence[str], checkpoint: str | Path) -> FeatureData:
    frames = state.frames
    if fs.dims["F"] < frames:
        raise CheckpointError(f"{checkpoint}: head expects {frames} frames per video but {fs.paths[0]} holds "
                              f"{fs.dims['F']}.", fix="evaluate on features extracted with at least as many frames.")
    cfg = state.config
    return FeatureData(fs, list(splits), frames=frames, use_patches=cfg.use_patches, mode=cfg.data_mode)


def evaluate_splits(checkpoint: str | Path, features: str | Path | Sequence[str | Path], splits: Sequence[str],
                    out_dir: str | Path | None = None, device: str = "auto",
                    batch_size: int = 256) -> dict[str, dict[str, Any]]:
    """Metrics per split (e.g. test and test_ood), loading the features once; writes metrics_<split>.json
    and the per-video predictions_<split>.npz (head/metrics/predictions.py) into `out_dir`."""
    results, predictions = score_splits(checkpoint, features, splits, device, batch_size)
    if out_dir is not None:
        for split in splits:
            write_json(Path(out_dir) / f"metrics_{split}.json", results[split])
            save_predictions(predictions_path(Path(out_dir), split), predictions[split])
    return results


def score_splits(checkpoint: str | Path, features: str | Path | Sequence[str | Path], splits: Sequence[str],
                  device: str, batch_size: int) -> tuple[dict[str, dict[str, Any]], dict[str, Predictions]]:
    model, cfg, state = load_model(checkpoint, device)
    fs = FeatureSet(features)
    check_compatible(state, fs, checkpoint)
    present = set(fs.index["split"].tolist())
    missing = [s for s in splits if s not in present]
    if missing:
        raise CmdclError(f"{fs.paths[0]}: no videos in split {missing[0]!r}; splits in the file: "
                         f"{', '.join(sorted(present)) or 'none'}.")
    data = _data_for(state, fs, splits, checkpoint)
    dev = next((p.device for p in model.parameters()), None) or next((b.device for b in model.buffers()),
                                                                      torch.device("cpu"))
    multilabel = state.multilabel
    results, predictions = {}, {}
    for split in splits:
        rows = np.flatnonzero(data.split == split)
        metrics, outputs, scores = _split_metrics(model, data, rows, dev, batch_size, multilabel)
        results[split] = {"split": split, "checkpoint": str(checkpoint), "features": [str(p) for p in fs.paths],
                          "method": cfg.method, "epoch": state.epoch, "code_version": code_version(),
                          **metrics}
        predictions[split] = split_predictions(outputs, data, rows, multilabel, scores)
    return results, predictions


def split_predictions(outputs: dict[str, np.ndarray | None], data: FeatureData, rows: np.ndarray,
                      multilabel: bool, scores: SplitScores | None = None) -> Predictions:
    """Each video's scores, labels, (where step_mAP is scored) step scores, (where the leakage probe ran)
    probe correctness and the per-video values the metric entries kept, for predictions_<split>.npz."""
    rows_t = torch.as_tensor(rows)
    steps = data.steps[rows_t].cpu().numpy()
    step_logits = outputs.get("step_logits")
    scored_steps = step_logits is not None and steps.any() and step_logits.shape[1] == steps.shape[1]
    probes = (scores.shared.get(LEAKAGE_PROBES) if scores is not None else None) or {}
    kept = scores.per_video if scores is not None else {}
    return Predictions(video_id=np.asarray(data.video_id[rows], dtype=str), scores=outputs["logits"],
                       label=data.label[rows_t].cpu().numpy(), labels=data.labels[rows_t].cpu().numpy(),
                       multilabel=multilabel, step_scores=step_logits if scored_steps else None,
                       steps=steps if scored_steps else None, split=str(data.split[rows[0]]) if len(rows) else None,
                       features=identity(data.feature_set.attrs), leakage_names=list(probes) or None,
                       leakage_correct=np.stack([p["correct"] for p in probes.values()], 1) if probes else None,
                       video_metric_names=list(kept) or None,
                       video_metrics=np.stack(list(kept.values()), 1) if kept else None)


def _split_metrics(model: nn.Module, data: FeatureData, rows: np.ndarray, device: torch.device, batch_size: int,
                   multilabel: bool) -> tuple[dict[str, Any], dict[str, np.ndarray | None], SplitScores]:
    """(every entry of the metric table on `rows`; the collected outputs, for the per-video predictions; the
    SplitScores, with the leakage probes and the per-video values the entries kept)."""
    scores = SplitScores(data, rows, multilabel)
    outputs = collect_outputs(model, data, rows, device, batch_size, keys=scores.keys, on_batch=scores.on_batch)
    return scores.metrics(outputs), outputs, scores


def evaluate(checkpoint: str | Path, features: str | Path | Sequence[str | Path], split: str = "test",
             out: str | Path | None = None, device: str = "auto", batch_size: int = 256) -> dict[str, Any]:
    """Metrics of the checkpoint's head on one split; written to `out` (default: metrics_<split>.json
    next to the checkpoint), with predictions_<split>.npz in the same folder."""
    results, predictions = score_splits(checkpoint, features, [split], device, batch_size)
    metrics = results[split]
    out = Path(out) if out is not None else Path(checkpoint).parent / f"metrics_{split}.json"
    write_json(out, metrics)
    save_predictions(predictions_path(out.parent, split), predictions[split])
    return metrics
