"""[ours] Weak grounding loss from step segments (docs/METHOD.md §6, HeadConfig.grounding_loss).

    L = - mean over (video b, annotated step s) of log sum_{f in segments of s} A_bsf

A_bsf is the head's temporal step attention ("step_attention", (B, S, F)). The context (background,
attire, lighting) is the same in every frame, so it cannot move attention mass into one segment: only
the action can lower this loss. Frames are mapped once to the step whose segment holds them (the last
one listed when segments overlap, -1 outside every segment), so a batch needs only a (B, F) table.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..model.config import HeadConfig
from ..data import FeatureData
from ..metrics.grounding import stored_frame_column

MIN_MASS = 1e-6  # log floor: a step with no attention inside its segment costs log(1e6) ~ 14, not inf


def frame_step_table(data: FeatureData) -> np.ndarray | None:
    """(N, F) int64 step id of every frame of every row of `data` (-1 outside segments), or None when the
    features hold no segments."""
    rows = np.arange(len(data))
    segments = data.feature_set.read_segments(data.positions[rows])
    if not any(len(s) for s in segments):
        return None
    times = stored_frame_column(data, rows, "timestamps_ms") / 1000.0
    table = np.full(times.shape, -1, np.int64)
    for i, video in enumerate(segments):
        for step, start, end in np.asarray(video, np.float64).reshape(-1, 3):
            table[i, (times[i] >= start) & (times[i] < end)] = int(step)
    return table


def grounding_loss(attention: Tensor, frame_step: Tensor) -> Tensor:
    """attention (B, S, F) rows summing to 1 over valid frames; frame_step (B, F) long (-1: no step).
    Zero (with a graph) when no step of the batch has a segment frame."""
    steps = torch.arange(attention.shape[1], device=attention.device)
    inside = (frame_step[:, None, :] == steps[None, :, None]).to(attention.dtype)  # (B, S, F)
    present = inside.sum(-1) > 0
    if not bool(present.any()):
        return attention.sum() * 0.0
    mass = (attention.float() * inside).sum(-1)
    return -torch.log(mass[present].clamp_min(MIN_MASS)).mean()


def grounding_targets(cfg: HeadConfig, data: FeatureData, device: torch.device,
                      say) -> Tensor | None:
    """The (N, F) frame-step table on `device` when cfg asks for the grounding loss and the features hold
    segments (says so either way), else None."""
    if cfg.grounding_loss <= 0 or cfg.method != "cmdcl":
        return None
    table = frame_step_table(data)
    if table is None:
        say("--grounding-loss: the features hold no step segments; the loss is off.")
        return None
    say(f"grounding loss on (weight {cfg.grounding_loss}): step segments of {len(table)} videos.")
    return torch.from_numpy(table).to(device)
