"""The decoder interface every backend implements, its errors, and what it reports about a video.

Rules every backend follows, because users of such tools hit each of them:
- Frames are decoded straight to the size the encoder needs (`size`), never at full resolution and
  never the whole video: memory is bounded by the number of frames asked for.
- The frame count is counted from the packets, not taken from container metadata (decord #26).
- Every returned frame comes with its presentation time in milliseconds from the stream start.
- Readers are created by the process that uses them (decord readers do not survive a fork).
- Broken files say what is wrong: `VideoOpenError` / `VideoDecodeError` carry a one-line reason, and a
  file whose container promises more than it holds is flagged (`VideoMeta.truncated`).
- Rotation metadata (display matrix) is read and reported, never applied: frames come in their coded
  orientation.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np

# (height, width), a function of the source (height, width) giving it, or None for the native size.
SizeSpec = Union[tuple[int, int], Callable[[int, int], tuple[int, int]], None]


class VideoOpenError(Exception):
    """The file could not be opened as a video (missing, empty, not a video, no video stream)."""


class VideoDecodeError(Exception):
    """The video opened but the wanted frames could not be decoded."""


class FrameCountChanged(VideoDecodeError):
    """A fallback decoder counts a different number of frames: sample again from its `meta`, then read."""


@dataclass
class VideoMeta:
    num_frames: int  # counted from the packets
    fps: float  # average frame rate
    duration: float  # seconds
    height: int  # source size, before any decoder-side resize
    width: int
    out_height: int  # size of the frames `read` returns
    out_width: int
    rotation: int | None = None  # display rotation, degrees counter-clockwise, when the file has one (not applied)
    backend: str = ""
    truncated: str | None = None  # why the file holds fewer frames than its container declares, when it does

    def as_dict(self) -> dict:
        return asdict(self)



def _resolve_size(size: SizeSpec, height: int, width: int) -> tuple[int, int]:
    if size is None:
        return height, width
    h, w = size(height, width) if callable(size) else size
    if h < 1 or w < 1:
        raise ValueError(f"decode size must be positive, got {(h, w)}")
    return int(h), int(w)



def _check_indices(indices: Sequence[int], num_frames: int) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(idx) and (idx.min() < 0 or idx.max() >= num_frames):
        raise VideoDecodeError(f"frame indices {idx.min()}..{idx.max()} outside the video's {num_frames} frames")
    return idx


class VideoDecoder(ABC):
    """Open one video, then read frames by index: `(frames uint8 (n, h, w, 3), timestamps_ms float64 (n,))`."""

    name: str = ""
    meta: VideoMeta | None = None

    @staticmethod
    @abstractmethod
    def version() -> str: ...

    @classmethod
    def available(cls) -> bool:
        """Whether the backend's library is installed (it is imported only when used)."""
        try:
            cls.version()
        except ImportError:
            return False
        return True

    @abstractmethod
    def open(self, path: str | Path, size: SizeSpec = None) -> VideoMeta: ...

    @abstractmethod
    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def keyframes(self) -> np.ndarray:
        """Indices of the open video's keyframes (frames that decode without their GOP), sorted."""

    def close(self) -> None:
        pass

    def __enter__(self) -> "VideoDecoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

