"""Object boxes of a video (a manifest's `boxes` column) carried to the sampled frames of the feature file.

A box file is a CSV with the header `frame,x0,y0,x1,y1`: one row per annotated frame (0-based index of the
decoded frame, as /videos/frame_index stores it), the box in pixels of the video's frames (x to the right,
y down, x1/y1 the far edges). Frames without a row have no box. The synthetic world writes one per video.

The feature file stores each sampled frame's box in the coordinates of the model's input image, after the
preprocessing resize and centre crop (or pad) of extract/preprocess.py, normalised to [0, 1] and clipped to
it: a box cropped away entirely is NaN, like a frame without a box. A patch-grid cell (i, j) of a G x G grid
covers [j/G, (j+1)/G) x [i/G, (i+1)/G) of that image, so boxes and patch attention share one frame.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cmdcl.core.errors import DatasetError

BOX_COLUMNS = ("frame", "x0", "y0", "x1", "y1")


def read_box_file(path: str | Path) -> dict[int, np.ndarray]:
    """frame index -> float64 [x0, y0, x1, y1] pixels; a DatasetError naming the file and line when malformed."""
    boxes: dict[int, np.ndarray] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(c.strip() for c in reader.fieldnames or ()) != BOX_COLUMNS:
                raise DatasetError(f"{path}:1: box file header {','.join(reader.fieldnames or [])}; expected {','.join(BOX_COLUMNS)}")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                try:
                    frame = int(row["frame"])
                    box = np.array([float(row[c]) for c in BOX_COLUMNS[1:]])
                except (TypeError, ValueError):
                    raise DatasetError(f"{where}: box row {list(row.values())}; expected an integer frame and "
                                       "four numbers") from None
                if frame < 0 or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
                    raise DatasetError(f"{where}: box {box.tolist()} of frame {frame}; expected frame >= 0 and "
                                       "finite x0 < x1, y0 < y1")
                boxes[frame] = box
    except OSError as exc:
        raise DatasetError(f"{path}: box file cannot be read ({exc.strerror or exc})") from None
    return boxes


def input_geometry(height: int, width: int, image_size: int, resize_mode: str) -> tuple[float, float, float, float]:
    """(scale_x, scale_y, offset_x, offset_y): source pixel x -> x * scale_x + offset_x in the model's S x S
    input, as FramePreprocessor resizes and then centre-crops or pads (the same integer rounding)."""
    from .preprocess import _resized_size

    new_h, new_w = _resized_size(height, width, image_size, resize_mode)
    pad_h, pad_w = max(image_size - new_h, 0), max(image_size - new_w, 0)
    top = int(round((new_h + pad_h - image_size) / 2.0))
    left = int(round((new_w + pad_w - image_size) / 2.0))
    return new_w / width, new_h / height, pad_w // 2 - left, pad_h // 2 - top


def to_input_boxes(boxes: np.ndarray, height: int, width: int, image_size: int, resize_mode: str) -> np.ndarray:
    """(..., 4) pixel boxes of a (height, width) video -> [0, 1] boxes of the model's input image (NaN when the
    box lies outside it, or was NaN)."""
    sx, sy, ox, oy = input_geometry(height, width, image_size, resize_mode)
    boxes = np.asarray(boxes, np.float64)
    scale = np.array([sx, sy, sx, sy])
    offset = np.array([ox, oy, ox, oy])
    out = np.clip((boxes * scale + offset) / image_size, 0.0, 1.0)
    empty = (out[..., 2] <= out[..., 0]) | (out[..., 3] <= out[..., 1])
    out[empty] = np.nan
    return out.astype(np.float32)


def sampled_boxes(path: str | Path, frame_index: np.ndarray, frame_mask: np.ndarray, height: int, width: int,
                  image_size: int, resize_mode: str) -> np.ndarray:
    """(F, 4) float32 input-image boxes of the sampled frames (NaN: no box, or a padded frame)."""
    table = read_box_file(path)
    pixels = np.full((len(frame_index), 4), np.nan)
    for slot, (frame, valid) in enumerate(zip(np.asarray(frame_index).tolist(), np.asarray(frame_mask).tolist())):
        if valid and int(frame) in table:
            pixels[slot] = table[int(frame)]
    return to_input_boxes(pixels, height, width, image_size, resize_mode)
