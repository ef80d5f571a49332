"""NVDEC backend (`--decoder nvdec`): the GPU's hardware decoder through NVIDIA's PyNvVideoCodec.

Optional: `pip install cmdcl[gpu]` (PyNvVideoCodec; Linux x86_64 / Windows, an NVIDIA driver, CUDA).
Why this package and not torchcodec, decord or torchaudio: docs/EXTRACT.md ("GPU decoding").

What runs where:
- CPU, once per video: PyAV's packet index (demux only, no decoding), the same one the pyav backend
  builds. It gives the frame count, the frame rate and every frame's presentation time, so frame
  indices and timestamps mean exactly what they mean for the CPU backends. It also decides whether
  NVDEC can take the video at all (`nvdec_refusal`: codec, chroma format, bit depth, timestamps).
- GPU: decoding, YUV -> RGB, and the resize to the decode size. `read` returns the frames as a CUDA
  uint8 tensor (n, h, w, 3); the extraction's preprocessing then crops and normalises it on the same
  GPU, so a frame never travels to the host.

A video NVDEC refuses (another codec, 4:2:2, 10-bit H.264, no trustworthy timestamps), or whose
frames do not come back with the presentation times of the packet index, raises VideoOpenError /
VideoDecodeError: the fallback policy then serves it with the CPU backends, per video.
Frames come in coded orientation (rotation reported, not applied), as every backend's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cmdcl.core.errors import one_line
from .base import SizeSpec, VideoDecodeError, VideoDecoder, VideoMeta, VideoOpenError, \
    _check_indices
from .pyav import PyAVDecoder

# What NVDEC decodes, by FFmpeg codec name -> pixel formats it accepts (NVIDIA's decode support matrix for
# Turing and later; H.264 is 4:2:0 8-bit only, HEVC / AV1 / VP9 also 10-bit, HEVC also 4:4:4).
NVDEC_FORMATS: dict[str, frozenset[str]] = {
    "h264": frozenset({"yuv420p", "yuvj420p"}),
    "hevc": frozenset({"yuv420p", "yuvj420p", "yuv420p10le", "yuv444p", "yuv444p10le"}),
    "av1": frozenset({"yuv420p", "yuv420p10le"}),
    "vp9": frozenset({"yuv420p", "yuv420p10le"}),
    "vp8": frozenset({"yuv420p"}),
    "mpeg4": frozenset({"yuv420p"}),
    "mpeg2video": frozenset({"yuv420p"}),
    "mpeg1video": frozenset({"yuv420p"}),
}
READ_CHUNK = 16  # frames decoded at full size at once: bounds GPU memory for 4K sources (16 x 25 MB)


def nvdec_refusal(codec: str, pix_fmt: str | None, sequential: bool) -> str | None:
    """Why NVDEC cannot serve a video with this codec / pixel format, or None when it can."""
    if codec not in NVDEC_FORMATS:
        return f"codec {codec} is not decoded by NVDEC"
    if pix_fmt and pix_fmt not in NVDEC_FORMATS[codec]:
        return f"{codec} in {pix_fmt} is not decoded by NVDEC"
    if sequential:  # random access by frame index needs presentation times (AVI has none)
        return "the container has no reliable presentation times for random access"
    return None


def unique_reads(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct indices to decode, position of each requested index among them).

    PyNvVideoCodec drops repeated indices and returns frames in its own order; decoding each frame once,
    in display order, and expanding afterwards keeps the caller's order and repeats.
    """
    distinct, where = np.unique(indices, return_inverse=True)
    return distinct, where.reshape(-1)


def check_presentation_times(wanted: np.ndarray, got_pts: Sequence[int | None], index_pts: Sequence[int]) -> None:
    """Each decoded frame must carry the pts the packet index gives its index, or the indices mean other frames."""
    for frame_index, pts in zip(wanted.tolist(), got_pts):
        if pts is not None and int(pts) != int(index_pts[frame_index]):
            raise VideoDecodeError(f"nvdec returned pts {int(pts)} for frame {frame_index}, whose pts is "
                                   f"{int(index_pts[frame_index])}: its frame indices differ from the packet index")


def _nvc():
    import PyNvVideoCodec

    return PyNvVideoCodec


def cuda_ready() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def current_gpu() -> int:
    """The GPU this process encodes on (cuda:LOCAL_RANK under torchrun): decode there too."""
    import torch

    return torch.cuda.current_device()


