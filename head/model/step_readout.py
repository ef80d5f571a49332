"""[ours] The front door through the atomic actions (docs/METHOD.md, "Through the atomic actions").

    e_bfi = <norm proj(h_bf), norm T'_i> * scale     per-frame step evidence (B, F, S): "frame_step_logits"
    p_bf  = softmax_i(e_bf)                          all steps compete (a test video's steps are unknown)
    logits = W [GRU_fwd(p_b) ; GRU_bwd(p_b)] + b     the class from the step evidence over time alone

h_bf are the mediator's dynamic frame tokens (each frame minus its video's mean frame, after the
spatio-temporal stack). The evidence is trained by a dense per-frame step loss from the step segments
(head/training/grounding_loss.py, `frame_step_loss`). Within one video the context is the same in every frame,
so it cannot tell which step is under way; with the gradient stopped at p (readout_detach), the activity loss
cannot pay the evidence to carry the context either, and the read-out can only use what the steps say.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import check_choice
from .textual import clamped_scale, logit_scale_parameter


class FrameStepEvidence(nn.Module):
    """e (B, F, S) from frame tokens (B, F, W) and T' ((S, D) or (B, S, D)). The projection starts as `init`
    (the encoder's map back to the text space), so e starts as CLIP's frame-to-text similarity."""

    def __init__(self, width: int, dim: int, init_temperature: float, init: nn.Linear | None = None):
        super().__init__()
        self.proj = nn.Linear(width, dim)
        if init is not None:
            with torch.no_grad():
                self.proj.weight.copy_(init.weight)
                self.proj.bias.copy_(init.bias)
        self.log_scale = logit_scale_parameter(init_temperature)

    def forward(self, tokens: Tensor, text: Tensor) -> Tensor:
        frames = F.normalize(self.proj(tokens), dim=-1)
        text = F.normalize(text, dim=-1)
        if text.dim() == 2:
            scores = frames @ text.T
        else:
            scores = torch.einsum("bfd,bsd->bfs", frames, text)
        return scores * clamped_scale(self.log_scale)


class StepReadout(nn.Module):
    """The class from the step posteriors over time: a 1-layer bidirectional GRU over the valid frames (padded
    frames dropped, valid ones kept in order), its two final states, a linear layer to the classes.

    forward(frame_step_logits (B, F, S), frame_mask (B, F)) -> (logits (B, C), features (B, 2H): what the
    linear layer reads, the head's "representation").
    """

    def __init__(self, steps: int, classes: int, hidden: int, detach: bool, inputs: str):
        super().__init__()
        check_choice("readout_input", inputs)
        self.detach, self.inputs = detach, inputs
        self.gru = nn.GRU(steps, hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, classes)

    def posteriors(self, frame_step_logits: Tensor) -> Tensor:
        """The read-out's per-frame input (B, F, S): all-step softmax, or one-hot of the top step."""
        logits = frame_step_logits.float()
        if self.detach:
            logits = logits.detach()
        if self.inputs == "hard":
            return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
        return logits.softmax(-1)

    def forward(self, frame_step_logits: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor]:
        x = self.posteriors(frame_step_logits)
        mask = frame_mask.bool()
        # valid frames first, in their order (stable sort), so that packing drops exactly the padded ones
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
        x = x.gather(1, order[..., None].expand_as(x))
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x.to(self.classifier.weight.dtype), lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, last = self.gru(packed)  # (2, B, H): the forward and backward directions' final states
        features = torch.cat([last[0], last[1]], dim=-1)
        return self.classifier(features), features
