"""The mapper stage: preprocessed frames of several videos encoded together, `batch_size` frames at a time.

A video's frames may span batches; a video is complete once all its frames are encoded. An encoder
error (e.g. out of memory) fails the videos of that batch, and the run goes on.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmdcl.core.errors import one_line
from .datasets.base import VideoItem
from .decode_pool import DecodedClip


@dataclass(eq=False)  # compared by identity: fields hold arrays
class PendingVideo:
    """A decoded video whose frames are being encoded."""

    item: VideoItem
    clip: DecodedClip
    pixels: Any  # (V, 3, S, S) preprocessed tensor, dropped once encoded
    features: np.ndarray  # (V, D) float32
    patches: np.ndarray | None  # (V, G*G, D) float32
    encoded: int = 0  # frames encoded so far


class BatchEncoder:
    """Collects preprocessed frames of several videos and encodes them `batch_size` frames at a time."""

    def __init__(self, encoder, batch_size: int, patch_grid: int, patch_layer: int = -1):
        self.encoder = encoder
        self.batch_size = batch_size
        self.patch_grid = patch_grid
        self.patch_layer = patch_layer  # the transformer block whose patch tokens are stored (models.py)
        self.queue: deque[PendingVideo] = deque()
        self.queued_frames = 0
        self.seconds = 0.0

    def add_clip(self, item: VideoItem, clip: DecodedClip, pixels: Any) -> None:
        """Queue the preprocessed frames (V, 3, S, S) of a decoded video for encoding."""
        count, dim = len(pixels), int(self.encoder.embed_dim)
        cells = self.patch_grid * self.patch_grid
        self.add(PendingVideo(item=item, clip=clip, pixels=pixels, features=np.zeros((count, dim), np.float32),
                              patches=np.zeros((count, cells, dim), np.float32) if cells else None))

    def add(self, pending: PendingVideo) -> None:
        self.queue.append(pending)
        self.queued_frames += len(pending.features)

    def ready(self) -> bool:
        return self.queued_frames >= self.batch_size

    def encode_batch(self) -> tuple[list[PendingVideo], list[tuple[PendingVideo, str]]]:
        """Encode up to `batch_size` queued frames; return (videos now complete, videos that failed)."""
        import torch

        segments: list[tuple[PendingVideo, int, int]] = []
        room = self.batch_size
        for pending in self.queue:
            take = min(room, len(pending.features) - pending.encoded)
            segments.append((pending, pending.encoded, take))
            room -= take
            if room == 0:
                break
        start = time.perf_counter()
        try:
            pixels = torch.cat([p.pixels[s:s + n] for p, s, n in segments])
            out = (self.encoder.encode_frames(pixels, patch_grid=self.patch_grid, patch_layer=self.patch_layer)
                   if self.patch_grid > 0 else self.encoder.encode_frames(pixels))
            features, patches = out if self.patch_grid > 0 else (out, None)
            features = _as_numpy(features)
            patches = _as_numpy(patches) if patches is not None else None
            if not np.isfinite(features).all() or (patches is not None and not np.isfinite(patches).all()):
                raise FloatingPointError("encoder produced NaN/inf features")
        except Exception as exc:  # e.g. out of memory: fail the videos of this batch, keep going
            error = one_line(exc)
            failed = []
            for pending, _, _ in segments:
                if pending in self.queue:
                    self.queue.remove(pending)
                    self.queued_frames -= len(pending.features) - pending.encoded
                    failed.append((pending, error))
            self.seconds += time.perf_counter() - start
            return [], failed
        self.seconds += time.perf_counter() - start
        row = 0
        for pending, s, n in segments:
            pending.features[s:s + n] = features[row:row + n]
            if patches is not None:
                pending.patches[s:s + n] = patches[row:row + n]
            pending.encoded += n
            row += n
        self.queued_frames -= row
        complete = []
        while self.queue and self.queue[0].encoded == len(self.queue[0].features):
            done = self.queue.popleft()
            done.pixels = None
            complete.append(done)
        return complete, []


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)

