"""Per-video predictions of an evaluated split: RUN/predictions_<split>.npz, next to metrics_<split>.json.

    video_id     (N,)    str      the feature file's video ids, in the file's order
    scores       (N, C)  float32  the head's class logits
    pred         (N,)    int64    argmax of scores
    label        (N,)    int64    true class, -1 when unlabelled (multi-label datasets)
    labels       (N, C)  uint8    multi-hot true classes
    multilabel   ()      bool     which of label / labels the metric reads
    step_scores  (N, S)  float32  atomic-action logits   } only when the head scores steps and the split
    steps        (N, S)  uint8    annotated steps        } annotates them (the step_mAP condition of evaluate)
    split        ()      str      the split scored                           } absent in files written
    features     ()      str      JSON: the scored features' identity        } before compare checked them
                                  (core/provenance.py FEATURE_IDENTITY_KEYS)
    leakage_names    (K,)    str      context factors probed } only where evaluate ran the leakage probe
    leakage_correct  (N, K)  float32  1 / 0: the cross-validated probe got the video's value right; NaN: left out
    video_metric_names  (M,)    str      per-video values that metric entries kept  } only where an entry
    video_metrics       (N, M)  float32  (head/metrics/registry.py); NaN: not scored } kept some

No torch here: `cmdcl compare` reads these files without loading a model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmdcl.core.atomic import write_atomic
from cmdcl.core.errors import CmdclError, shorten


def predictions_path(folder: Path, split: str) -> Path:
    return Path(folder) / f"predictions_{split}.npz"


@dataclass
class Predictions:
    """One evaluated split of one run (one seed)."""

    video_id: np.ndarray
    scores: np.ndarray
    label: np.ndarray
    labels: np.ndarray
    multilabel: bool
    step_scores: np.ndarray | None = None
    steps: np.ndarray | None = None
    split: str | None = None
    features: dict[str, str] | None = None  # the scored feature files' identity (compare checks it)
    leakage_names: list[str] | None = None
    leakage_correct: np.ndarray | None = None
    video_metric_names: list[str] | None = None
    video_metrics: np.ndarray | None = None

    def video_column(self, name: str) -> np.ndarray | None:
        """(N,) per-video values of metric `name` (NaN: not scored); None when evaluate kept none."""
        if self.video_metric_names is None or name not in self.video_metric_names:
            return None
        return self.video_metrics[:, self.video_metric_names.index(name)]

    def leakage_column(self, factor: str) -> np.ndarray | None:
        """(N,) per-video probe correctness of one factor (NaN: left out); None when it was not probed."""
        if self.leakage_names is None or factor not in self.leakage_names:
            return None
        return self.leakage_correct[:, self.leakage_names.index(factor)]

    @property
    def pred(self) -> np.ndarray:
        return self.scores.argmax(axis=1).astype(np.int64) if len(self.scores) else np.zeros(0, np.int64)

    def take(self, rows: np.ndarray) -> "Predictions":
        """The videos `rows`, in that order."""
        pick = (lambda a: None if a is None else a[rows])
        return Predictions(self.video_id[rows], self.scores[rows], self.label[rows], self.labels[rows],
                           self.multilabel, pick(self.step_scores), pick(self.steps), self.split, self.features,
                           self.leakage_names, pick(self.leakage_correct), self.video_metric_names,
                           pick(self.video_metrics))


def save_predictions(path: Path, predictions: Predictions) -> Path:
    """Write the npz atomically (a crash leaves the previous file or none, never half of one)."""
    p = predictions
    arrays = {"video_id": np.asarray(p.video_id, dtype=str), "scores": np.asarray(p.scores, np.float32),
              "pred": p.pred, "label": np.asarray(p.label, np.int64), "labels": np.asarray(p.labels, np.uint8),
              "multilabel": np.asarray(bool(p.multilabel))}
    if p.step_scores is not None and p.steps is not None:
        arrays["step_scores"] = np.asarray(p.step_scores, np.float32)
        arrays["steps"] = np.asarray(p.steps, np.uint8)
    if p.split is not None:
        arrays["split"] = np.asarray(str(p.split))
    if p.features is not None:
        arrays["features"] = np.asarray(json.dumps(p.features, sort_keys=True))
    if p.leakage_names and p.leakage_correct is not None:
        arrays["leakage_names"] = np.asarray(p.leakage_names, dtype=str)
        arrays["leakage_correct"] = np.asarray(p.leakage_correct, np.float32)
    if p.video_metric_names and p.video_metrics is not None:
        arrays["video_metric_names"] = np.asarray(p.video_metric_names, dtype=str)
        arrays["video_metrics"] = np.asarray(p.video_metrics, np.float32)
    return write_atomic(path, lambda handle: np.savez(handle, **arrays))


def load_predictions(path: Path, split: str | None = None) -> Predictions:
    """Read a predictions npz; a missing or malformed file is a one-line CmdclError."""
    path = Path(path)
    split = split or path.stem.removeprefix("predictions_")
    if not path.is_file():
        raise CmdclError(f"{path}: no per-video predictions for split {split!r}.",
                         fix=f"run `cmdcl evaluate --checkpoint {path.parent / 'best.pt'} --features ... "
                             f"--split {split}` on that run.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise CmdclError(f"{path}: not a predictions file ({shorten(str(exc), 120)}).") from None
    missing = [k for k in ("video_id", "scores", "label", "labels", "multilabel") if k not in arrays]
    if missing:
        raise CmdclError(f"{path}: not a predictions file (no {missing[0]!r} array).")
    scores = arrays["scores"]
    if scores.ndim != 2 or len(arrays["video_id"]) != len(scores):
        raise CmdclError(f"{path}: scores {scores.shape} do not match {len(arrays['video_id'])} video ids.")
    if not np.isfinite(scores).all():
        bad = arrays["video_id"][~np.isfinite(scores).all(axis=1)][:3]
        raise CmdclError(f"{path}: NaN/inf scores for video(s) {', '.join(repr(str(v)) for v in bad)}.",
                         fix="check the features with `cmdcl verify`, then evaluate the run again.")
    names, kept = arrays.get("leakage_names"), arrays.get("video_metric_names")
    try:
        recorded = json.loads(str(arrays["features"])) if "features" in arrays else None
    except ValueError:
        raise CmdclError(f"{path}: its 'features' record is not JSON.") from None
    return Predictions(arrays["video_id"].astype(str), scores.astype(np.float32), arrays["label"].astype(np.int64),
                       arrays["labels"].astype(np.uint8), bool(arrays["multilabel"]),
                       arrays.get("step_scores"), arrays.get("steps"),
                       str(arrays["split"]) if "split" in arrays else None, recorded,
                       None if names is None else [str(n) for n in names], arrays.get("leakage_correct"),
                       None if kept is None else [str(n) for n in kept], arrays.get("video_metrics"))
