"""Baselines that share the CMDCL head's interface and training loop (method.md §6).

Every head maps (features (B, F, D) float32, frame_mask (B, F) bool, patches (B, F, P, D) | None) to a
dict holding at least "logits" (B, C) and "representation" (B, R), the video vector its classifier reads
(evaluate's context-leakage probe reads it). Patches are accepted and ignored by the baselines.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cmdcl.core.errors import CmdclError
from cmdcl.head.config import HeadConfig
from cmdcl.head.visual import mean_over_valid_frames

CLIP_LOGIT_SCALE = 100.0  # CLIP's trained logit scale, used as the zero-shot temperature (1 / 0.01)


class ZeroShotHead(nn.Module):
    """Zero-shot CLIP: cosine of class (and step) text embeddings with the mean of the valid frame embeddings."""

    def __init__(self, class_text: torch.Tensor, step_text: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("class_text", F.normalize(class_text.float(), dim=-1))
        self.register_buffer("step_text", F.normalize(step_text.float(), dim=-1) if step_text is not None else None)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor, patches: torch.Tensor | None = None) -> dict:
        video = F.normalize(mean_over_valid_frames(F.normalize(features, dim=-1), frame_mask), dim=-1)
        out = {"logits": CLIP_LOGIT_SCALE * video @ self.class_text.t(), "representation": video}
        if self.step_text is not None:
            out["step_logits"] = CLIP_LOGIT_SCALE * video @ self.step_text.t()
        return out


class LinearProbeHead(nn.Module):
    """Linear probe on the mean of the valid frames: order-blind by construction."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, num_classes)
        # CLIP embeddings are unit-norm, so each coordinate is ~1/sqrt(D); rescaling to unit variance
        # lets the default init and learning rate work across embedding sizes (still a linear map).
        self.input_scale = math.sqrt(dim)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor, patches: torch.Tensor | None = None) -> dict:
        video = mean_over_valid_frames(features, frame_mask) * self.input_scale
        return {"logits": self.classifier(self.dropout(video)), "representation": video}


class TemporalTransformerHead(nn.Module):
    """Text4Vis-style: frame tokens + temporal position embeddings -> transformer (residual) -> masked mean,
    scored by cosine against a frozen class-text classifier with a learnable temperature.
    """

    def __init__(self, cfg: HeadConfig, class_text: torch.Tensor, frames: int):
        super().__init__()
        dim = class_text.shape[1]
        width = cfg.width or dim
        if width % cfg.heads:
            raise CmdclError(f"--width {width} is not divisible by --heads {cfg.heads}.")
        self.proj_in = nn.Linear(dim, width) if width != dim else nn.Identity()
        self.position = nn.Parameter(torch.randn(frames, width) * 0.02)
        self.encoder = None
        if cfg.sta_layers > 0:
            layer = nn.TransformerEncoderLayer(width, cfg.heads, dim_feedforward=4 * width, dropout=cfg.dropout,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, cfg.sta_layers, enable_nested_tensor=False)
        self.proj_out = nn.Linear(width, dim) if width != dim else nn.Identity()
        self.register_buffer("class_text", F.normalize(class_text.float(), dim=-1))  # frozen classifier
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor, patches: torch.Tensor | None = None) -> dict:
        x = self.proj_in(features)
        h = x + self.position[: x.shape[1]]
        if self.encoder is not None:
            # A video with no valid frame would make attention rows all -inf; let it see its first frame.
            padding = ~frame_mask
            padding[:, 0] &= frame_mask.any(1)
            h = self.encoder(h, src_key_padding_mask=padding)
        h = h + x  # Text4Vis keeps the original frame tokens as a residual
        video = F.normalize(mean_over_valid_frames(self.proj_out(h), frame_mask), dim=-1)
        scale = self.logit_scale.clamp(max=math.log(CLIP_LOGIT_SCALE)).exp()
        return {"logits": scale * video @ self.class_text.t(), "representation": video}
