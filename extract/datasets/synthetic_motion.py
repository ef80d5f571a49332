"""The moving world's time-varying confounders (SyntheticConfig `camera_motion`, `light_change`, `props`;
docs/EXTRACT.md "The synthetic world"), drawn by synthetic_render.py:

- the camera: the scene is a canvas larger than the frame, with cupboards and tiles in shades of the
  background's colour on its texture, and each frame is a window of it that pans (a slow sway, up to
  `camera_motion` frame widths) and shakes (a handheld jitter of a tenth of that), at sub-pixel offsets, so
  no two frames show the same background; the actor, the action's object and the props move with it;
- the light: on top of the video's lighting, a slow drift of the brightness and of its left-right gradient,
  frame-to-frame jitter and the odd dimmed frame (flicker), each scaled by `light_change`;
- the props: `props` objects as large and as saturated as the actions' objects, in shapes no action uses,
  crossing the frame (and the action's object: they are painted over it) along straight paths that bounce
  off the frame's edges. Their kind and colour are the context factor "prop": they agree with the activity
  like the background, attire and lighting do.

Each has its own random stream (the video's render seed + [1, CAMERA | LIGHT | PROPS | SCENE]), so turning one off
changes neither the others nor the static draws: with all three off a video is the static world's.
"""
from __future__ import annotations

import numpy as np

from .synthetic_draw import hsv, paint, paint_moving, window
from .synthetic_spec import SyntheticConfig, VideoSpec

CAMERA, LIGHT, PROPS, SCENE = 0, 1, 2, 3  # the sub-streams (SCENE: the cupboards and tiles)
PROP_SHAPES = ("star", "crescent", "hexagon", "oval", "heart", "semicircle")
COUNT_WORDS = ("no", "a", "two", "three", "four")
PROP_SIZE = 0.15  # a prop's radius in units of min(width, height): the actions' objects' size


def motion_rng(spec: VideoSpec, which: int) -> np.random.Generator:
    return np.random.default_rng([*spec.render_seed, 1, which])


def prop_colour(value: int, num_values: int) -> np.ndarray:
    """Saturated like the actions' objects; hues offset from the backgrounds' and the attires'."""
    return hsv(value / num_values + 0.3, 0.9, 0.95)


def prop_shape(value: int) -> str:
    return PROP_SHAPES[value % len(PROP_SHAPES)]


def prop_text(value: int, num_values: int, count: int, colour_name) -> str:
    """The props in words ("two teal stars moving about"); `colour_name` names an RGB colour."""
    colour, shape = colour_name(prop_colour(value, num_values)), prop_shape(value)
    article = ("an" if colour[0] in "aeiou" else "a") if count == 1 else COUNT_WORDS[count]
    return f"{article} {colour} {shape}{'s' if count > 1 else ''} moving about"


# ------------------------------------------------------------------------------------------------ camera

def camera_margin(config: SyntheticConfig) -> int:
    """Pixels of scene around the frame on each side: room for the pan and the shake (0: a fixed camera)."""
    amplitude = config.camera_motion * config.width
    return int(np.ceil(1.3 * amplitude)) + 1 if amplitude > 0 else 0


def reverses_motion(spec: VideoSpec, config: SyntheticConfig) -> bool:
    """True where `ood_motion` "reversed" runs this video's pan and light drift the other way (test_ood only)."""
    return config.ood_motion == "reversed" and spec.split == "test_ood"


def _wave(t: np.ndarray, period: np.ndarray | float, phase: np.ndarray | float, timing: str) -> np.ndarray:
    """The shape over time of a pan or a drift in [-1, 1]: a sine of that period and phase ("random"), or one
    steady sweep from -1 at the first frame to 1 at the last ("sweep": period and phase unused)."""
    if timing == "sweep":
        return 2.0 * t / max(float(t.max()), 1e-9) - 1.0 if len(t) > 1 else np.zeros_like(t)
    return np.sin(2 * np.pi * t / period + phase)


def camera_path(rng: np.random.Generator, num_frames: int, fps: int, amplitude: float, margin: int,
                timing: str = "random", reverse: bool = False) -> np.ndarray:
    """(T, 2) float [x, y] offset of each frame's window from the centred one: a sway of `amplitude` pixels
    across (half that up and down) with a period of 4-10 s (or one sweep, `timing`; the other way with
    `reverse`), plus a handheld shake of a tenth of it. Every draw is made whatever the timing, so the shake is
    the same."""
    t = np.arange(num_frames)[:, None] / fps
    period, phase = rng.uniform(4.0, 10.0, 2), rng.uniform(0.0, 2 * np.pi, 2)
    pan = amplitude * np.array([1.0, 0.5]) * _wave(t, period, phase, timing)
    if reverse:
        pan = -pan
    shake = rng.normal(0.0, 0.1 * amplitude, (num_frames, 2))
    return np.clip(pan + shake, 1 - margin, margin - 1)


