"""The fallback policy, in one place: which backend serves a video when the chosen one cannot.

A `FallbackDecoder` tries the backends of its `order` in turn: a backend that cannot open the file,
or cannot read the wanted frames, hands the video to the next one. `read_sampled` adds the last
resort: when no backend reads the sampled frames (corrupt data, a cut file), PyAV finds the frames
that do decode cleanly and F are sampled among them (the read is then "salvaged", with a note).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cmdcl.core.errors import one_line
from .base import (FrameCountChanged, SizeSpec, VideoDecodeError, VideoDecoder, VideoMeta,
                   VideoOpenError)

# Backends a video falls back through, in order, after the chosen one. PyAV is last: it reads every
# container, and only it can salvage a partly corrupt file.
FALLBACK_ORDER: tuple[str, ...] = ("decord", "pyav")


def fallback_order(backend: str) -> list[str]:
    """`backend`, then the backends after it in `FALLBACK_ORDER` (all of them for one not listed)."""
    later = FALLBACK_ORDER[FALLBACK_ORDER.index(backend) + 1:] if backend in FALLBACK_ORDER else FALLBACK_ORDER
    return [backend, *later]


@dataclass
class SampledRead:
    """The sampled frames of one video and how they were obtained."""

    sampled: object  # sampler.SampledFrames: indices + mask
    frames: np.ndarray  # (V, h, w, 3) uint8, the valid sampled frames
    timestamps_ms: np.ndarray  # (V,)
    meta: VideoMeta
    backend: str  # the backend that served the frames
    fallback_reason: str | None  # why the first backend did not serve, when it did not
    salvaged: str | None = None  # what was lost, when the frames were sampled among the clean ones


class FallbackDecoder(VideoDecoder):
    """The backends of `order` in turn, on any failure to open or read. `name` says which one served."""

    def __init__(self, threads: int = 1, order: Sequence[str] = ("decord", "pyav")):
        self.threads = threads
        self.order = list(order)
        self.active: VideoDecoder | None = None
        self.fallback_reason: str | None = None  # why the first backend was not used, when it was not
        self._path: str | None = None
        self._size: SizeSpec = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.active.name if self.active is not None else self.order[0]

    @staticmethod
    def version() -> str:
        from .backends import BACKENDS, backend_version

        return " / ".join(f"{name} {backend_version(name)}" for name in BACKENDS)

    def open(self, path: str | Path, size: SizeSpec = None) -> VideoMeta:
        self._path, self._size = str(path), size
        return self._open_from(0)

    def _open_from(self, position: int) -> VideoMeta:
        """Open with the backends from `order[position]` on; the last one's error propagates."""
        from .backends import backend_available, make_decoder

        for name in self.order[position:-1]:
            if not backend_available(name):
                self._note(f"{name} not installed")
                continue
            decoder = make_decoder(name, self.threads)
            try:
                self.meta = decoder.open(self._path, self._size)
                self.active = decoder
                return self.meta
            except VideoOpenError as exc:
                decoder.close()
                self._note(f"{name} open: {exc}")
        self.active = make_decoder(self.order[-1], self.threads)
        self.meta = self.active.open(self._path, self._size)
        return self.meta

    def _note(self, reason: str) -> None:
        self.fallback_reason = self.fallback_reason or reason  # the first backend's reason is the one reported

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        if self.active is None:
            raise RuntimeError("open() a video before read()")
        try:
            return self.active.read(indices)
        except VideoDecodeError as exc:
            position = self.order.index(self.active.name)
            if position == len(self.order) - 1:
                raise
            self.active.close()
            failed, counted = self.active.name, self.meta.num_frames
            self._note(f"{failed} read: {exc}")
            self._open_from(position + 1)
            if self.meta.num_frames != counted:
                # The caller sampled indices from the first count; they mean different frames now.
                raise FrameCountChanged(f"{self.fallback_reason}; {self.active.name} counts {self.meta.num_frames} "
                                        f"frames, {failed} {counted}: re-sample and read again") from exc
            return self.read(indices)

    def read_sampled(self, sampler, salvage: bool = True) -> SampledRead:
        """Sample from the video's frame count and read those frames; with `salvage`, a video whose sampled
        frames do not decode is sampled again among its cleanly decodable frames (PyAV). Raises
        VideoDecodeError when nothing can be read."""
        if self.active is None:
            raise RuntimeError("open() a video before read_sampled()")
        primary = self.order[0]
        try:
            sampled, frames, timestamps = self._read_sampled(sampler)
        except VideoDecodeError as exc:
            if not salvage:
                raise
            reason = self.fallback_reason or f"{primary} read: {exc}"
            self.close()
            from .pyav import PyAVDecoder

            self.active = PyAVDecoder(self.threads)
            self.meta = self.active.open(self._path, self._size)
            sampled, frames, timestamps, salvaged = _salvage(self.active, sampler, exc)
            return SampledRead(sampled, frames, timestamps, self.meta, self.name,
                               reason if self.name != primary else None, salvaged)
        return SampledRead(sampled, frames, timestamps, self.meta, self.name,
                           self.fallback_reason if self.name != primary else None)

    def keyframes(self) -> np.ndarray:
        if self.active is None:
            raise RuntimeError("open() a video before keyframes()")
        return self.active.keyframes()

    def _sample(self, sampler):
        keyframes = self.keyframes() if getattr(sampler, "seek", "exact") == "keyframe" else None
        return sampler.sample_video(self.meta.num_frames, self.meta.fps, self.meta.duration, keyframes)

    def _read_sampled(self, sampler):
        sampled = self._sample(sampler)
        try:
            frames, timestamps = self.read(sampled.valid)
        except FrameCountChanged:  # the next backend counts differently: sample again from its count
            sampled = self._sample(sampler)
            frames, timestamps = self.read(sampled.valid)
        return sampled, frames, timestamps

    def close(self) -> None:
        if self.active is not None:
            self.active.close()


def _salvage(decoder, sampler, error: Exception) -> tuple[object, np.ndarray, np.ndarray, str]:
    """Sample among the frames that decode cleanly; raise VideoDecodeError when there are none."""
    meta = decoder.meta
    available = decoder.decodable_indices()
    reason = one_line(error, limit=160, kind=False)
    if not len(available):
        raise VideoDecodeError(f"{reason}; no frame decodes cleanly")
    sampled = sampler.sample_among(available, meta.num_frames, meta.fps, meta.duration)
    frames, timestamps = decoder.read_tolerant(sampled.valid)
    return sampled, frames, timestamps, f"{len(available)} of {meta.num_frames} frames decode cleanly ({reason})"
