"""[ours] Weak grounding losses from step segments (docs/METHOD.md, "The learned patch mediator", its item
"Weak grounding loss", and "The moving world" for the patch-level one).

Temporal (HeadConfig.grounding_loss):

    L_t = - mean over (video b, annotated step s) of log sum_{f in segments of s} A_bsf

A_bsf is the head's temporal step attention ("step_attention", (B, S, F)). The context (background,
attire, lighting) is the same in every frame, so it cannot move attention mass into one segment: only
the action can lower this loss.

Spatial (HeadConfig.patch_grounding): on each frame f of step s's segments, the patches under s's spatial
attention must predict s among the steps annotated in the same video (a multiple-instance likelihood: the
attention picks the patches, a probe reads each patch x_bfp as the mediator reads it):

    L_s = - mean over (b, s, f in segments of s) of log sum_p a(p|f,s) softmax_{k in steps of b}(probe(x_bfp))_s

Props, scene and camera are the same whatever the step of the video, so their patches predict each of its
steps at about 1/(its steps): only attention on the action's object can lower this loss. With
patch_contrast "all", every step competes (props then also tell the activity's steps from the others). (A first version
pooled the patches under the attention before the probe; the probe then read the object out of a uniform
pool and the attention barely moved: docs/METHOD.md.)

Per-frame step loss (HeadConfig.step_loss, [ours]; the front door through the atomic actions): at every valid
frame inside a segment, the head's frame-step evidence e_bf ("frame_step_logits", (B, F, S)) must name the step
under way, with the steps annotated in the same video competing (step_contrast "video") or every step ("all"),
plus step_all_loss times the all-step cross-entropy with "video":

    L_f = - mean over (b, f in a segment) of log softmax_{k in steps of b}(e_bf)_{step(b, f)}

Frames are mapped once to the step whose segment holds them (the last one listed when segments overlap, -1
outside every segment), so a batch needs only a (B, F) table.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.config import HeadConfig
from ..model.registry import reads
from ..model.textual import MASKED_LOGIT
from ..data import FeatureData
from ..metrics.grounding import frame_step_ids

MIN_MASS = 1e-6  # log floor: a step with no attention inside its segment costs log(1e6) ~ 14, not inf


def frame_step_table(data: FeatureData) -> np.ndarray | None:
    """(N, F) int64 step id of every frame of every row of `data` (-1 outside segments), or None when the
    features hold no segments (head/metrics/grounding.py: frame_step_ids, the one rule)."""
    rows = np.arange(len(data))
    return frame_step_ids(data, rows, data.feature_set.read_segments(data.positions[rows]))


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


def patch_grounding_loss(model: nn.Module, spatial: Tensor, patches: Tensor, frame_mask: Tensor,
                         frame_step: Tensor) -> Tensor:
    """L_s of the module docstring. spatial (B, S, F, P) from the head's forward, patches (B, F, P, D) and
    frame_mask (B, F) as given to it, frame_step (B, F) long; `model` is the (unwrapped) CMDCLHead. Zero
    (with a graph) when no step of the batch has a segment frame."""
    steps = torch.arange(spatial.shape[1], device=spatial.device)
    inside = frame_step[:, None, :] == steps[None, :, None]  # (B, S, F)
    present = inside.any(-1)  # (B, S): the steps annotated in each video
    video, step = present.nonzero(as_tuple=True)
    if not len(video):
        return spatial.sum() * 0.0
    logits = model.patch_step_logits(patches, frame_mask, video).float()  # (n, F, P, S)
    if model.cfg.patch_contrast == "video":  # only the video's own steps compete
        logits = logits.masked_fill(~present[video][:, None, None, :], MASKED_LOGIT)
    index = step[:, None, None, None].expand(*logits.shape[:3], 1)
    log_p = logits.log_softmax(-1).gather(-1, index).squeeze(-1)  # (n, F, P): log P(s | patch)
    attention = spatial[video, step].float()  # (n, F, P)
    log_mass = torch.logsumexp(log_p + torch.log(attention.clamp_min(MIN_MASS)), dim=-1)  # (n, F)
    weight = inside[video, step].to(log_mass.dtype)  # the frames of the step's segments
    return -(log_mass * weight).sum() / weight.sum().clamp_min(1.0)


def frame_step_loss(frame_step_logits: Tensor, frame_step: Tensor, frame_mask: Tensor, contrast: str,
                    all_weight: float = 0.0) -> Tensor:
    """L_f of the module docstring: frame_step_logits (B, F, S), frame_step (B, F) long (-1: no step), frame_mask
    (B, F). contrast "video" or "all"; with "video", plus `all_weight` times the all-step cross-entropy (the same
    frames). Zero (with a graph) when no valid frame of the batch is in a segment."""
    inside = (frame_step >= 0) & frame_mask.bool()
    distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        # DDP averages the ranks' gradients, and ranks hold different numbers of annotated frames: normalise by
        # the global count, so that the loss is the global batch's mean frame loss, as in one process.
        total = inside.sum().to(torch.float32)
        dist.all_reduce(total)  # every rank, before any early return (a rank that skipped it would hang the rest)
    if not bool(inside.any()):
        return frame_step_logits.sum() * 0.0
    logits, target = frame_step_logits.float(), frame_step[inside]

    def mean_frame_loss(scores: Tensor) -> Tensor:
        if not distributed:
            return F.cross_entropy(scores[inside], target)
        return F.cross_entropy(scores[inside], target, reduction="sum") * dist.get_world_size() / total

    if contrast != "video":
        return mean_frame_loss(logits)
    steps = torch.arange(logits.shape[-1], device=logits.device)
    present = ((frame_step[:, :, None] == steps) & inside[:, :, None]).any(1)  # (B, S): the video's steps
    loss = mean_frame_loss(logits.masked_fill(~present[:, None, :], MASKED_LOGIT))
    return loss + all_weight * mean_frame_loss(logits) if all_weight > 0 else loss


def segment_losses(cfg: HeadConfig, model: nn.Module, out: dict[str, Tensor], batch: dict[str, Tensor],
                   frame_step: Tensor) -> Tensor:
    """The weighted grounding losses of one batch (cfg's weights; each only where the head has its
    attention): what the trainer adds to the head's loss. `model` is the unwrapped head."""
    loss = out["logits"].new_zeros(())
    if cfg.grounding_loss > 0:
        loss = loss + cfg.grounding_loss * grounding_loss(out["step_attention"], frame_step)
    if cfg.patch_grounding > 0 and getattr(model, "patch_probe", None) is not None and "spatial_attention" in out:
        loss = loss + cfg.patch_grounding * patch_grounding_loss(model, out["spatial_attention"], batch["patches"],
                                                                 batch["frame_mask"], frame_step)
    if cfg.step_loss > 0 and "frame_step_logits" in out:
        loss = loss + cfg.step_loss * frame_step_loss(out["frame_step_logits"], frame_step, batch["frame_mask"],
                                                      cfg.step_contrast, cfg.step_all_loss)
    return loss