def crop(scene: np.ndarray, starts: np.ndarray, height: int, width: int) -> np.ndarray:
    """The (n, height, width, 3) frames of a (H, W, 3) scene canvas: the windows whose top-left corners are at
    `starts` (n, 2) [x, y], sampled bilinearly (sub-pixel pans). One frame at a time: slices of one frame stay
    in cache, which made this 5x faster than one gather over all frames."""
    out = np.empty((len(starts), height, width, 3), np.float32)
    whole = np.floor(starts).astype(np.int64)
    fractions = (starts - whole).astype(np.float32)
    for i, ((x, y), (fx, fy)) in enumerate(zip(whole.tolist(), fractions)):
        patch = scene[y:y + height + 1, x:x + width + 1]
        rows = patch[:, :-1] * (1 - fx)
        rows += patch[:, 1:] * fx
        np.multiply(rows[:-1], 1 - fy, out=out[i])
        out[i] += rows[1:] * fy
    return out


def scene_clutter(rng: np.random.Generator, scene: np.ndarray, xx: np.ndarray, yy: np.ndarray,
                  colour: np.ndarray) -> None:
    """Cupboards and tiles on the wall: 8 rectangles, each a shade of the background colour (so the scene
    stays that colour), painted in place."""
    height, width = scene.shape[:2]
    for _ in range(8):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        half_w, half_h = rng.uniform(0.06, 0.2) * width, rng.uniform(0.06, 0.25) * height
        ys, xs = window([cx - half_w], [cx + half_w], [cy - half_h], [cy + half_h], 0.0, height, width)
        box = np.maximum(np.abs(xx[ys, xs] - cx) - half_w, np.abs(yy[ys, xs] - cy) - half_h)
        paint(scene[ys, xs], box, np.clip(colour * rng.uniform(0.7, 1.25), 0, 1))


# ------------------------------------------------------------------------------------------------- light

def light_path(rng: np.random.Generator, num_frames: int, fps: int, strength: float, timing: str = "random",
               reverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(gain, slope), each (T,): the factor on the video's brightness (drift, jitter, flicker) and the change of
    its left-right gradient, both scaled by `strength`. The drift and the gradient change follow `timing` (as
    the pan does) and are negated with `reverse` (half a period on); the jitter and the flicker stay as drawn."""
    t = np.arange(num_frames) / fps
    sign = -1.0 if reverse else 1.0
    amplitude, period, phase = rng.uniform(0.6, 1.0), rng.uniform(3.0, 8.0), rng.uniform(0, 2 * np.pi)
    drift = strength * amplitude * (sign * _wave(t, period, phase, timing))
    jitter = rng.normal(0.0, strength / 5, num_frames)
    flicker = np.where(rng.random(num_frames) < 0.1, -strength * rng.uniform(0.5, 1.0, num_frames), 0.0)
    period, phase = rng.uniform(4.0, 10.0), rng.uniform(0, 2 * np.pi)
    slope = 2 * strength * (sign * _wave(t, period, phase, timing))
    return (1.0 + drift + jitter + flicker).astype(np.float32), slope.astype(np.float32)


# ------------------------------------------------------------------------------------------------- props

# The bands the props cross, as fractions of the frame's height: above and below the action's object (which
# swings through the middle), so that they pass near or over it sometimes, not all the time.
PROP_BANDS = ((0.1, 0.4), (0.6, 0.92))


def prop_paths(rng: np.random.Generator, config: SyntheticConfig, num_frames: int, origin: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(centres (M, T, 2) in canvas pixels, radii (M,)) of the props: straight paths at 0.2-0.4 frame widths
    per second in a random direction, bouncing off the frame's sides and off the edges of their band (the
    first prop's band is drawn at random, the next ones alternate)."""
    w, h = config.width, config.height
    t = np.arange(num_frames)[:, None] / config.fps
    first = int(rng.integers(len(PROP_BANDS)))
    centres, radii = [], []
    for j in range(config.props):
        top, bottom = PROP_BANDS[(first + j) % len(PROP_BANDS)]
        low = np.array([0.06 * w, top * h]) + origin
        span = np.array([0.88 * w, (bottom - top) * h])
        start = rng.uniform(0.0, 1.0, 2) * span
        angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.4) * w
        travel = (start + speed * t * np.array([np.cos(angle), np.sin(angle)])) / span  # in spans
        bounced = np.abs((travel + 1.0) % 2.0 - 1.0)  # a triangle wave: reflected at 0 and 1
        centres.append(low + bounced * span)
        radii.append(PROP_SIZE * min(w, h) * rng.uniform(0.85, 1.15))
    return np.array(centres).reshape(config.props, num_frames, 2), np.array(radii)


def paint_props(canvas: np.ndarray, centres: np.ndarray, radii: np.ndarray, shape: str, colour: np.ndarray
                ) -> np.ndarray:
    """Paint every prop over `canvas` (n, H, W, 3) at its centres (M, n, 2); returns (n, M, 4) pixel boxes."""
    boxes = [paint_moving(canvas, shape, c, float(r), colour) for c, r in zip(centres, radii)]
    return np.stack(boxes, axis=1) if boxes else np.zeros((len(canvas), 0, 4), np.float32)
