"""The throwaway head of tests/throwaway_entries.py: a new baseline is one class like this one."""
from __future__ import annotations

import torch
from torch import nn

from cmdcl.head.model.baselines import TextScoredHead
from cmdcl.head.model.visual import mean_over_valid_frames


class ThrowawayGRUHead(TextScoredHead):
    """A GRU over the frames, scored by the shared frozen text classifier (and so with step scores)."""

    def __init__(self, cfg, inputs):
        super().__init__()
        dim = inputs.dims["D"]
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.init_text_classifier(inputs.class_text, inputs.step_text if inputs.has_steps else None,
                                  init_temperature=cfg.init_temperature)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor, patches: torch.Tensor | None = None) -> dict:
        hidden, _ = self.gru(features)  # causal, and padding comes last: valid frames never see it
        return self.text_logits(mean_over_valid_frames(self.dropout(hidden), frame_mask))


class FrameStepHead(nn.Module):
    """A throwaway head with per-frame step logits: CLIP-style cosine of each frame with each step text (x100),
    `sign` -1 turning every frame's best step into its worst. No parameters: scored, not trained."""

    sign = 1.0

    def __init__(self, cfg, inputs):
        super().__init__()
        self.register_buffer("class_text", nn.functional.normalize(inputs.class_text.float(), dim=-1))
        self.register_buffer("step_text", nn.functional.normalize(inputs.step_text.float(), dim=-1))

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor, patches: torch.Tensor | None = None) -> dict:
        frames = nn.functional.normalize(features.float(), dim=-1)
        valid = frame_mask[..., None].to(frames.dtype)
        video = mean_over_valid_frames(frames, frame_mask)
        frame_steps = self.sign * 100.0 * frames @ self.step_text.T * valid  # padded frames: zeros
        # uniform attention over the valid frames: grounding mass ratio exactly 1
        attention = (valid / valid.sum(1, keepdim=True)).transpose(1, 2).expand(-1, self.step_text.shape[0], -1)
        return {"logits": 100.0 * video @ self.class_text.T, "representation": video,
                "step_logits": 100.0 * video @ self.step_text.T, "step_attention": attention,
                "frame_step_logits": frame_steps}


class ContraryFrameStepHead(FrameStepHead):
    sign = -1.0
