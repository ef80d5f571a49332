"""Textual causal intervention (TCI): debias the atomic-action text embeddings (docs/METHOD.md).

    S  = softmax_L( norm(T) norm(V_P)^T * scale )            cross-modal bias aware affinity (N x L)
    B  = S V_P                                               bias proxy, bias_source="video"
    B  = sum_k softmax_k(norm(T) norm(z_k)^T * scale) P(z_k) z_k   bias_source="dictionary" | "prior"
         ("dictionary": z = KMeans of training frames; "prior": z = KMeans of the videos' static parts,
          their mean frames, i.e. the confounder; both back-door: B, hence T', does not depend on the video)
    T' = T + [T ; B] W_B   (residual)   or   [T ; B] W_B

`scale` is a learnable CLIP-style logit scale (1 / tau). With bias_estimator="sinkhorn" the soft
assignment S is replaced by the row-normalised entropic optimal-transport plan on cost -log S, which
spreads the mass of frames (or prototypes) that every text is drawn to.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import check_choice

MAX_LOGIT_SCALE = 100.0  # CLIP's clamp on the learnable inverse temperature
MASKED_LOGIT = -1e4  # finite "minus infinity": keeps softmax / logsumexp free of NaN on padded frames


def logit_scale_parameter(init_temperature: float) -> nn.Parameter:
    """A learnable log inverse temperature, as in CLIP."""
    return nn.Parameter(torch.tensor(math.log(1.0 / init_temperature), dtype=torch.float32))


def clamped_scale(log_scale: Tensor) -> Tensor:
    return log_scale.exp().clamp(max=MAX_LOGIT_SCALE)


def sinkhorn_plan(log_affinity: Tensor, iters: int, eps: float, col_weights: Tensor | None = None) -> Tensor:
    """Entropic optimal-transport plan between N rows and L columns, in the log domain.

    The cost is -log_affinity, so the Gibbs kernel is exp(log_affinity / eps). Row marginals are
    uniform (1/N); column marginals are `col_weights` normalised to sum to 1 (uniform when None; a
    zero weight removes a column, e.g. a padded frame). Iterations end with the column update, so
    column sums are exact and row sums converge with `iters`.

    log_affinity: (..., N, L); col_weights: (..., L) non-negative. Returns the plan, (..., N, L).
    """
    log_kernel = log_affinity.float() / eps
    n, l = log_kernel.shape[-2:]
    if col_weights is None:
        col_weights = torch.ones(log_kernel.shape[:-2] + (l,), device=log_kernel.device)
    col_weights = col_weights.float().expand(log_kernel.shape[:-2] + (l,))
    log_b = torch.log(col_weights / col_weights.sum(-1, keepdim=True))  # -inf on removed columns
    log_a = -math.log(n)
    log_v = torch.where(col_weights > 0, torch.zeros_like(log_b), log_b)
    log_u = torch.zeros(log_kernel.shape[:-1], device=log_kernel.device)
    for _ in range(max(1, iters)):
        log_u = log_a - torch.logsumexp(log_kernel + log_v.unsqueeze(-2), dim=-1)
        log_v = log_b - torch.logsumexp(log_kernel + log_u.unsqueeze(-1), dim=-2)
    return torch.exp(log_kernel + log_u.unsqueeze(-1) + log_v.unsqueeze(-2))


class SinkhornPlan(nn.Module):
    """`sinkhorn_plan` with its iteration count and entropic regulariser fixed at construction."""

    def __init__(self, iters: int = 50, eps: float = 0.1):  # HeadConfig.sinkhorn_iters
        super().__init__()
        self.iters, self.eps = iters, eps

    def forward(self, log_affinity: Tensor, col_weights: Tensor | None = None) -> Tensor:
        return sinkhorn_plan(log_affinity, self.iters, self.eps, col_weights)

    def extra_repr(self) -> str:
        return f"iters={self.iters}, eps={self.eps}"


def build_frame_dictionary(frames: np.ndarray, k: int, seed: int, n_init: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """K confounder prototypes of frame features and their priors P(z_k) (cluster frequencies).

    Uses scikit-learn KMeans (MiniBatchKMeans above 20k rows). Always returns exactly k prototypes:
    with fewer distinct rows than k, the missing prototypes repeat existing ones with prior 0, so
    buffers keep a fixed shape. Returns (prototypes (k, D) float32, priors (k,) float32, sum 1).
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 2 or len(frames) == 0:
        raise ValueError(f"build_frame_dictionary needs a non-empty (N, D) array, got shape {frames.shape}")
    distinct = len(np.unique(frames, axis=0)) if len(frames) <= 4 * k else len(frames)
    k_fit = max(1, min(k, distinct))
    if len(frames) > 20_000:
        km = MiniBatchKMeans(n_clusters=k_fit, random_state=seed, n_init=n_init, batch_size=4096)
    else:
        km = KMeans(n_clusters=k_fit, random_state=seed, n_init=n_init)
    assignment = km.fit_predict(frames)
    prototypes = km.cluster_centers_.astype(np.float32)
    priors = np.bincount(assignment, minlength=k_fit).astype(np.float32)
    priors /= priors.sum()
    if k_fit < k:  # pad with zero-prior copies
        repeat = np.arange(k - k_fit) % k_fit
        prototypes = np.concatenate([prototypes, prototypes[repeat]], axis=0)
        priors = np.concatenate([priors, np.zeros(k - k_fit, np.float32)])
    return prototypes, priors


