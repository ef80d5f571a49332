"""Rendering of the synthetic world (extract/datasets/synthetic.py): colours and their names, the scene
text of a video, the foreground signature of each atomic action, the frames of one video, and the
bit-exact MP4 writer. Pure functions of a `VideoSpec` and a `SyntheticConfig`; the world's sampling stays
in synthetic.py.
"""
from __future__ import annotations

import colorsys
import contextlib
import multiprocessing
import os
from pathlib import Path

import numpy as np

from .synthetic_spec import SyntheticConfig, VideoSpec

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


SHAPE_REACH = 1.3  # every shape lies within 1.3 radii of its centre (the bar's half-length is 1.25)


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


def _motion(motion: str, t: np.ndarray, amplitude: float, speed: float, phase: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dy, size scale) of the object at times t (seconds into its step), one value per time."""
    t = np.asarray(t, np.float64)
    a = 2 * np.pi * 0.5 * speed * t + phase  # one cycle every ~2 s
    zero, one = np.zeros_like(t), np.ones_like(t)
    if motion == "sway":
        return amplitude * np.sin(a), zero, one
    if motion == "bob":
        return zero, amplitude * np.sin(a), one
    if motion == "orbit":
        return amplitude * np.cos(a), amplitude * np.sin(a), one
    if motion == "pulse":
        return zero, zero, 1.0 + 0.35 * np.sin(a)
    if motion == "diagonal":
        return amplitude * np.sin(a), amplitude * np.sin(a), one
    if motion == "shake":
        return 0.35 * amplitude * np.sin(4 * a), zero, one
    raise ValueError(motion)


def step_signature(step: int) -> dict:
    return {"shape": SHAPES[step % len(SHAPES)], "colour": OBJECT_COLOURS[(3 * step) % len(OBJECT_COLOURS)],
            "motion": MOTIONS[step % len(MOTIONS)]}


def _paint(canvas: np.ndarray, distance: np.ndarray, colour: np.ndarray) -> None:
    # one-pixel anti-aliased edge; float32 like the canvas (mixed-precision in-place passes are slow)
    alpha = np.clip(0.5 - distance, 0.0, 1.0).astype(np.float32)[..., None]
    canvas *= 1.0 - alpha
    canvas += alpha * np.asarray(colour, np.float32)


def render_video(spec: VideoSpec, config: SyntheticConfig) -> np.ndarray:
    """The frames of one video, uint8 (T, H, W, 3)."""
    return render_video_with_boxes(spec, config)[0]


def _static_scene(spec: VideoSpec, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, k: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scene (h, w, 3), attire colour, shoulder point): the textured background and the actor's body, with
    per-video jitter (the first draws of the video's random stream)."""
    h, w = xx.shape
    unit = min(w, h)
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
    # float32 throughout: the float64 scene that stripes and checks gave made every later pass 2-10x slower
    scene = (bg * (1.0 - 0.22 * pattern[..., None])).astype(np.float32)

    attire = attire_colour(spec.context["attire"], k)
    actor_x = w * (0.27 + rng.uniform(-0.05, 0.05))
    torso_top = h * (0.48 + rng.uniform(-0.04, 0.04))
    torso = np.maximum(np.abs(xx - actor_x) - 0.09 * w, np.maximum(torso_top - yy, yy - h * 1.05))
    _paint(scene, torso, attire)
    head_r = 0.10 * unit
    _paint(scene, np.hypot(xx - actor_x, yy - (torso_top - 1.2 * head_r)) - head_r, SKIN)
    shoulder = np.array([actor_x + 0.07 * w, torso_top + 0.05 * h], np.float32)
    return scene, attire, shoulder


