"""Frame-level step metrics, from a head's per-frame step logits ("frame_step_logits" (B, F, S): each frame's
scores over the S atomic-action texts).

Per-frame step top-1 (`frame_step_top1`): a frame is annotated when it is valid (frame_mask) and lies inside a
step segment of the file's /segments (head/metrics/grounding.py: frame_step_ids, the rule the grounding loss
uses too, with a step id in 0..S-1). Per video, the share of its annotated frames whose argmax over the S steps
is the annotated step; then the mean over the videos with at least one annotated frame (each video counts
once, however long). `frame_step_frames` is the pooled share over all annotated frames, for reference.

Step leakage (`step_leakage`): the leakage probe of head/metrics/leakage.py (cross-validated linear probe to
each context factor) read from the step evidence instead of the head's representation: per video, the mean
over its valid frames of softmax_S(frame_step_logits).

Heads without "frame_step_logits" and files without segments (top-1) or context factors (leakage) give no
keys, never an error.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .grounding import frame_step_ids
from .leakage import probe_factors

KEY = "frame_step_logits"


def frame_step_scores(logits: np.ndarray, step_ids: np.ndarray, frame_mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """logits (n, F, S), step ids (n, F) (-1: no step), valid frames (n, F) -> (per-video top-1 (n,), NaN for a
    video without an annotated frame; right frames (n,); annotated frames (n,))."""
    S = logits.shape[2]
    annotated = np.asarray(frame_mask, bool) & (step_ids >= 0) & (step_ids < S)
    right = (logits.argmax(axis=2) == step_ids) & annotated
    count, hits = annotated.sum(axis=1), right.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        top1 = np.where(count > 0, hits / np.maximum(count, 1), np.nan)
    return top1, hits, count


def step_evidence(logits: np.ndarray, frame_mask: np.ndarray) -> np.ndarray:
    """(n, S): the mean over each video's valid frames of softmax over the steps of its frame logits."""
    x = np.asarray(logits, np.float64)
    p = np.exp(x - x.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    mask = np.asarray(frame_mask, np.float64)[..., None]
    return (p * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)


class FrameStepCollector:
    """The metric table's `collect` for both frame-step entries: per batch, the per-video frame top-1 and step
    evidence, so no (N, F, S) logits are kept."""

    def __init__(self, split):
        self.row_index = {int(r): i for i, r in enumerate(split.rows)}
        self.step_ids = frame_step_ids(split.data, split.rows, split.segments)
        n = len(split.rows)
        self.frame_mask = split.frame_mask
        self.top1, self.hits, self.count = np.full(n, np.nan), np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.evidence: np.ndarray | None = None
        self.saw = False

    def add(self, batch_rows: np.ndarray, outputs: dict[str, torch.Tensor]) -> None:
        if KEY not in outputs:
            return
        logits = outputs[KEY].float().cpu().numpy()
        where = np.array([self.row_index[int(r)] for r in batch_rows], np.int64)
        mask = self.frame_mask[where]
        if not self.saw:
            self.evidence = np.zeros((len(self.row_index), logits.shape[2]))
            self.saw = True
        self.evidence[where] = step_evidence(logits, mask)
        if self.step_ids is not None and logits.shape[1] == self.step_ids.shape[1]:
            self.top1[where], self.hits[where], self.count[where] = frame_step_scores(logits, self.step_ids[where],
                                                                                      mask)

    def top1_summary(self, split) -> dict[str, Any]:
        """frame_step_top1 (mean over videos), its video and frame counts and the pooled frame share; the
        per-video values are kept for `compare --metric frame_step_top1`."""
        scored = np.isfinite(self.top1)
        if not self.saw or not scored.any():
            return {}
        split.keep_per_video("frame_step_top1", self.top1)
        frames = int(self.count.sum())
        return {"frame_step_top1": float(self.top1[scored].mean()), "frame_step_videos": int(scored.sum()),
                "frame_step_frames": frames, "frame_step_frame_top1": float(self.hits.sum() / frames)}

    def leakage_summary(self, split) -> dict[str, Any]:
        """{"step_leakage": {factor: accuracy, chance, videos, folds}} where the features store context factors;
        the per-video probe correctness is kept as step_leakage:<factor>."""
        if not self.saw:
            return {}
        factors, names = split.factors
        probes = probe_factors(self.evidence, factors, names)
        for name, probe in probes.items():
            split.keep_per_video(f"step_leakage:{name}", probe["correct"])
        return {"step_leakage": {n: {k: v for k, v in p.items() if k != "correct"} for n, p in probes.items()}} \
            if probes else {}
