"""The learned patch mediator of the visual front door (mediator="learned"; docs/METHOD.md, "The learned
patch mediator").

Per atomic action i (query T'_i), over a video's frame tokens h_f (B, F, W) and, when given, its patch
tokens x_fp (B, F, P, W) (the patch, its spatial position and its time, no whole-frame embedding):

    a(p | f, i) = softmax_p( <Wq_s T'_i, Wk_s x_fp> * scale_s )          spatial, one map per action [fig 7]
    u_if        = sum_p a(p | f, i) x_fp + h_f
    A_if        = softmax_f( <Wq_t T'_i, Wk_t u_if> * scale_t )          temporal, padded frames 0
    M_i         = to_embedding( sum_f A_if u_if )                        in-sample mediator (B, S, D)
    C_i         = sum_k w_ik z_k,  w_ik ∝ P(z_k) exp(<Wq_c M_i, Wk_c z_k> * scale)   cross="sample" [CATT]
    V'_i        = [M_i ; C_i] W_V
    scale_*: learnable CLIP-style inverse temperatures (start 1/init_temperature, clamped at 100)

Cheap by design: the keys and the patch token map x_fp = W_in patch_fp + b + pos_p + t_f are linear, so
every score is a query mapped once into the raw feature space dotted with the raw patch, and M_i pools the
raw patches with the joint weights A_if a(p|f,i) before W_in: no (B, F, P, W) token, key or (B, S, F, W)
tensor is ever built, the deep spatio-temporal stack only sees the F frame tokens, and the patches cost
three (B, S, F, P, D) contractions (hence no dropout on patch tokens). The global dictionary z (K, D) with
priors P(z_k) is fitted by KMeans on the training set's frame features (static-split ones when the head
splits them) and stays fixed (CATT's global dictionary).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .textual import MASKED_LOGIT, clamped_scale, logit_scale_parameter
from .visual import FrontdoorMediator, VideoEncoder, masked_softmax, safe_frame_mask


def _projection(inputs: int, outputs: int, init: Tensor | None = None) -> nn.Linear:
    """A bias-free map (keeps the keys linear, see the module doc), starting as `init` or the identity."""
    layer = nn.Linear(inputs, outputs, bias=False)
    with torch.no_grad():
        if init is not None:
            layer.weight.copy_(init)
        else:
            nn.init.eye_(layer.weight)
    return layer


class LearnedMediator(FrontdoorMediator):
    """Front door with learned Q/K attention over frames and patches (see the module docstring).

    forward(text (S, D) or (B, S, D), frames (B, F, W), raw patches (B, F, P, D) or None, frame_mask (B, F),
    encoder: its VideoEncoder) -> (V' (B, S, D), temporal attention (B, S, F), spatial attention (B, S, F, P)
    or None). Spatial rows sum to 1 over P on valid frames and are 0 on padded ones.
    """

    def __init__(self, dim: int, width: int, cross: str = "sample", memory_size: int = 32,
                 init_temperature: float = 0.07, key_init: Tensor | None = None):
        super().__init__(dim, cross, memory_size, init_temperature)
        # Queries and keys live in the text space (d = D). They start as T′ and the token mapped back to
        # the text space (key_init: the encoder's to_embedding weight, (D, W)), so attention starts as
        # CLIP's text-to-patch similarity; Xavier-random maps with a fixed 1/sqrt(d) left it uniform after
        # training (measured on the dev world, docs/METHOD.md).
        self.spatial_query, self.temporal_query = _projection(dim, dim), _projection(dim, dim)
        self.spatial_key, self.temporal_key = _projection(width, dim, key_init), _projection(width, dim, key_init)
        self.spatial_log_scale = logit_scale_parameter(init_temperature)  # learnable 1/tau of each attention
        self.temporal_log_scale = logit_scale_parameter(init_temperature)
        if cross == "sample":
            self.cross_query, self.cross_key = _projection(dim, dim), _projection(dim, dim)
            self.register_buffer("memory", torch.zeros(memory_size, dim))
            self.register_buffer("priors", torch.zeros(memory_size))
            self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def set_memory(self, prototypes: Tensor, priors: Tensor | None = None) -> None:
        """Install the dictionary (K, D); priors P(z_k) (K,) are used by cross="sample" (uniform if None)."""
        if self.cross != "sample":
            super().set_memory(prototypes)
            return
        prototypes = torch.as_tensor(prototypes)
        if prototypes.shape != self.memory.shape:
            raise ValueError(f"memory must be {tuple(self.memory.shape)}, got {tuple(prototypes.shape)}")
        priors = torch.ones(len(prototypes)) if priors is None else torch.as_tensor(priors).float()
        self.memory.copy_(prototypes)
        self.priors.copy_(priors / priors.sum().clamp_min(1e-12))
        self.fitted.fill_(True)

    @torch.no_grad()
    def update_memory(self, summaries: Tensor, momentum: float = 0.9, seed: int = 0) -> None:
        # The sample-queried dictionary holds frame-level states, not video summaries: it stays as fitted.
        if self.cross != "sample":
            super().update_memory(summaries, momentum, seed)

    def sample_cross_term(self, mediator: Tensor) -> Tensor:
        """C_i = sum_k w_ik z_k with w_ik ∝ P(z_k) exp(<Wq M_i, Wk z_k>/sqrt d): the sample's OWN mediator
        queries the global dictionary (CATT's cross-sample attention), (B, S, D). Zeros until fitted."""
        if not bool(self.fitted):
            return torch.zeros_like(mediator)
        logits = self.cross_query(mediator) @ self.cross_key(self.memory).T * clamped_scale(self.log_scale)
        log_prior = torch.log(self.priors.clamp_min(0)).clamp_min(MASKED_LOGIT)  # zero-prior padding: never chosen
        return (logits + log_prior).softmax(-1) @ self.memory

    def forward(self, text: Tensor, frames: Tensor, patches: Tensor | None, frame_mask: Tensor,
                encoder: VideoEncoder) -> tuple[Tensor, Tensor, Tensor | None]:
        """frames: frame tokens h (B, F, W) from the deep stack; patches: the RAW patch features (B, F, P, D),
        whose tokens x_fp = in_proj(patch) + spatial position + time are never built (see below)."""
        batch = frames.shape[0]
        if text.dim() == 2:
            text = text.expand(batch, *text.shape)
        mask = safe_frame_mask(frame_mask)[:, None, :]  # (B, 1, F)
        query_t = self.temporal_query(text) @ self.temporal_key.weight  # Wk^T Wq T', in token space (B, S, W)
        logits = torch.einsum("bsw,bfw->bsf", query_t, frames)
        spatial = None
        if patches is not None:
            spatial, patch_logits = self._patch_scores(text, query_t, patches, mask, encoder)
            logits = logits + patch_logits
        attention = masked_softmax(logits * clamped_scale(self.temporal_log_scale), mask)
        pooled = torch.einsum("bsf,bfw->bsw", attention, frames)
        if patches is not None:
            pooled = pooled + self._patch_values(attention, spatial, patches, encoder)
        mediator = encoder.to_embedding(pooled)  # M in the text space (B, S, D)
        if self.cross == "sample":
            context = self.sample_cross_term(mediator)
        elif self.cross == "dictionary":
            context = self.cross_term(text)  # the old text-queried term
        else:
            context = text
        return self.approximator(torch.cat([mediator, context], dim=-1)), attention, spatial

    def _patch_scores(self, text: Tensor, query_t: Tensor, patches: Tensor, mask: Tensor,
                      encoder: VideoEncoder) -> tuple[Tensor, Tensor]:
        """Spatial attention a (B, S, F, P) and the patch part of the temporal logits (B, S, F).

        Keys and the token map are linear, so <q, Wk x_fp> = <W_in^T Wk^T q, patch_fp> + <Wk^T q, pos_p + t_f
        + b>: both queries go through the maps once per (video, action), not once per patch. The terms
        constant over p (time, bias) cancel in the spatial softmax; in the temporal logits they sum with
        weights sum_p a = 1."""
        query_s = self.spatial_query(text) @ self.spatial_key.weight  # (B, S, W)
        queries = torch.cat([query_s, query_t], dim=1) @ encoder.in_proj.weight  # (B, 2S, D) on raw patches
        raw = torch.einsum("bqd,bfpd->bqfp", queries, patches)
        steps = query_s.shape[1]
        spatial_position = encoder.spatial_position  # (P, W)
        spatial_logits = raw[:, :steps] + (query_s @ spatial_position.T)[:, :, None, :]
        spatial = (spatial_logits * clamped_scale(self.spatial_log_scale)).softmax(-1) * mask.unsqueeze(-1)
        per_patch = raw[:, steps:] + (query_t @ spatial_position.T)[:, :, None, :]
        frame_terms = query_t @ (encoder.temporal_position[:patches.shape[1]] + encoder.in_proj.bias).T  # (B, S, F)
        return spatial, (spatial * per_patch).sum(-1) + frame_terms * mask

    @staticmethod
    def _patch_values(attention: Tensor, spatial: Tensor, patches: Tensor, encoder: VideoEncoder) -> Tensor:
        """sum_fp A_f a(p|f) x_fp (B, S, W) from the raw patches: in_proj of the pooled patch (the joint
        weights sum to 1), plus the pooled spatial and temporal positions."""
        joint = attention.unsqueeze(-1) * spatial  # (B, S, F, P)
        pooled_raw = torch.einsum("bsfp,bfpd->bsd", joint, patches)
        positions = joint.sum(2) @ encoder.spatial_position + attention @ encoder.temporal_position[:patches.shape[1]]
        return encoder.in_proj(pooled_raw) + positions


class PatchStepProbe(nn.Module):
    """[ours] The patch-level grounding loss's reader (HeadConfig.patch_grounding): step logits of a patch
    token, <norm x, norm w_k> * scale, (..., D) -> (..., S). The rows w_k start as the steps' CLIP texts, so
    it starts as CLIP's patch-to-text similarity. Used by the loss only.
    """

    def __init__(self, step_text: Tensor, init_temperature: float):
        super().__init__()
        self.weight = nn.Parameter(F.normalize(step_text.detach().float(), dim=-1).clone())
        self.log_scale = logit_scale_parameter(init_temperature)

    def forward(self, tokens: Tensor) -> Tensor:
        return F.normalize(tokens, dim=-1) @ F.normalize(self.weight, dim=-1).T * clamped_scale(self.log_scale)


def static_split(x: Tensor, frame_mask: Tensor) -> Tensor:
    """x minus its mean over the video's valid frames (per patch position for (B, F, P, D)): the dynamic part.

    [ours] Background, attire and lighting are the same in every frame, so they live in the mean; what is
    left changes over time (the action). Padded frames become 0."""
    valid = safe_frame_mask(frame_mask).to(x.dtype)
    weights = valid.view(*valid.shape, *([1] * (x.dim() - 2)))
    mean = (x * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1.0)
    return (x - mean) * weights


def frame_deviations(frame_features: "np.ndarray", frame_mask: "np.ndarray") -> "np.ndarray":
    """Valid rows of (frame − its video's mean frame), (n, D) float32 numpy: the sample dictionary's input."""
    feats = np.asarray(frame_features, np.float32)
    mask = np.asarray(frame_mask, bool)
    safe = mask | ~mask.any(1, keepdims=True)
    means = (feats * safe[..., None]).sum(1, keepdims=True) / safe.sum(1, keepdims=True)[..., None]
    return (feats - means)[mask]

