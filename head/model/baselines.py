"""Baselines that share the CMDCL head's interface and training loop (docs/TRAINING.md, "Adding a head").

Every head maps (features (B, F, D) float32, frame_mask (B, F) bool, patches (B, F, P, D) | None) to a
dict holding at least "logits" (B, C) and "representation" (B, R), the video vector its classifier reads
(evaluate's context-leakage probe reads it). Patches are accepted and ignored by the baselines.
`TextScoredHead` is the frozen cosine text classifier they share: scoring a video embedding against the
CLIP texts of the classes (and of the atomic actions), with a fixed or a learnable, clamped logit scale.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cmdcl.core.errors import CmdclError
from .config import HeadConfig
from .visual import mean_over_valid_frames

CLIP_LOGIT_SCALE = 100.0  # CLIP's trained logit scale, used as the zero-shot temperature (1 / 0.01)


class TextScoredHead(nn.Module):
    """Base of the heads scored by cosine against frozen CLIP texts: call `init_text_classifier` in
    `__init__`, then `text_logits(video)` in `forward`.

    The texts are unit-norm buffers (saved with the head, never trained); the scale is fixed at CLIP's 100,
    or learnable (log-parametrised from 1 / init_temperature, clamped at 100 as CLIP does).
    """

    def init_text_classifier(self, class_text: torch.Tensor, step_text: torch.Tensor | None = None,
                             init_temperature: float | None = None) -> None:
        """class_text (C, D); step_text (S, D) to also score the atomic actions ("step_logits"), else None;
        init_temperature: a learnable scale starting at its inverse, None for CLIP's fixed 100."""
        self.register_buffer("class_text", F.normalize(class_text.float(), dim=-1))
        self.register_buffer("step_text", F.normalize(step_text.float(), dim=-1) if step_text is not None else None)
        self.logit_scale = (nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
                            if init_temperature is not None else None)

    def text_scale(self) -> torch.Tensor | float:
        if self.logit_scale is None:
            return CLIP_LOGIT_SCALE
        return self.logit_scale.clamp(max=math.log(CLIP_LOGIT_SCALE)).exp()

    def text_logits(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"logits" (B, C)[, "step_logits" (B, S)], "representation" (B, D)}: scaled cosines of video (B, D)
        with the texts; the representation is the unit-norm video vector they score."""
        video, scale = F.normalize(video, dim=-1), self.text_scale()
        out = {"logits": scale * video @ self.class_text.t(), "representation": video}
        if self.step_text is not None:
            out["step_logits"] = scale * video @ self.step_text.t()
        return out


class ZeroShotHead(TextScoredHead):
    """Zero-shot CLIP: cosine of class (and step) text embeddings with the mean of the valid frame embeddings."""

    def __init__(self, class_text: torch.Tensor, step_text: torch.Tensor | None = None):
        super().__init__()
        self.init_text_classifier(class_text, step_text)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor, patches: torch.Tensor | None = None) -> dict:
        return self.text_logits(mean_over_valid_frames(F.normalize(features, dim=-1), frame_mask))


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


class TemporalTransformerHead(TextScoredHead):
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
        self.init_text_classifier(class_text, init_temperature=cfg.init_temperature)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor, patches: torch.Tensor | None = None) -> dict:
        x = self.proj_in(features)
        h = x + self.position[: x.shape[1]]
        if self.encoder is not None:
            # A video with no valid frame would make attention rows all -inf; let it see its first frame.
            padding = ~frame_mask
            padding[:, 0] &= frame_mask.any(1)
            h = self.encoder(h, src_key_padding_mask=padding)
        h = h + x  # Text4Vis keeps the original frame tokens as a residual
        return self.text_logits(mean_over_valid_frames(self.proj_out(h), frame_mask))
