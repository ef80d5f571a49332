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


def auxiliary_losses(cfg, model: torch.nn.Module, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                     frame_step: torch.Tensor | None) -> torch.Tensor:
    """What the trainer adds to head_loss for cmdcl's [ours] options: the grounding losses where the features
    hold step segments (frame_step (B, F), head/training/grounding_loss.py) and the TCI debiasing loss.
    `model` is the unwrapped head."""
    from .grounding_loss import segment_losses

    loss = out["logits"].new_zeros(())
    if frame_step is not None:
        loss = loss + segment_losses(cfg, model, out, batch, frame_step)
    if cfg.tci_debias > 0 and getattr(model, "tci", None) is not None:
        loss = loss + cfg.tci_debias * model.tci.context_spread(out["debiased_text"])
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