class NvdecDecoder(VideoDecoder):
    """PyNvVideoCodec's SimpleDecoder (RGB output in GPU memory) indexed by PyAV's packet index."""

    name = "nvdec"

    def __init__(self, threads: int = 1, gpu_id: int | None = None):
        self.threads = threads
        self.gpu_id = gpu_id
        self._index: PyAVDecoder | None = None
        self._decoder: Any = None

    @staticmethod
    def version() -> str:
        version = str(getattr(_nvc(), "__version__", "unknown"))
        if not cuda_ready():
            raise ImportError("PyNvVideoCodec is installed but no CUDA device is visible")
        return version

    def open(self, path: str | Path, size: SizeSpec = None) -> VideoMeta:
        self._index = PyAVDecoder(self.threads)
        meta = self._index.open(path, size)  # VideoOpenError for what no backend opens, as pyav says it
        try:
            context = self._index._stream.codec_context
            reason = nvdec_refusal(context.name, context.pix_fmt, self._index.sequential)
            if reason:
                raise VideoOpenError(reason)
            self._decoder = self._create(str(path))
            counted = len(self._decoder)
            if counted != meta.num_frames:
                raise VideoOpenError(f"nvdec counts {counted} frames, the packet index {meta.num_frames}")
        except BaseException:
            self.close()
            raise
        self.meta = VideoMeta(**{**meta.as_dict(), "backend": self.name})
        return self.meta

    def _create(self, path: str):
        nvc = _nvc()
        gpu_id = current_gpu() if self.gpu_id is None else self.gpu_id
        try:
            return nvc.SimpleDecoder(path, gpu_id=gpu_id, use_device_memory=True,
                                     output_color_type=nvc.OutputColorType.RGB)
        except Exception as exc:  # unsupported stream, no decoder session left, driver errors
            raise VideoOpenError(f"nvdec: {one_line(exc)}") from exc

    def read(self, indices: Sequence[int]) -> tuple[Any, np.ndarray]:
        """(frames, timestamps_ms): frames a uint8 (n, h, w, 3) tensor on the GPU, at the decode size."""
        import torch

        if self._decoder is None or self.meta is None:
            raise RuntimeError("open() a video before read()")
        idx = _check_indices(indices, self.meta.num_frames)
        distinct, where = unique_reads(idx)
        chunks = []
        for start in range(0, len(distinct), READ_CHUNK):
            chunks.append(self._decode_chunk(distinct[start:start + READ_CHUNK]))
        if not chunks:
            return torch.zeros((0, self.meta.out_height, self.meta.out_width, 3), dtype=torch.uint8), np.zeros(0)
        frames = torch.cat(chunks)[torch.from_numpy(where).to(chunks[0].device)]
        timestamps_ms = np.array([self._index._timestamp_ms(int(i)) for i in idx], np.float64)
        return frames, timestamps_ms

    def keyframes(self) -> np.ndarray:
        """The packet index's keyframes (display order), as the pyav backend gives them: `--seek keyframe`."""
        if self._index is None:
            raise RuntimeError("open() a video before keyframes()")
        return self._index.keyframes()

    def _decode_chunk(self, wanted: np.ndarray):
        """Decode `wanted` (sorted, distinct) and resize on the GPU; the decoder's buffers are not kept."""
        import torch

        try:
            decoded = self._decoder.get_batch_frames_by_index(wanted.tolist())
            if len(decoded) != len(wanted):
                raise VideoDecodeError(f"nvdec returned {len(decoded)} of {len(wanted)} frames")
            check_presentation_times(wanted, [_pts(frame) for frame in decoded], self._index._pts)
            full = torch.stack([torch.from_dlpack(frame) for frame in decoded])  # (n, H, W, 3) uint8
        except VideoDecodeError:
            raise
        except Exception as exc:
            raise VideoDecodeError(f"nvdec: {one_line(exc)}") from exc
        return resize_frames(full, self.meta.out_height, self.meta.out_width)

    def close(self) -> None:
        self._decoder = None
        if self._index is not None:
            self._index.close()
            self._index = None


def _pts(frame) -> int | None:
    get = getattr(frame, "getPTS", None)
    return int(get()) if callable(get) else None


def resize_frames(frames, height: int, width: int):
    """(n, H, W, 3) uint8 -> (n, height, width, 3) uint8 on the same device: antialiased bicubic, as the
    CPU backends resize inside FFmpeg, rounded half up like FramePreprocessor."""
    import torch.nn.functional as F

    if tuple(frames.shape[1:3]) == (height, width):
        return frames.contiguous()
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return x.add_(0.5).floor_().clamp_(0, 255).to(frames.dtype).permute(0, 2, 3, 1).contiguous()
