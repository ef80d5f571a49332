"""Visual causal intervention (VCI): video encoder, spatio-temporal attention, front-door mediator (docs/METHOD.md).

    V  = VideoEncoder(cached frame [+ patch] features)       learnable projection + position embeddings
    V_s = SpatioTemporalAttention^H(V)                       temporal, or divided space-then-time
    A  = softmax_L'( norm(T') norm(V_s)^T * scale )          fine-grained info aware (padded frames: 0)
    M  = A V_s                                               in-sample mediator, P(m | v)
    C  = softmax_K( norm(W_q T') norm(z)^T * scale ) z       cross-sample term over a memory z of K
                                                             prototypes of V_s summaries (other videos)
    V' = [M ; C] W_V     or  [M ; T'] W_V  when frontdoor_cross = "none"

Deviation from the paper (documented in docs/METHOD.md): the paper trains a video encoder independent
of the VLM on pixels; we project frozen cached CLIP frame (and patch) features.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import check_choice
from .textual import MASKED_LOGIT, build_frame_dictionary, clamped_scale, logit_scale_parameter
from .textual import near_identity_approximator


class VideoEncoder(nn.Module):
    """Learnable projection of cached CLIP features to `width`, plus temporal (and spatial) positions.

    The projection starts as a scaled semi-orthogonal map whose transpose is `to_embedding`, so at
    initialisation to_embedding(encoder(x)) = x (for width >= D) and the head starts in CLIP space.
    With patches and frame_context, each patch token also receives its frame's projected CLIP embedding
    (the old behaviour); without, a patch token is the patch, its spatial position and its time.
    """

    def __init__(self, embed_dim: int, width: int, num_frames: int, patches_per_frame: int = 0,
                 dropout: float = 0.0, frame_context: bool = True):
        super().__init__()
        self.frame_context = frame_context
        self.embed_dim, self.width, self.num_frames = embed_dim, width, num_frames
        self.in_proj = nn.Linear(embed_dim, width)
        self.to_embedding = nn.Linear(width, embed_dim)  # back to the text space for the mediator
        basis = torch.empty(width, embed_dim)
        nn.init.orthogonal_(basis)
        gain = math.sqrt(embed_dim)  # unit-scale token entries from L2-normalised CLIP features
        with torch.no_grad():
            self.in_proj.weight.copy_(basis * gain)
            self.to_embedding.weight.copy_(basis.T / gain)
            self.in_proj.bias.zero_()
            self.to_embedding.bias.zero_()
        self.temporal_position = nn.Parameter(torch.randn(num_frames, width) * 0.02)
        self.spatial_position = nn.Parameter(torch.randn(patches_per_frame, width) * 0.02) \
            if patches_per_frame > 0 else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: Tensor, patches: Tensor | None = None) -> Tensor:
        """features (B, F, D), F <= num_frames (--frames subsampling happens in FeatureData, before the
        head); patches (B, F, P, D) or None. Returns tokens (B, F, W), or (B, F, P, W) with patches.
        """
        frames = features.shape[1]
        if frames > self.num_frames:
            raise ValueError(f"features have {frames} frames but the encoder was built for {self.num_frames}")
        tokens = self.in_proj(features) + self.temporal_position[:frames]
        if patches is not None:
            if self.spatial_position is None or patches.shape[2] != self.spatial_position.shape[0]:
                raise ValueError(f"patches have {patches.shape[2]} tokens per frame; the encoder was built for "
                                 f"{0 if self.spatial_position is None else self.spatial_position.shape[0]}")
            context = tokens if self.frame_context else self.temporal_position[:frames]
            tokens = self.in_proj(patches) + self.spatial_position + context.unsqueeze(-2)
        return self.dropout(tokens)

    def frame_tokens(self, features: Tensor) -> Tensor:
        """Frame tokens (B, F, W) alone: the input of the temporal stack beside the patch mediator."""
        return self.dropout(self.in_proj(features) + self.temporal_position[:features.shape[1]])

    def patch_tokens(self, patches: Tensor) -> Tensor:
        """Patch tokens (B, F, P, W): patch + spatial position + time, no whole-frame embedding."""
        if self.spatial_position is None or patches.shape[2] != self.spatial_position.shape[0]:
            raise ValueError(f"patches have {patches.shape[2]} tokens per frame; the encoder was built for "
                             f"{0 if self.spatial_position is None else self.spatial_position.shape[0]}")
        position = self.spatial_position + self.temporal_position[:patches.shape[1], None, :]
        return self.dropout(self.in_proj(patches) + position)


def safe_frame_mask(frame_mask: Tensor) -> Tensor:
    """A mask with at least one valid frame per video (an all-padding row would make softmax NaN)."""
    empty = ~frame_mask.any(-1, keepdim=True)
    first = torch.zeros_like(frame_mask)
    first[..., 0] = True
    return frame_mask | (empty & first)


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        h = self.norm(x)
        return self.attn(h, h, h, key_padding_mask=key_padding_mask, need_weights=False)[0]


class SpatioTemporalBlock(nn.Module):
    """Pre-LN transformer block: [spatial attention within each frame,] temporal attention, MLP."""

    def __init__(self, width: int, heads: int, dropout: float, residual_std: float, divided: bool = False):
        super().__init__()
        self.spatial = _Attention(width, heads, dropout) if divided else None
        self.temporal = _Attention(width, heads, dropout)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)
        # Small residual branches (GPT-2 style) so the stack starts close to the identity.
        residual_layers = [self.temporal.attn.out_proj, self.mlp[2]]
        if self.spatial is not None:
            residual_layers.append(self.spatial.attn.out_proj)
        for layer in residual_layers:
            nn.init.normal_(layer.weight, std=residual_std)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, frame_mask: Tensor) -> Tensor:
        padding = ~safe_frame_mask(frame_mask)
        if x.dim() == 3:  # frame tokens (B, F, W): temporal self-attention
            x = x + self.drop(self.temporal(x, padding))
        else:  # patch tokens (B, F, P, W): divided attention, space then time
            if self.spatial is None:
                raise ValueError("patch tokens need a block built with divided=True")
            b, f, p, w = x.shape
            x = x + self.drop(self.spatial(x.reshape(b * f, p, w)).reshape(b, f, p, w))
            per_patch = x.transpose(1, 2).reshape(b * p, f, w)
            mask = padding.repeat_interleave(p, dim=0)
            x = x + self.drop(self.temporal(per_patch, mask).reshape(b, p, f, w).transpose(1, 2))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class SpatioTemporalAttention(nn.Module):
    """H blocks over the video tokens; H = 0 is the identity (the paper ablates H in {0,...,10}).

    divided=True (patch tokens) adds a spatial attention per block; frame tokens need only temporal.
    """

    def __init__(self, width: int, heads: int, layers: int, dropout: float = 0.0, divided: bool = False):
        super().__init__()
        if layers > 0 and width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        residual_std = 0.02 / math.sqrt(2 * max(layers, 1))
        self.blocks = nn.ModuleList(
            SpatioTemporalBlock(width, heads, dropout, residual_std, divided) for _ in range(layers))

    def forward(self, tokens: Tensor, frame_mask: Tensor) -> Tensor:
        for block in self.blocks:
            tokens = block(tokens, frame_mask)
        return tokens


def masked_softmax(logits: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis with exact zeros where mask is False."""
    return logits.masked_fill(~mask, MASKED_LOGIT).softmax(-1) * mask


