"""The training loss of every head, and the small conversions validation shares with it."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import FeatureData


def head_loss(out: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], multilabel: bool,
              aux_step_weight: float) -> torch.Tensor:
    """Cross-entropy (single-label, -1 ignored) or BCE (multi-label), plus weighted BCE on step presence."""
    logits = out["logits"].float()
    if multilabel:
        loss = F.binary_cross_entropy_with_logits(logits, targets["labels"])
    else:
        loss = F.cross_entropy(logits, targets["label"], ignore_index=-1)
    if aux_step_weight > 0 and "step_logits" in out and out["step_logits"].shape == targets["steps"].shape:
        loss = loss + aux_step_weight * F.binary_cross_entropy_with_logits(out["step_logits"].float(), targets["steps"])
    return loss


def loss_targets(data: FeatureData, rows: np.ndarray) -> dict[str, torch.Tensor]:
    idx = torch.as_tensor(rows)
    return {"label": data.label[idx.to(data.label.device)].cpu(),
            "labels": data.labels[idx.to(data.labels.device)].cpu().float(),
            "steps": data.steps[idx.to(data.steps.device)].cpu().float()}


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "num_videos"}


def finite_or(value: Any, default: float = -math.inf) -> float:
    return float(value) if value is not None and math.isfinite(float(value)) else default
