"""Zero-shot pseudo context labels: for each context factor of a feature file's /context group (a scene
vocabulary, lighting, clothing... docs/FORMAT.md "Context vocabularies"), each video's value is the majority
of its frames' zero-shot values (the value whose text feature is most similar to the frame's CLIP embedding),
and its confidence is the share of the video's valid frames that voted for it. A tie goes to the tied value
with the highest mean similarity over the video's frames. Videos without a valid frame get -1 and 0.

They stand in for the true context labels (/confounders) on datasets that have none, for the leakage probe
(evaluate), the context-only baseline and the scene-shifted split (head/confounding/).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmdcl.core.store import FeatureSet

PSEUDO_PREFIX = "pseudo:"  # a pseudo-labelled factor's name beside the true factors: "pseudo:scene"
CHUNK = 512  # videos read and scored at once


@dataclass
class PseudoLabels:
    """Per-video pseudo labels of some videos: columns are the factors."""

    factors: list[str]
    value_names: list[list[str]]  # per factor, the vocabulary (a label indexes it)
    values: np.ndarray  # (n, K) int32, -1 for a video without valid frames
    confidence: np.ndarray  # (n, K) float32 share of valid frames that voted for the value

    @property
    def names(self) -> list[str]:
        """The factors as they sit beside true ones (leakage, reports): pseudo:<factor>."""
        return [PSEUDO_PREFIX + f for f in self.factors]


def zero_shot_votes(features: np.ndarray, mask: np.ndarray, text_features: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(labels (n,) int32, confidence (n,) float32) of videos' frames (n, F, D) with valid frames `mask` (n, F)
    against one factor's text features (V, D): the majority of per-frame zero-shot values."""
    sims = np.asarray(features, np.float32) @ np.asarray(text_features, np.float32).T  # (n, F, V)
    n, _, v = sims.shape
    mask = np.asarray(mask, bool)
    votes = np.zeros((n, v), np.float32)
    rows = np.broadcast_to(np.arange(n)[:, None], mask.shape)
    np.add.at(votes, (rows[mask], sims.argmax(axis=2)[mask]), 1.0)
    valid = mask.sum(axis=1)
    mean_sim = (sims * mask[..., None]).sum(axis=1) / np.maximum(valid, 1)[:, None]
    # Ties between counts broken by the mean similarity, which lies in [-1, 1]: scaled below one vote.
    score = votes + 0.25 * (mean_sim + 1.0) * (votes == votes.max(axis=1, keepdims=True))
    labels = score.argmax(axis=1).astype(np.int32)
    confidence = votes[np.arange(n), labels] / np.maximum(valid, 1)
    labels[valid == 0] = -1
    return labels, np.where(valid > 0, confidence, 0.0).astype(np.float32)


def pseudo_labels(fs: FeatureSet, positions: np.ndarray, factors: list[str] | None = None) -> PseudoLabels | None:
    """Pseudo labels of the videos at `positions` (into `fs.index`) for `factors` (default: every stored
    context factor); None when the file has no /context group."""
    context = fs.context
    factors = list(context) if factors is None else list(factors)
    if not factors:
        return None
    positions = np.asarray(positions, np.int64)
    values = np.full((len(positions), len(factors)), -1, np.int32)
    confidence = np.zeros((len(positions), len(factors)), np.float32)
    for start in range(0, len(positions), CHUNK):
        chunk = positions[start:start + CHUNK]
        features = fs.read_array("features", chunk)
        mask = fs.index["frame_mask"][chunk]
        for j, factor in enumerate(factors):
            values[start:start + len(chunk), j], confidence[start:start + len(chunk), j] = \
                zero_shot_votes(features, mask, context[factor].text_features)
    return PseudoLabels(factors, [list(context[f].names) for f in factors], values, confidence)
