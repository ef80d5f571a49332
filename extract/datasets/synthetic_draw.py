"""Drawing primitives of the synthetic world (synthetic_render.py, synthetic_motion.py): colours, the signed
distance of every shape, anti-aliased painting, and the pixel box of what was painted. numpy only.
"""
from __future__ import annotations

import colorsys

import numpy as np

SHAPE_REACH = 1.3  # every shape lies within 1.3 radii of its centre (the bar's half-length is 1.25)


def hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def shape_distance(shape: str, dx: np.ndarray, dy: np.ndarray, r: float | np.ndarray) -> np.ndarray:
    """Signed distance (pixels, negative inside; approximate for star, oval and heart) of a shape of radius r
    centred at the origin. The first seven are the actions' objects, the rest the props' (PROP_SHAPES)."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "disc":
        return np.hypot(dx, dy) - r
    if shape == "square":
        return np.maximum(ax, ay) - 0.85 * r
    if shape == "triangle":  # apex up; image y grows downwards
        up = -dy
        return np.maximum(ax * 0.866 + up * 0.5, -up) - 0.55 * r
    if shape == "ring":
        return np.abs(np.hypot(dx, dy) - 0.75 * r) - 0.28 * r
    if shape == "cross":
        return np.minimum(np.maximum(ax - 0.3 * r, ay - r), np.maximum(ax - r, ay - 0.3 * r))
    if shape == "bar":
        return np.maximum(ax - 1.25 * r, ay - 0.35 * r)
    if shape == "diamond":
        return (ax + ay) - 1.1 * r
    return _prop_distance(shape, dx, dy, ax, ay, r)


def _prop_distance(shape: str, dx: np.ndarray, dy: np.ndarray, ax: np.ndarray, ay: np.ndarray,
                   r: float | np.ndarray) -> np.ndarray:
    if shape == "star":  # five points, one up
        angle = np.arctan2(dx, -dy)
        return np.hypot(dx, dy) - r * (0.72 + 0.38 * np.cos(5 * angle))
    if shape == "crescent":  # a disc less a disc shifted right
        return np.maximum(np.hypot(dx, dy) - r, 0.8 * r - np.hypot(dx - 0.45 * r, dy + 0.1 * r))
    if shape == "hexagon":  # flat top and bottom
        return np.maximum(ay, 0.866 * ax + 0.5 * ay) - 0.9 * r
    if shape == "oval":  # wide: 1.25 r by 0.6 r
        return (np.hypot(dx / 1.25, dy / 0.6) - r) * 0.6
    if shape == "heart":  # two lobes over a downward point
        lobes = np.minimum(np.hypot(dx + 0.42 * r, dy + 0.25 * r), np.hypot(dx - 0.42 * r, dy + 0.25 * r)) - 0.5 * r
        point = np.maximum(0.707 * (ax + dy) - 0.53 * r, -dy - 0.25 * r)
        return np.minimum(lobes, point)
    if shape == "semicircle":  # flat side down
        return np.maximum(np.hypot(dx, dy - 0.35 * r) - 1.2 * r, dy - 0.35 * r)
    raise ValueError(shape)


def paint(canvas: np.ndarray, distance: np.ndarray, colour: np.ndarray) -> None:
    # one-pixel anti-aliased edge; float32 like the canvas (mixed-precision in-place passes are slow)
    alpha = np.clip(0.5 - distance, 0.0, 1.0).astype(np.float32)[..., None]
    canvas *= 1.0 - alpha
    canvas += alpha * np.asarray(colour, np.float32)


def window(x_low: list, x_high: list, y_low: list, y_high: list, reach: float, h: int, w: int
           ) -> tuple[slice, slice]:
    """(rows, cols) slices of the pixels within `reach` (+1 for the anti-aliased edge) of the given extents.

    Painting is confined to this window: outside it the paint's alpha is exactly 0, which leaves a pixel
    bit-identical, so only the window needs the (float64) distance fields.
    """
    margin = reach + 2.0
    x0, x1 = int(np.floor(min(x_low) - margin)), int(np.ceil(max(x_high) + margin)) + 1
    y0, y1 = int(np.floor(min(y_low) - margin)), int(np.ceil(max(y_high) + margin)) + 1
    return slice(min(max(y0, 0), h), min(max(y1, 0), h)), slice(min(max(x0, 0), w), min(max(x1, 0), w))


def pixel_boxes(inside: np.ndarray) -> np.ndarray:
    """(n, h, w) bool -> (n, 4) float32 [x0, y0, x1, y1) pixel boxes of the True pixels (NaN when none)."""
    cols, rows = inside.any(axis=1), inside.any(axis=2)
    out = np.full((len(inside), 4), np.nan, np.float32)
    seen = cols.any(axis=1)
    width, height = cols.shape[1], rows.shape[1]
    out[seen, 0] = cols[seen].argmax(axis=1)
    out[seen, 1] = rows[seen].argmax(axis=1)
    out[seen, 2] = width - cols[seen, ::-1].argmax(axis=1)
    out[seen, 3] = height - rows[seen, ::-1].argmax(axis=1)
    return out


def paint_moving(canvas: np.ndarray, shape: str, centres: np.ndarray, radius: float, colour: np.ndarray
                 ) -> np.ndarray:
    """Paint one shape at a different centre in each frame of `canvas` (n, H, W, 3), in place; returns its
    (n, 4) pixel boxes (NaN where nothing was painted).

    Each frame is painted in its own S x S window around the centre: a shape that crosses the whole frame
    costs its window, not the frame, per frame. The distances of all frames are one array; the painting goes
    frame by frame (slices of one frame stay in cache: 5x faster than one gather and scatter).
    """
    n, height, width = canvas.shape[:3]
    reach = SHAPE_REACH * radius + 2.0
    size = min(int(np.ceil(2 * reach)) + 2, height, width)
    x0 = np.clip(np.floor(centres[:, 0] - reach), 0, width - size).astype(np.int64)
    y0 = np.clip(np.floor(centres[:, 1] - reach), 0, height - size).astype(np.int64)
    offsets = np.arange(size, dtype=np.float32)
    dx = offsets[None, None, :] + (x0 - centres[:, 0]).astype(np.float32)[:, None, None]
    dy = offsets[None, :, None] + (y0 - centres[:, 1]).astype(np.float32)[:, None, None]
    distance = shape_distance(shape, dx, dy, np.float32(radius))
    alpha = np.clip(0.5 - distance, 0.0, 1.0).astype(np.float32)[..., None]
    paint_colour = alpha * np.asarray(colour, np.float32)
    keep = 1.0 - alpha
    for i, (x, y) in enumerate(zip(x0.tolist(), y0.tolist())):
        region = canvas[i, y:y + size, x:x + size]
        region *= keep[i]
        region += paint_colour[i]
    boxes = pixel_boxes(distance < 0.5)
    boxes += np.stack([x0, y0, x0, y0], axis=1).astype(np.float32)
    return boxes
