"""decord backend: fast batched seeking (wheels for Linux x86_64 and Windows only; unmaintained).

decord mis-decodes rotated videos, so it refuses them (PyAV serves). Its `VideoReader` is opened with
`num_threads=threads` (1 by default): see docs/BENCHMARKS.md on why one thread per decode worker.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cmdcl.core.errors import one_line
from .base import (SizeSpec, VideoDecodeError, VideoDecoder, VideoMeta, VideoOpenError,
                   _check_indices, _resolve_size)
from .probe import _check_path, _mp4_hint, _probe, _truncation


def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


class DecordDecoder(VideoDecoder):
    """decord's VideoReader with decoder-side resize; `get_batch` seeks between the wanted frames."""

    name = "decord"

    def __init__(self, threads: int = 1):
        self.threads = threads
        self._reader = None

    @classmethod
    def available(cls) -> bool:
        return decord_available()

    @staticmethod
    def version() -> str:
        import decord

        return decord.__version__

    def open(self, path: str | Path, size: SizeSpec = None) -> VideoMeta:
        import decord

        path = str(path)
        _check_path(path)
        try:
            header = _probe(path)
            if header.rotation:
                # decord applies the display matrix into a buffer of the unrotated size: it returns
                # scrambled frames (or fails) for rotated videos. PyAV decodes them correctly.
                raise VideoOpenError(f"decord cannot decode videos with rotation metadata "
                                     f"({header.rotation} degrees)")
            height, width = header.height, header.width
            out_h, out_w = _resolve_size(size, height, width)
            # decord picks its own size when passed -1; pass both only when resizing.
            kwargs = {} if (out_h, out_w) == (height, width) else {"height": out_h, "width": out_w}
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=self.threads, **kwargs)
            num_frames = len(self._reader)
            fps = float(self._reader.get_avg_fps())
            duration = float(self._reader.get_frame_timestamp(num_frames - 1)[1]) if num_frames else 0.0
        except VideoOpenError:
            raise
        except Exception as exc:  # decord raises bare DECORDError/RuntimeError for everything
            raise VideoOpenError(one_line(exc) + _mp4_hint(path)) from exc
        if num_frames <= 0:
            raise VideoOpenError("decord found no frames")
        self.meta = VideoMeta(num_frames=num_frames, fps=fps, duration=duration, height=height, width=width,
                              out_height=out_h, out_width=out_w, rotation=header.rotation, backend=self.name,
                              truncated=_truncation(num_frames, duration, header.declared_frames,
                                                    header.declared_duration))
        return self.meta

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        if self._reader is None or self.meta is None:
            raise RuntimeError("open() a video before read()")
        idx = _check_indices(indices, self.meta.num_frames)
        if not len(idx):
            return np.zeros((0, self.meta.out_height, self.meta.out_width, 3), np.uint8), np.zeros(0)
        try:
            frames = self._reader.get_batch(idx.tolist()).asnumpy()
            timestamps_ms = np.asarray(self._reader.get_frame_timestamp(idx.tolist()), np.float64)[:, 0] * 1000.0
        except Exception as exc:
            raise VideoDecodeError(one_line(exc)) from exc
        # decord silently returns wrong frames when it cannot trust the container's timestamps
        # (e.g. B-frames in AVI); its timestamps are then garbage, which we can see.
        order = np.argsort(idx, kind="stable")
        if (not np.isfinite(timestamps_ms).all() or timestamps_ms.min() < -1.0
                or (np.diff(timestamps_ms[order]) < 0).any()
                or timestamps_ms.max() > 1000.0 * (self.meta.duration + 1.0)):
            raise VideoDecodeError("decord reports invalid frame timestamps (cannot seek this file reliably)")
        if frames.shape[1:3] != (self.meta.out_height, self.meta.out_width):
            raise VideoDecodeError(f"decord returned frames of size {frames.shape[1:3]}, "
                                   f"expected {(self.meta.out_height, self.meta.out_width)}")
        return np.ascontiguousarray(frames, dtype=np.uint8), timestamps_ms

    def keyframes(self) -> np.ndarray:
        if self._reader is None:
            raise RuntimeError("open() a video before keyframes()")
        return np.asarray(self._reader.get_key_indices(), np.int64)

    def close(self) -> None:
        self._reader = None

