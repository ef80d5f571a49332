"""Object boxes of a video (a manifest's `boxes` column) carried to the sampled frames of the feature file.

A box file is a CSV with the header `frame,x0,y0,x1,y1`: one row per annotated frame (0-based index of the
decoded frame, as /videos/frame_index stores it), the box in pixels of the video's frames (x to the right,
y down, x1/y1 the far edges). Frames without a row have no box. The synthetic world writes one per video.
A box file of several objects (a manifest's `prop_boxes` column: objects with no part in the action, such as
the synthetic world's props) has the header `frame,object,x0,y0,x1,y1`, `object` numbering them 0, 1, ...

The feature file stores each sampled frame's box in the coordinates of the model's input image, after the
preprocessing resize and centre crop (or pad) of extract/preprocess.py, normalised to [0, 1] and clipped to
it: a box cropped away entirely is NaN, like a frame without a box. A patch-grid cell (i, j) of a G x G grid
covers [j/G, (j+1)/G) x [i/G, (i+1)/G) of that image, so boxes and patch attention share one frame. The
objects' boxes go the same way into `/boxes/props_xyxy` (F, M, 4) per video.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cmdcl.core.errors import DatasetError

BOX_COLUMNS = ("frame", "x0", "y0", "x1", "y1")
OBJECT_BOX_COLUMNS = ("frame", "object", "x0", "y0", "x1", "y1")  # several objects per frame (props)


def read_box_file(path: str | Path) -> dict[int, np.ndarray]:
    """frame index -> float64 [x0, y0, x1, y1] pixels; a DatasetError naming the file and line when malformed."""
    return {key[0]: box for key, box in _read_rows(path, BOX_COLUMNS)}


def read_object_box_file(path: str | Path) -> dict[tuple[int, int], np.ndarray]:
    """A box file of several objects (`frame,object,x0,y0,x1,y1`; object = 0, 1, ...): (frame, object) ->
    float64 [x0, y0, x1, y1] pixels; a DatasetError naming the file and line when malformed."""
    return dict(_read_rows(path, OBJECT_BOX_COLUMNS))


def _read_rows(path: str | Path, columns: tuple[str, ...]) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """[(integer keys, box)] of every row of a box file with these columns (the integer ones first)."""
    keys, out = columns[:-4], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(c.strip() for c in reader.fieldnames or ()) != columns:
                raise DatasetError(f"{path}:1: box file header {','.join(reader.fieldnames or [])}; expected {','.join(columns)}")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                try:
                    key = tuple(int(row[c]) for c in keys)
                    box = np.array([float(row[c]) for c in columns[-4:]])
                except (TypeError, ValueError):
                    raise DatasetError(f"{where}: box row {list(row.values())}; expected integer "
                                       f"{' and '.join(keys)} and four numbers") from None
                if min(key) < 0 or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
                    raise DatasetError(f"{where}: box {box.tolist()} of {', '.join(map(str, key))}; expected "
                                       f"{' and '.join(keys)} >= 0 and finite x0 < x1, y0 < y1")
                out.append((key, box))
    except OSError as exc:
        raise DatasetError(f"{path}: box file cannot be read ({exc.strerror or exc})") from None
    return out


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
    for slot, frame in _valid_slots(frame_index, frame_mask):
        if frame in table:
            pixels[slot] = table[frame]
    return to_input_boxes(pixels, height, width, image_size, resize_mode)


def sampled_object_boxes(path: str | Path, frame_index: np.ndarray, frame_mask: np.ndarray, height: int,
                         width: int, image_size: int, resize_mode: str) -> np.ndarray:
    """(F, M, 4) float32 input-image boxes of objects 0..M-1 (M: one more than the file's highest object) in
    the sampled frames (NaN: that object has no box there, or a padded frame)."""
    table = read_object_box_file(path)
    objects = 1 + max((obj for _, obj in table), default=-1)
    pixels = np.full((len(frame_index), objects, 4), np.nan)
    for slot, frame in _valid_slots(frame_index, frame_mask):
        for obj in range(objects):
            if (frame, obj) in table:
                pixels[slot, obj] = table[frame, obj]
    return to_input_boxes(pixels, height, width, image_size, resize_mode)


def _valid_slots(frame_index: np.ndarray, frame_mask: np.ndarray) -> list[tuple[int, int]]:
    """(slot, frame index) of the sampled frames that are not padding."""
    pairs = zip(np.asarray(frame_index).tolist(), np.asarray(frame_mask).tolist())
    return [(slot, int(frame)) for slot, (frame, valid) in enumerate(pairs) if valid]
