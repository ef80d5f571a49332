"""Rendering of the synthetic world (extract/datasets/synthetic.py): colours and their names, the scene
text of a video, the foreground signature of each atomic action, the frames of one video, and the
bit-exact MP4 writer. Pure functions of a `VideoSpec` and a `SyntheticConfig`; the world's sampling stays
in synthetic.py.
"""
from __future__ import annotations

import colorsys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cmdcl.extract.datasets.synthetic import SyntheticConfig, VideoSpec

# Foreground signatures. Step i gets SHAPES[i % 7], OBJECT_COLOURS[3 i % 8] and MOTIONS[i % 6]; the
# (shape, colour) pair alone is unique for i < 56, so every step in STEP_NAMES looks different.
SHAPES = ("disc", "square", "triangle", "ring", "cross", "bar", "diamond")
OBJECT_COLOURS = (
    (0.90, 0.12, 0.12), (0.10, 0.75, 0.15), (0.15, 0.30, 0.95), (0.95, 0.85, 0.10),
    (0.85, 0.15, 0.85), (0.10, 0.85, 0.90), (1.00, 0.55, 0.05), (0.97, 0.97, 0.97),
)
MOTIONS = ("sway", "bob", "orbit", "pulse", "diagonal", "shake")
TEXTURES = ("plain", "stripes", "checks", "dots")
SKIN = np.array((0.87, 0.70, 0.58), np.float32)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def background_colour(value: int, num_values: int) -> np.ndarray:
    return _hsv(value / num_values + 0.08, 0.45, 0.80)


def attire_colour(value: int, num_values: int) -> np.ndarray:
    return _hsv(value / num_values + 0.55, 0.85, 0.70)


def lighting_params(value: int, num_values: int) -> tuple[float, tuple[float, float, float], float]:
    """(gain, RGB tint, left-to-right slope) of one lighting condition."""
    gain = 0.70 + 0.55 * value / max(num_values - 1, 1)
    tint = (1.08, 1.0, 0.88) if value % 2 == 0 else (0.88, 1.0, 1.10)
    slope = 0.35 * ((value % 3) - 1)
    return gain, tint, slope


HUE_NAMES = ("red", "orange", "yellow", "lime", "green", "teal", "cyan", "azure", "blue", "violet", "magenta",
             "pink")  # twelve equal hue sectors, the first centred on red


def colour_name(rgb: np.ndarray) -> str:
    """A plain word for an RGB colour in [0, 1] (its hue sector; greys have none)."""
    h, s, v = colorsys.rgb_to_hsv(*(float(c) for c in rgb))
    if s < 0.15:
        return "grey" if v < 0.8 else "white"
    return HUE_NAMES[int(round(h * len(HUE_NAMES))) % len(HUE_NAMES)]


def context_text(context: dict[str, int], num_values: int) -> str:
    """The scene of a video in words: its background, the actor's attire and the lighting."""
    background = colour_name(background_colour(context["background"], num_values))
    texture = TEXTURES[context["background"] % len(TEXTURES)]
    pattern = "" if texture == "plain" else f" with {texture}"
    attire = colour_name(attire_colour(context["attire"], num_values))
    gain, tint, _ = lighting_params(context["lighting"], num_values)
    brightness = "dim" if gain < 0.9 else "bright" if gain > 1.05 else "soft"
    warmth = "warm" if tint[0] > tint[2] else "cool"
    article = "an" if background[0] in "aeiou" else "a"
    return f"in {article} {background} kitchen{pattern}, {attire} apron, {brightness} {warmth} light"