def near_identity_approximator(dim: int, identity: bool) -> nn.Linear:
    """W in R^{2D x D} acting on [X ; Y]: [I ; 0] + small noise when `identity`, small noise otherwise.

    Either way the intervened embedding starts close to the frozen CLIP one (X, or X + small), so the
    head starts from CLIP's zero-shot geometry and learns the correction.
    """
    layer = nn.Linear(2 * dim, dim, bias=False)
    nn.init.normal_(layer.weight, std=0.1 / math.sqrt(2 * dim))
    if identity:
        with torch.no_grad():
            layer.weight[:, :dim] += torch.eye(dim)
    return layer


class TextualBackdoor(nn.Module):
    """T' from the learnable atomic-action texts T and a bias proxy B (docs/METHOD.md, "Textual causal intervention").

    forward(frames (B, L, D), frame_mask (B, L)) -> T' of shape (B, S, D) for bias_source="video",
    or (S, D) for "dictionary" / "prior" (the caller broadcasts it over the batch).
    """

    def __init__(
        self,
        step_text: Tensor,
        bias_estimator: str = "attention",
        bias_source: str = "video",
        residual: bool = True,
        dictionary_size: int = 32,
        sinkhorn_iters: int = 50,
        sinkhorn_eps: float = 0.1,
        init_temperature: float = 0.07,
    ):
        super().__init__()
        check_choice("bias_estimator", bias_estimator)
        check_choice("bias_source", bias_source)
        dim = step_text.shape[-1]
        self.bias_estimator, self.bias_source, self.residual = bias_estimator, bias_source, residual
        self.text = nn.Parameter(step_text.detach().float().clone())  # T, initialised from CLIP T0
        self.log_scale = logit_scale_parameter(init_temperature)
        self.sinkhorn = SinkhornPlan(sinkhorn_iters, sinkhorn_eps) if bias_estimator == "sinkhorn" else None
        self.approximator = near_identity_approximator(dim, identity=not residual)  # W_B
        if bias_source != "video":  # "dictionary" (frame prototypes) or "prior" (confounder prototypes)
            self.register_buffer("prototypes", torch.zeros(dictionary_size, dim))
            self.register_buffer("priors", torch.zeros(dictionary_size))  # all-zero until set: B = 0
            self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def set_dictionary(self, prototypes: Tensor, priors: Tensor) -> None:
        """Install the confounder dictionary: prototypes (K, D) and priors P(z_k) (K,)."""
        if self.bias_source == "video":
            raise RuntimeError("set_dictionary needs bias_source='dictionary' or 'prior'")
        prototypes, priors = torch.as_tensor(prototypes), torch.as_tensor(priors)
        if prototypes.shape != self.prototypes.shape or priors.shape != self.priors.shape:
            raise ValueError(f"dictionary must be {tuple(self.prototypes.shape)} + {tuple(self.priors.shape)}, "
                             f"got {tuple(prototypes.shape)} + {tuple(priors.shape)}")
        self.prototypes.copy_(prototypes)
        self.priors.copy_(priors / priors.sum().clamp_min(1e-12))
        self.fitted.fill_(True)

    def affinity(self, frames: Tensor, frame_mask: Tensor) -> Tensor:
        """Cross-modal bias aware assignment of each text over the frames, (B, S, L); rows sum to 1."""
        logits = torch.einsum("sd,bld->bsl", F.normalize(self.text, dim=-1), F.normalize(frames, dim=-1))
        logits = (logits * clamped_scale(self.log_scale)).masked_fill(~frame_mask[:, None, :], MASKED_LOGIT)
        if self.sinkhorn is None:
            weights = logits.softmax(-1)
        else:
            plan = self.sinkhorn(logits.log_softmax(-1), frame_mask.to(logits.dtype))
            weights = plan / plan.sum(-1, keepdim=True).clamp_min(1e-12)
        return weights * frame_mask[:, None, :]  # exact zeros on padded frames

    def dictionary_weights(self) -> Tensor:
        """softmax_k(T z_k^T / tau) P(z_k) (attention) or the prior-marginal OT plan (sinkhorn), (S, K)."""
        logits = F.normalize(self.text, dim=-1) @ F.normalize(self.prototypes, dim=-1).T
        logits = logits * clamped_scale(self.log_scale)
        if not bool(self.fitted):  # no dictionary yet (before fit_dictionaries): no bias proxy
            return torch.zeros_like(logits)
        if self.sinkhorn is None:
            return logits.softmax(-1) * self.priors
        # OT between uniform texts and prototypes weighted by their priors: the plan's columns carry
        # P(z_k), the transport analogue of the prior-weighted expectation.
        plan = self.sinkhorn(logits.log_softmax(-1), self.priors)
        return plan / plan.sum(-1, keepdim=True).clamp_min(1e-12)

    def context_spread(self, text: Tensor) -> Tensor:
        """Mean over the texts (S, D) of the prior-weighted variance over the confounder prototypes of
        cos(text_i, z_k): 0 when each text is equally similar to every context (HeadConfig.tci_debias).
        Zero before the dictionary is fitted, or with bias_source "video" (no prototypes)."""
        if self.bias_source == "video" or not bool(self.fitted):
            return text.sum() * 0.0
        cosine = F.normalize(text, dim=-1) @ F.normalize(self.prototypes, dim=-1).T  # (S, K)
        mean = cosine @ self.priors  # (S,)
        return (((cosine - mean[:, None]) ** 2) @ self.priors).mean()

    def bias_proxy(self, frames: Tensor, frame_mask: Tensor) -> Tensor:
        """B: (B, S, D) from the video's own frames, or (S, D) from the confounder dictionary."""
        if self.bias_source != "video":
            return self.dictionary_weights() @ self.prototypes
        return torch.einsum("bsl,bld->bsd", self.affinity(frames, frame_mask), frames)

    def forward(self, frames: Tensor, frame_mask: Tensor) -> Tensor:
        bias = self.bias_proxy(frames, frame_mask)
        text = self.text.expand(bias.shape[:-2] + self.text.shape)
        correction = self.approximator(torch.cat([text, bias], dim=-1))
        return text + correction if self.residual else correction