class FrontdoorMediator(nn.Module):
    """Fine-grained info aware mediator M, cross-sample term C, approximator V' (docs/METHOD.md, VCI).

    forward(text (B, S, D) or (S, D), tokens V_s (B, F, D) or (B, F, P, D), frame_mask (B, F)) ->
    (V' (B, S, D), attention over frames (B, S, F), spatial attention (B, S, F, P) or None).

    With patches the attention over the F x P tokens is factorised: a spatial softmax over the P
    patches of each frame, whose pooled token u_f is then scored by a temporal softmax over frames;
    the joint A(f, p) = A(f) a(p | f) is a distribution over all tokens and A(f) is its frame marginal.
    """

    def __init__(self, dim: int, cross: str = "dictionary", memory_size: int = 32, init_temperature: float = 0.07):
        super().__init__()
        check_choice("frontdoor_cross", cross)
        self.cross = cross
        self.log_scale = logit_scale_parameter(init_temperature)
        self.approximator = near_identity_approximator(dim, identity=True)  # W_V, V' ~ M at init
        if cross == "dictionary":
            # Cross-sample attention has its own query map (as in causal-attention front-door models).
            self.cross_query = nn.Linear(dim, dim, bias=False)
            nn.init.eye_(self.cross_query.weight)
            self.register_buffer("memory", torch.zeros(memory_size, dim))  # zeros until fitted: C = 0
            self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def set_memory(self, prototypes: Tensor) -> None:
        prototypes = torch.as_tensor(prototypes)
        if self.cross != "dictionary" or prototypes.shape != self.memory.shape:
            raise ValueError(f"memory must be {tuple(getattr(self, 'memory', torch.empty(0)).shape)} "
                             f"with frontdoor_cross='dictionary', got {tuple(prototypes.shape)}")
        self.memory.copy_(prototypes)
        self.fitted.fill_(True)

    @torch.no_grad()
    def update_memory(self, summaries: Tensor, momentum: float = 0.9, seed: int = 0) -> None:
        """Refresh the memory from video summaries (N, D): KMeans when empty, else EMA.

        EMA: each summary is assigned to its nearest prototype (cosine); each prototype that received
        summaries moves to momentum * old + (1 - momentum) * mean(assigned). Others are kept.
        """
        if self.cross != "dictionary":
            return
        summaries = summaries.detach().to(self.memory)
        if not bool(self.fitted):
            prototypes, _ = build_frame_dictionary(summaries.cpu().numpy(), self.memory.shape[0], seed)
            self.set_memory(torch.from_numpy(prototypes))
            return
        nearest = (F.normalize(summaries, dim=-1) @ F.normalize(self.memory, dim=-1).T).argmax(-1)
        sums = torch.zeros_like(self.memory).index_add_(0, nearest, summaries)
        counts = torch.bincount(nearest, minlength=self.memory.shape[0]).to(sums)
        hit = counts > 0
        means = sums[hit] / counts[hit, None]
        self.memory[hit] = momentum * self.memory[hit] + (1 - momentum) * means

    def cross_term(self, text: Tensor) -> Tensor:
        """C = softmax_K(norm(W_q T') norm(z)^T * scale) z, same leading shape as text."""
        logits = F.normalize(self.cross_query(text), dim=-1) @ F.normalize(self.memory, dim=-1).T
        return (logits * clamped_scale(self.log_scale)).softmax(-1) @ self.memory

    def forward(self, text: Tensor, tokens: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        batch = tokens.shape[0]
        if text.dim() == 2:
            text = text.expand(batch, *text.shape)
        mask = safe_frame_mask(frame_mask)[:, None, :]  # (B, 1, F)
        scale = clamped_scale(self.log_scale)
        query = F.normalize(text, dim=-1)
        spatial = None
        if tokens.dim() == 3:
            logits = torch.einsum("bsd,bfd->bsf", query, F.normalize(tokens, dim=-1)) * scale
            attention = masked_softmax(logits, mask)
            mediator = torch.einsum("bsf,bfd->bsd", attention, tokens)
        else:
            spatial_logits = torch.einsum("bsd,bfpd->bsfp", query, F.normalize(tokens, dim=-1)) * scale
            spatial = spatial_logits.softmax(-1) * mask.unsqueeze(-1)
            pooled = torch.einsum("bsfp,bfpd->bsfd", spatial, tokens)  # u_f, one per (text, frame)
            logits = torch.einsum("bsd,bsfd->bsf", query, F.normalize(pooled, dim=-1)) * scale
            attention = masked_softmax(logits, mask)
            mediator = torch.einsum("bsf,bsfd->bsd", attention, pooled)
        context = self.cross_term(text) if self.cross == "dictionary" else text
        return self.approximator(torch.cat([mediator, context], dim=-1)), attention, spatial


def mean_over_valid_frames(x: Tensor, frame_mask: Tensor) -> Tensor:
    """Mean over the valid frames of (B, F, ...) -> (B, ...); a video without valid frames gives zeros."""
    weights = frame_mask.to(x.dtype)
    weights = weights.view(*weights.shape, *([1] * (x.dim() - 2)))
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def masked_mean(tokens: Tensor, frame_mask: Tensor) -> Tensor:
    """Mean of (B, F, D) or (B, F, P, D) tokens over valid frames (and all patches): (B, D).
    An all-padding video falls back to its first frame (safe_frame_mask), as attention does."""
    if tokens.dim() == 4:
        tokens = tokens.mean(2)
    return mean_over_valid_frames(tokens, safe_frame_mask(frame_mask))


def video_means(frame_features: np.ndarray, frame_mask: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Per-video mean of the valid cached frames, (N, D) float32, computed in chunks (fp16 inputs)."""
    out = np.empty((frame_features.shape[0], frame_features.shape[-1]), np.float32)
    for start in range(0, len(out), chunk):
        feats = np.asarray(frame_features[start:start + chunk], np.float32)
        mask = np.asarray(frame_mask[start:start + chunk], bool)
        mask = mask | ~mask.any(1, keepdims=True)  # an all-padding row averages everything
        out[start:start + chunk] = (feats * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return out
