"""One video -> the rows a shard would hold for it, built from the extraction's own stages.

Prediction on new videos must see features exactly like those a head was trained on: the same
sampler, decoder choice, preprocessing, encoder and stored padding/precision. Everything here is
the run's own code (`decode_task`, `BatchEncoder`, `shard_sink.stored_rows`); nothing is re-derived.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .batch_encoder import BatchEncoder
from .datasets.base import VideoItem
from .decode_pool import DecodeFailure, DecodeSettings, DecodeTask, decode_task
from .decoders import BACKENDS, backend_available
from .sampler import FrameSampler
from .shard_sink import _pad_rows, stored_rows


@dataclass
class VideoRows:
    """One video as a shard stores it: F rows, padding repeating the last valid one."""

    features: np.ndarray  # (F, D) float16
    patches: np.ndarray | None  # (F, G*G, D) float16 when the shard has a patch grid
    mask: np.ndarray  # (F,) bool, False on padded rows
    timestamps_ms: np.ndarray  # (F,) float64
    backend: str  # the decoder that served the video


def decode_settings(provenance: Mapping[str, Any], encoder) -> DecodeSettings:
    """How a shard with these attributes decoded its videos: its sampler and frames, its decoder when
    installed here (else each video's per-container default), with fallback."""
    sampler = FrameSampler.from_provenance(provenance.get("sampler") or {}, int(provenance["frames"]))
    backend: str | None = str(provenance.get("decoder") or "")
    if backend not in BACKENDS or not backend_available(backend):
        backend = None  # "auto" (per container), or not installed here
    return DecodeSettings(sampler=sampler, image_size=encoder.image_size, resize_mode=encoder.resize_mode,
                          backend=backend, fallback=True)


def video_rows(path: str | Path, encoder, settings: DecodeSettings, patch_grid: int = 0,
               preprocess=None, patch_layer: int = -1) -> VideoRows | DecodeFailure:
    """Decode, preprocess and encode one video as an extraction run would store it; a DecodeFailure when
    it cannot be decoded. `preprocess`: a `FramePreprocessor` to reuse (one is built from `encoder`)."""
    if preprocess is None:
        from .preprocess import FramePreprocessor

        preprocess = FramePreprocessor.from_encoder(encoder, device=getattr(encoder, "device", None))
    path = Path(path)
    clip = decode_task(DecodeTask(0, path.stem, str(path)), settings)
    if isinstance(clip, DecodeFailure):
        return clip
    batcher = BatchEncoder(encoder, batch_size=len(clip.frames), patch_grid=patch_grid, patch_layer=patch_layer)
    batcher.add_clip(VideoItem(path.stem, str(path), "", -1), clip, preprocess(clip.frames))
    complete, failed = batcher.encode_batch()
    if failed:
        raise RuntimeError(f"{path}: encoding failed ({failed[0][1]})")
    video, mask = complete[0], clip.sampled.mask.astype(bool)
    return VideoRows(features=stored_rows(video.features, mask),
                     patches=stored_rows(video.patches, mask) if video.patches is not None else None,
                     mask=mask, timestamps_ms=_pad_rows(np.asarray(clip.timestamps_ms, np.float64), mask),
                     backend=clip.backend)
