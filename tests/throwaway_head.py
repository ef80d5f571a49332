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