def _shape_distance(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) of a shape of radius r centred at the origin."""
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
    raise ValueError(shape)


def _motion(motion: str, t: float, amplitude: float, speed: float, phase: float) -> tuple[float, float, float]:
    """(dx, dy, size scale) of the object t seconds into its step."""
    a = 2 * np.pi * 0.5 * speed * t + phase  # one cycle every ~2 s
    if motion == "sway":
        return amplitude * np.sin(a), 0.0, 1.0
    if motion == "bob":
        return 0.0, amplitude * np.sin(a), 1.0
    if motion == "orbit":
        return amplitude * np.cos(a), amplitude * np.sin(a), 1.0
    if motion == "pulse":
        return 0.0, 0.0, 1.0 + 0.35 * np.sin(a)
    if motion == "diagonal":
        return amplitude * np.sin(a), amplitude * np.sin(a), 1.0
    if motion == "shake":
        return 0.35 * amplitude * np.sin(4 * a), 0.0, 1.0
    raise ValueError(motion)


def step_signature(step: int) -> dict:
    return {"shape": SHAPES[step % len(SHAPES)], "colour": OBJECT_COLOURS[(3 * step) % len(OBJECT_COLOURS)],
            "motion": MOTIONS[step % len(MOTIONS)]}


def _paint(canvas: np.ndarray, distance: np.ndarray, colour: np.ndarray) -> None:
    alpha = np.clip(0.5 - distance, 0.0, 1.0)[..., None]  # one-pixel anti-aliased edge
    canvas *= 1.0 - alpha
    canvas += alpha * colour


def render_video(spec: VideoSpec, config: SyntheticConfig) -> np.ndarray:
    """The frames of one video, uint8 (T, H, W, 3)."""
    rng = np.random.default_rng(spec.render_seed)
    w, h, k = config.width, config.height, config.num_activities
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    unit = min(w, h)

    # Static scene: textured background and the actor's body, with per-video jitter.
    bg = background_colour(spec.context["background"], k) + rng.uniform(-0.04, 0.04, 3).astype(np.float32)
    texture = TEXTURES[spec.context["background"] % len(TEXTURES)]
    ox, oy = rng.uniform(0, 12, 2)
    if texture == "stripes":
        pattern = ((yy + oy) // 5) % 2
    elif texture == "checks":
        pattern = (((xx + ox) // 7) + ((yy + oy) // 7)) % 2
    elif texture == "dots":
        pattern = (np.hypot((xx + ox) % 8 - 4, (yy + oy) % 8 - 4) < 1.6).astype(np.float32)
    else:
        pattern = np.zeros((h, w), np.float32)
    scene = bg * (1.0 - 0.22 * pattern[..., None])

    attire = attire_colour(spec.context["attire"], k)
    actor_x = w * (0.27 + rng.uniform(-0.05, 0.05))
    torso_top = h * (0.48 + rng.uniform(-0.04, 0.04))
    torso = np.maximum(np.abs(xx - actor_x) - 0.09 * w, np.maximum(torso_top - yy, yy - h * 1.05))
    _paint(scene, torso, attire)
    head_r = 0.10 * unit
    _paint(scene, np.hypot(xx - actor_x, yy - (torso_top - 1.2 * head_r)) - head_r, SKIN)
    shoulder = np.array([actor_x + 0.07 * w, torso_top + 0.05 * h], np.float32)

    gain, tint, slope = lighting_params(spec.context["lighting"], k)
    light = gain * np.asarray(tint, np.float32) * (1.0 + slope * (xx / w - 0.5))[..., None]

    anchor = np.array([w * (0.64 + rng.uniform(-0.05, 0.05)), h * (0.50 + rng.uniform(-0.06, 0.06))])
    size = 0.15 * unit * rng.uniform(0.85, 1.15)
    amplitude = 0.12 * unit
    noise_std = config.noise / 255.0 * rng.uniform(0.75, 1.25)

    frames = np.empty((spec.num_frames, h, w, 3), np.uint8)
    for step, start, end in spec.segments:
        sig = step_signature(step)
        colour = np.clip(np.asarray(sig["colour"], np.float32) + rng.uniform(-0.04, 0.04, 3), 0, 1)
        speed, phase = rng.uniform(0.8, 1.25), rng.uniform(0, 2 * np.pi)
        for f in range(start, end):
            dx, dy, scale = _motion(sig["motion"], (f - start) / config.fps, amplitude, speed, phase)
            cx, cy = anchor[0] + dx, anchor[1] + dy
            canvas = scene.copy()
            # The arm (a thick segment from the shoulder to the object) ties the object to the actor.
            seg = np.array([cx, cy]) - shoulder
            along = np.clip(((xx - shoulder[0]) * seg[0] + (yy - shoulder[1]) * seg[1]) / (seg @ seg), 0, 1)
            arm = np.hypot(xx - shoulder[0] - along * seg[0], yy - shoulder[1] - along * seg[1]) - 0.035 * unit
            _paint(canvas, arm, attire)
            _paint(canvas, _shape_distance(sig["shape"], xx - cx, yy - cy, size * scale), colour)
            canvas *= light
            canvas += rng.normal(0.0, noise_std, canvas.shape).astype(np.float32)
            frames[f] = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return frames


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode with settings that give byte-identical files for identical frames (one thread, bitexact)."""
    import av

    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        codec = stream.codec_context
        codec.thread_count = 1
        codec.gop_size = fps  # a keyframe every second keeps seeking cheap for sparse samplers
        codec.max_b_frames = 0
        codec.options = {"qmin": "3", "qmax": "3"}  # a fixed quantiser: near-lossless next to yuv420 chroma loss
        codec.flags |= av.codec.context.Flags.bitexact  # no encoder version string in the stream
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
