"""Which frames of a video to encode: a fixed number F per video, deterministic, padded + masked when short.

Every video yields exactly F rows so that features stack into one (N, F, D) array:
- "uniform": the centre frame of each of F equal segments of the video (TSN-style test sampling);
- "fps": frames at a fixed rate (e.g. 1 per second), strided uniformly down to F when there are more.
A video with fewer usable frames than F contributes each of them once, in order, and the remaining
rows repeat the last index with `mask=False` ("pad + mask", see docs/FORMAT.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("uniform", "fps")
# How a wanted frame is reached: "exact" decodes from the keyframe before it up to it; "keyframe" takes the
# nearest keyframe instead (decoded alone, no GOP to decode), and the store records its real timestamp.
SEEK_MODES = ("exact", "keyframe")


@dataclass
class SampledFrames:
    indices: np.ndarray  # (F,) int64 frame indices, non-decreasing; padding repeats the last valid one
    mask: np.ndarray  # (F,) bool, False on padded rows

    @property
    def valid(self) -> np.ndarray:
        """The distinct frame indices to decode, in order."""
        return self.indices[self.mask]


def _segment_centres(count: int, frames: int) -> np.ndarray:
    """Positions in [0, count) of the centres of `frames` equal segments (distinct when count >= frames)."""
    return np.floor((np.arange(frames) + 0.5) * count / frames).astype(np.int64)


def _pad(valid: np.ndarray, frames: int) -> SampledFrames:
    indices = np.full(frames, valid[-1], np.int64)
    indices[: len(valid)] = valid
    return SampledFrames(indices=indices, mask=np.arange(frames) < len(valid))


def _nearest(available: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The distinct members of sorted `available` nearest to each of `wanted` (ties: the earlier one)."""
    right = np.clip(np.searchsorted(available, wanted), 0, len(available) - 1)
    left = np.clip(right - 1, 0, len(available) - 1)
    nearer_left = np.abs(available[left] - wanted) <= np.abs(available[right] - wanted)
    return np.unique(np.where(nearer_left, available[left], available[right]))


class FrameSampler:
    def __init__(self, frames: int, mode: str = "uniform", fps: float | None = None, seek: str = "exact"):
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if mode not in MODES:
            raise ValueError(f"sampling mode must be one of {MODES}, got {mode!r}")
        if mode == "fps" and not (fps and fps > 0):
            raise ValueError("fps sampling needs a positive rate")
        if seek not in SEEK_MODES:
            raise ValueError(f"seek mode must be one of {SEEK_MODES}, got {seek!r}")
        self.frames = frames
        self.mode = mode
        self.seek = seek
        self.fps = float(fps) if mode == "fps" else None

    def as_dict(self) -> dict:
        """Stored in every shard's attributes (provenance; resume and merge refuse another sampler). The seek
        mode is written only when it is not "exact", so exact shards stay as they always were."""
        spec = {"mode": self.mode, "frames": self.frames, "fps": self.fps, "padding": "repeat-last+mask"}
        return spec if self.seek == "exact" else {**spec, "seek": self.seek}

    @classmethod
    def from_provenance(cls, spec, frames: int | None = None) -> "FrameSampler":
        """The sampler a shard recorded (`as_dict`, or its JSON text as HDF5 attributes hold it)."""
        import json

        spec = json.loads(spec) if isinstance(spec, (str, bytes)) else dict(spec or {})
        return cls(int(frames if frames is not None else spec["frames"]), mode=spec.get("mode", "uniform"),
                   fps=spec.get("fps"), seek=spec.get("seek", "exact"))

    def __repr__(self) -> str:
        return f"FrameSampler(frames={self.frames}, mode={self.mode!r}, fps={self.fps}, seek={self.seek!r})"

    def sample_video(self, num_frames: int, fps: float | None, duration: float | None,
                     keyframes=None) -> SampledFrames:
        """Indices for a video, by the seek mode: `sample`, or with "keyframe" each wanted frame replaced by
        the nearest of `keyframes` (the video's keyframe indices; a keyframe taken twice counts once, so a
        video with fewer keyframes than F is padded + masked)."""
        if self.seek == "exact":
            return self.sample(num_frames, fps, duration)
        if keyframes is None or not len(keyframes):
            raise ValueError("keyframe seeking needs the video's keyframe indices")
        return self._select(_nearest(np.unique(np.asarray(keyframes, np.int64)),
                                     self.sample(num_frames, fps, duration).valid))

    def sample(self, num_frames: int, fps: float | None = None, duration: float | None = None) -> SampledFrames:
        """Indices for a video of `num_frames` frames at `fps` (average) lasting `duration` seconds."""
        if num_frames < 1:
            raise ValueError("cannot sample from a video with no frames")
        if self.mode == "uniform":
            candidates = np.arange(num_frames, dtype=np.int64)
        else:
            candidates = self._at_rate(num_frames, fps, duration)
        return self._select(candidates)

    def sample_among(self, available: np.ndarray, num_frames: int, fps: float | None = None,
                     duration: float | None = None) -> SampledFrames:
        """Indices drawn only from `available`, the frames of a partly broken video that decode.

        "uniform" spreads the F segments over the available frames; "fps" takes, for each frame the
        rate asks for in the whole video, the nearest available one (each at most once).
        """
        available = np.unique(np.asarray(available, dtype=np.int64))
        if not len(available):
            raise ValueError("no decodable frames to sample from")
        if self.mode == "uniform":
            return self._select(available)
        return self._select(_nearest(available, self._at_rate(num_frames, fps, duration)))

    def _select(self, candidates: np.ndarray) -> SampledFrames:
        """F of the sorted distinct `candidates` (segment centres), or all of them padded + masked."""
        if len(candidates) >= self.frames:
            return SampledFrames(indices=candidates[_segment_centres(len(candidates), self.frames)],
                                 mask=np.ones(self.frames, bool))
        return _pad(candidates, self.frames)

    def _at_rate(self, num_frames: int, fps: float | None, duration: float | None) -> np.ndarray:
        """Distinct frame indices at `self.fps` per second, each at the centre of its 1/rate interval."""
        if not fps or fps <= 0:
            fps = num_frames / duration if duration and duration > 0 else None
        if not fps:
            raise ValueError("fps sampling needs the video's frame rate or duration")
        if not duration or duration <= 0:
            duration = num_frames / fps
        count = max(1, int(np.floor(duration * self.fps + 1e-9)))
        times = (np.arange(count) + 0.5) / self.fps
        indices = np.minimum(np.floor(times * fps).astype(np.int64), num_frames - 1)
        return np.unique(indices)  # a rate above the video's own would repeat frames