def segment_table(cfg: HeadConfig, data: FeatureData) -> np.ndarray | None:
    """`frame_step_table(data)` for the heads that read segments (cmdcl), else None (not read)."""
    return frame_step_table(data) if reads(cfg.method, "grounding_loss") else None


def resolve_step_readout(cfg: HeadConfig, table: np.ndarray | None, say) -> HeadConfig:
    """step_readout "auto" made concrete from the training features (so the checkpoint records what was built):
    gru where they hold step segments, else none, today's classifier (says so in one line)."""
    if not reads(cfg.method, "step_readout") or cfg.step_readout != "auto":
        return cfg
    if table is None:
        say("--step-readout auto: the features hold no step segments; the class is read from V' and T' (none).")
        return dataclasses.replace(cfg, step_readout="none")
    say("--step-readout auto: step segments found; the class is read from the per-frame step evidence (gru).")
    return dataclasses.replace(cfg, step_readout="gru")


def grounding_targets(cfg: HeadConfig, table: np.ndarray | None, device: torch.device,
                      say) -> Tensor | None:
    """The (N, F) frame-step table on `device` when cfg asks for a segment loss and the features hold
    segments (says so either way), else None."""
    if (cfg.grounding_loss <= 0 and cfg.patch_grounding <= 0 and cfg.step_loss <= 0) or not reads(
            cfg.method, "grounding_loss"):
        return None
    if table is None:
        say("--grounding-loss / --patch-grounding / --step-loss: the features hold no step segments; the losses "
            "are off.")
        return None
    say(f"segment losses on (grounding {cfg.grounding_loss}, patch grounding {cfg.patch_grounding}, frame steps "
        f"{cfg.step_loss}): step segments of {len(table)} videos.")
    return torch.from_numpy(table).to(device)
