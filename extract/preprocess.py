"""Batched CLIP frame preprocessing with torch ops (no PIL), on CPU or GPU.

It reproduces open_clip's inference transform (`open_clip.transform.image_transform(is_train=False)`)
for the three resize modes open_clip knows:

- "shortest": resize the short side to S keeping the aspect ratio, then centre-crop S x S;
- "longest":  resize the long side to S keeping the aspect ratio, then centre-pad/crop to S x S;
- "squash":   resize to S x S, ignoring the aspect ratio (only for models trained that way).

Geometry (resized sizes, crop offsets, padding) follows torchvision/open_clip's integer rounding
exactly; resampling uses torch's antialiased interpolation, whose bicubic (a = -0.5) and bilinear
kernels are the ones PIL uses, and the resized frame is rounded back to 8-bit like PIL's output.
What remains is sub-level rounding noise, measured against open_clip's own transform in
tests/test_preprocess.py.

`decode_size` tells a decoder which size to decode to, so that full-resolution frames never
have to be materialised (decoding straight to the CLIP input size saves that copy).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cmdcl.core.errors import CmdclError

if TYPE_CHECKING:
    from .models import FrozenEncoder

RESIZE_MODES = ("shortest", "longest", "squash")


def _resized_size(height: int, width: int, image_size: int, resize_mode: str) -> tuple[int, int]:
    """The (h, w) open_clip's inference transform resizes a (height, width) image to."""
    if resize_mode == "squash":
        return image_size, image_size
    if resize_mode == "shortest":
        # torchvision Resize(int): short side -> S, long side truncated (int), not rounded.
        if height <= width:
            return image_size, int(image_size * width / height)
        return int(image_size * height / width), image_size
    # "longest": open_clip's ResizeKeepRatio(longest=1) rounds both sides by the larger ratio.
    ratio = max(height / image_size, width / image_size)
    return round(height / ratio), round(width / ratio)


def decode_size(height: int, width: int, image_size: int, resize_mode: str = "shortest") -> tuple[int, int]:
    """The (h, w) a decoder should produce for a (height, width) video so that only a crop remains.

    It is exactly the size open_clip's transform would resize the full frame to (short side == S
    for "shortest", aspect ratio kept, same integer rounding), so decoder-side resizing replaces the
    resize step and `FramePreprocessor` only crops. Videos that would need upscaling are decoded at
    their native size: upscaling is left to `FramePreprocessor`, with the model's own kernel.
    Odd sizes are returned as they are: decord and PyAV scale straight to packed RGB24, which has
    no chroma subsampling and so no even-size constraint.
    """
    if height <= 0 or width <= 0 or image_size <= 0:
        raise CmdclError(f"decode_size: sizes must be positive, got height={height} width={width} "
                         f"image_size={image_size}.")
    if resize_mode not in RESIZE_MODES:
        raise CmdclError(f"decode_size: unknown resize_mode {resize_mode!r}; expected one of {RESIZE_MODES}.")
    target = _resized_size(height, width, image_size, resize_mode)
    if target[0] > height or target[1] > width:
        return height, width
    return target


class FramePreprocessor:
    """uint8 RGB frames (B, H, W, 3) -> normalised float CLIP input (B, 3, S, S).

    All frames of one call share a size (they come from one video, or from one decode size).
    The output lives on the input's device, or on `device` when given.
    """

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float],
                 interpolation: str = "bicubic", resize_mode: str = "shortest", fill_color: int = 0,
                 device: str | torch.device | None = None):
        if resize_mode not in RESIZE_MODES:
            raise CmdclError(f"FramePreprocessor: unknown resize_mode {resize_mode!r}; expected one of {RESIZE_MODES}.")
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        # open_clip maps every interpolation name except "bilinear" to bicubic at inference.
        self.interpolation = "bilinear" if interpolation == "bilinear" else "bicubic"
        self.resize_mode = resize_mode
        self.fill_color = int(fill_color)
        self.device = torch.device(device) if device is not None else None

    @classmethod
    def from_encoder(cls, encoder: "FrozenEncoder", device: str | torch.device | None = None) -> "FramePreprocessor":
        return cls(encoder.image_size, encoder.mean, encoder.std, interpolation=encoder.interpolation,
                   resize_mode=encoder.resize_mode, device=device)

    def config(self) -> dict:
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation, "resize_mode": self.resize_mode}

    def __call__(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(frames)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise CmdclError(f"FramePreprocessor: expected uint8 frames (B, H, W, 3), got shape {tuple(x.shape)}.")
        if x.dtype != torch.uint8:
            raise CmdclError(f"FramePreprocessor: expected uint8 frames, got {x.dtype}.")
        if self.device is not None:
            x = x.to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float()  # (B, 3, H, W), values 0..255

        height, width = x.shape[-2:]
        new_h, new_w = _resized_size(height, width, self.image_size, self.resize_mode)
        if (new_h, new_w) != (height, width):
            x = self._resize(x, new_h, new_w)
        x = self._crop_or_pad(x)

        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1) * 255.0
        return (x - mean) / std

    def _resize(self, x: torch.Tensor, new_h: int, new_w: int) -> torch.Tensor:
        """Separable resize, width pass then height pass, each rounded half-up to 8 bits.

        This is PIL's pass order and rounding (`clip8`). Clipping the bicubic overshoot between the
        passes matters: without it sharp edges differ from open_clip's PIL transform by ~15 levels.
        """
        height, width = x.shape[-2:]
        if new_w != width:
            x = F.interpolate(x, size=(height, new_w), mode=self.interpolation, align_corners=False, antialias=True)
            x = x.add_(0.5).floor_().clamp_(0, 255)
        if new_h != height:
            x = F.interpolate(x, size=(new_h, new_w), mode=self.interpolation, align_corners=False, antialias=True)
            x = x.add_(0.5).floor_().clamp_(0, 255)
        return x

    def _crop_or_pad(self, x: torch.Tensor) -> torch.Tensor:
        """Centre crop to S x S with torchvision's offsets; pad first (split like open_clip) if smaller."""
        size = self.image_size
        height, width = x.shape[-2:]
        if height < size or width < size:
            pad_h, pad_w = max(size - height, 0), max(size - width, 0)
            x = F.pad(x, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2), value=float(self.fill_color))
            height, width = x.shape[-2:]
        top = int(round((height - size) / 2.0))
        left = int(round((width - size) / 2.0))
        return x[..., top:top + size, left:left + size]