def render_video_with_boxes(spec: VideoSpec, config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """The frames of one video, uint8 (T, H, W, 3), and the foreground object's box in each frame, float32
    (T, 4) [x0, y0, x1, y1) in pixels (x1, y1 exclusive: one past the last painted column and row)."""
    rng = np.random.default_rng(spec.render_seed)
    w, h, k = config.width, config.height, config.num_activities
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    unit = min(w, h)
    scene, attire, shoulder = _static_scene(spec, rng, xx, yy, k)

    gain, tint, slope = lighting_params(spec.context["lighting"], k)
    light = gain * np.asarray(tint, np.float32) * (1.0 + slope * (xx / w - 0.5))[..., None]

    anchor = np.array([w * (0.64 + rng.uniform(-0.05, 0.05)), h * (0.50 + rng.uniform(-0.06, 0.06))])
    size = 0.15 * unit * rng.uniform(0.85, 1.15)
    amplitude = 0.12 * unit
    noise_std = config.noise / 255.0 * rng.uniform(0.75, 1.25)

    frames = np.empty((spec.num_frames, h, w, 3), np.uint8)
    boxes = np.full((spec.num_frames, 4), np.nan, np.float32)
    for step, start, end in spec.segments:
        sig = step_signature(step)
        colour = np.clip(np.asarray(sig["colour"], np.float32) + rng.uniform(-0.04, 0.04, 3), 0, 1)
        speed, phase = rng.uniform(0.8, 1.25), rng.uniform(0, 2 * np.pi)
        # All frames of a step at once: (n, 1, 1) per-frame values broadcast over (h, w).
        dx, dy, scale = _motion(sig["motion"], np.arange(end - start) / config.fps, amplitude, speed, phase)
        cx, cy = (anchor[0] + dx)[:, None, None], (anchor[1] + dy)[:, None, None]
        canvas = np.repeat(scene[None], end - start, axis=0)
        # The arm (a thick segment from the shoulder to the object) ties the object to the actor.
        sx, sy = cx - shoulder[0], cy - shoulder[1]
        norm = np.array([np.array([a, b]) @ np.array([a, b]) for a, b in zip(sx.ravel(), sy.ravel())])[:, None, None]
        thickness = 0.035 * unit
        ys, xs = _window([cx.min(), shoulder[0]], [cx.max(), shoulder[0]], [cy.min(), shoulder[1]],
                         [cy.max(), shoulder[1]], thickness, h, w)
        x, y = xx[ys, xs], yy[ys, xs]
        along = np.clip(((x - shoulder[0]) * sx + (y - shoulder[1]) * sy) / norm, 0, 1)
        arm = np.hypot(x - shoulder[0] - along * sx, y - shoulder[1] - along * sy) - thickness
        _paint(canvas[:, ys, xs], arm, attire)
        radius = size * scale[:, None, None]
        ys, xs = _window([cx.min()], [cx.max()], [cy.min()], [cy.max()], SHAPE_REACH * radius.max(), h, w)
        shape = _shape_distance(sig["shape"], xx[ys, xs] - cx, yy[ys, xs] - cy, radius)
        _paint(canvas[:, ys, xs], shape, colour)
        boxes[start:end] = _boxes(shape < 0.5) + np.array([xs.start, ys.start] * 2, np.float32)
        canvas *= light
        # One float32 draw for the whole step (the noise is most of the rendering time: float32 halves it).
        noise = rng.standard_normal(canvas.shape, dtype=np.float32)
        noise *= np.float32(noise_std)
        canvas += noise
        canvas *= 255.0
        canvas += 0.5
        frames[start:end] = np.clip(canvas, 0, 255, out=canvas)  # cast to uint8 on assignment (truncates)
    return frames, boxes


def _window(x_low: list, x_high: list, y_low: list, y_high: list, reach: float, h: int, w: int
            ) -> tuple[slice, slice]:
    """(rows, cols) slices of the pixels within `reach` (+1 for the anti-aliased edge) of the given extents.

    Painting is confined to this window: outside it the paint's alpha is exactly 0, which leaves a pixel
    bit-identical, so only the window needs the (float64) distance fields.
    """
    margin = reach + 2.0
    x0, x1 = int(np.floor(min(x_low) - margin)), int(np.ceil(max(x_high) + margin)) + 1
    y0, y1 = int(np.floor(min(y_low) - margin)), int(np.ceil(max(y_high) + margin)) + 1
    return slice(min(max(y0, 0), h), min(max(y1, 0), h)), slice(min(max(x0, 0), w), min(max(x1, 0), w))


def _boxes(inside: np.ndarray) -> np.ndarray:
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


def write_boxes(path: Path, boxes: np.ndarray) -> None:
    """A box file (docs/EXTRACT.md): `frame,x0,y0,x1,y1` in pixels, one row per frame that has a box."""
    lines = ["frame,x0,y0,x1,y1"]
    lines += [f"{f},{b[0]:g},{b[1]:g},{b[2]:g},{b[3]:g}" for f, b in enumerate(boxes.tolist())
              if not np.isnan(b).any()]
    Path(path).write_text("\n".join(lines) + "\n")


def render_all(folder: Path, specs: list[VideoSpec], config: SyntheticConfig, progress: bool = True) -> None:
    """Render and write every video (and its box file) of `specs` under `folder`, over one forked process per
    core. Each video is drawn from its own seeded spec, so the files are the same however many processes
    draw them."""
    from tqdm import tqdm

    jobs = [(folder, spec, config) for spec in specs]
    with _pool(min(os.cpu_count() or 1, 8)) as pool:
        done = pool.imap_unordered(_render_one, jobs, chunksize=8) if pool else map(_render_one, jobs)
        for _ in tqdm(done, total=len(jobs), desc="synthetic videos", unit="video", disable=not progress):
            pass


def _render_one(job: tuple) -> None:
    folder, spec, config = job
    frames, boxes = render_video_with_boxes(spec, config)
    write_video(folder / spec.path, frames, config.fps)
    write_boxes(folder / spec.boxes_path, boxes)


@contextlib.contextmanager
def _pool(workers: int):
    """A pool of forked renderers, or None (render in this process) with one core or where fork is missing."""
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        yield None
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield pool
