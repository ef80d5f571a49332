"""Rendering of the synthetic world (extract/datasets/synthetic.py): colours and their names, the scene
text of a video, the foreground signature of each atomic action, the frames of one video with its boxes, and
the bit-exact MP4 and box writers. Pure functions of a `VideoSpec` and a `SyntheticConfig`; the world's
sampling stays in synthetic.py, the drawing primitives in synthetic_draw.py and the moving world's camera,
light and props in synthetic_motion.py.
"""
from __future__ import annotations

import colorsys
import contextlib
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .synthetic_draw import SHAPE_REACH, hsv, paint, pixel_boxes, shape_distance, window
from .synthetic_motion import (CAMERA, LIGHT, PROPS, SCENE, camera_margin, camera_path, crop, light_path,
                               motion_rng, paint_props, prop_colour, prop_paths, prop_shape, prop_text,
                               reverses_motion, scene_clutter)
from .synthetic_spec import PROP_FACTOR, SyntheticConfig, VideoSpec

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


def background_colour(value: int, num_values: int) -> np.ndarray:
    return hsv(value / num_values + 0.08, 0.45, 0.80)


def attire_colour(value: int, num_values: int) -> np.ndarray:
    return hsv(value / num_values + 0.55, 0.85, 0.70)


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


def context_text(context: dict[str, int], num_values: int, props: int = 0) -> str:
    """The scene of a video in words: its background, the actor's attire, the lighting and its `props` props
    (when the context has the "prop" factor), as web alt-text would describe the picture."""
    background = colour_name(background_colour(context["background"], num_values))
    texture = TEXTURES[context["background"] % len(TEXTURES)]
    pattern = "" if texture == "plain" else f" with {texture}"
    attire = colour_name(attire_colour(context["attire"], num_values))
    gain, tint, _ = lighting_params(context["lighting"], num_values)
    brightness = "dim" if gain < 0.9 else "bright" if gain > 1.05 else "soft"
    warmth = "warm" if tint[0] > tint[2] else "cool"
    article = "an" if background[0] in "aeiou" else "a"
    text = f"in {article} {background} kitchen{pattern}, {attire} apron, {brightness} {warmth} light"
    if props and PROP_FACTOR in context:
        text += ", " + prop_text(context[PROP_FACTOR], num_values, props, colour_name)
    return text


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


@dataclass
class RenderedVideo:
    """One rendered video: its frames and, in pixels of the frame, [x0, y0, x1, y1) boxes (x1, y1 exclusive:
    one past the last painted column and row; NaN where nothing is in view)."""
    frames: np.ndarray  # (T, H, W, 3) uint8
    boxes: np.ndarray  # (T, 4) float32: the action's object
    prop_boxes: np.ndarray  # (T, M, 4) float32: each prop (M = config.props)


def render_video(spec: VideoSpec, config: SyntheticConfig) -> np.ndarray:
    """The frames of one video, uint8 (T, H, W, 3)."""
    return render(spec, config).frames


def render_video_with_boxes(spec: VideoSpec, config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """The frames of one video, uint8 (T, H, W, 3), and the action's object's box in each frame (T, 4)."""
    video = render(spec, config)
    return video.frames, video.boxes


def _static_scene(spec: VideoSpec, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, k: int,
                  frame: tuple[int, int], origin: int, clutter: np.random.Generator | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scene, attire colour, shoulder point): the textured background (plus cupboards and tiles drawn from
    `clutter`, the scene's own stream, when the camera moves) and the actor's body, with per-video jitter (the
    first draws of the video's random stream). The scene is the (h, w) frame, or a canvas `origin` pixels
    larger on each side for a moving camera."""
    h, w = frame
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
        pattern = np.zeros(xx.shape, np.float32)
    # float32 throughout: the float64 scene that stripes and checks gave made every later pass 2-10x slower
    scene = (bg * (1.0 - 0.22 * pattern[..., None])).astype(np.float32)
    if clutter is not None:
        scene_clutter(clutter, scene, xx, yy, bg)

    attire = attire_colour(spec.context["attire"], k)
    actor_x = origin + w * (0.27 + rng.uniform(-0.05, 0.05))
    torso_top = origin + h * (0.48 + rng.uniform(-0.04, 0.04))
    torso = np.maximum(np.abs(xx - actor_x) - 0.09 * w, np.maximum(torso_top - yy, yy - (origin + h * 1.05)))
    paint(scene, torso, attire)
    head_r = 0.10 * unit
    paint(scene, np.hypot(xx - actor_x, yy - (torso_top - 1.2 * head_r)) - head_r, SKIN)
    shoulder = np.array([actor_x + 0.07 * w, torso_top + 0.05 * h], np.float32)
    return scene, attire, shoulder


@dataclass
class _Moving:
    """A video's time-varying confounders over all its frames (synthetic_motion.py); None where off."""
    starts: np.ndarray | None = None  # (T, 2) top-left corner of each frame's window on the scene canvas
    gain: np.ndarray | None = None  # (T,) brightness factor
    slope: np.ndarray | None = None  # (T,) change of the left-right light gradient
    centres: np.ndarray | None = None  # (M, T, 2) props' centres on the canvas
    radii: np.ndarray | None = None  # (M,)
    shape: str = ""
    colour: np.ndarray | None = None


def _moving(spec: VideoSpec, config: SyntheticConfig, margin: int) -> _Moving:
    moving = _Moving()
    reverse = reverses_motion(spec, config)
    if margin:
        offsets = camera_path(motion_rng(spec, CAMERA), spec.num_frames, config.fps,
                              config.camera_motion * config.width, margin, config.motion_timing, reverse)
        moving.starts = margin + offsets
    if config.light_change:
        moving.gain, moving.slope = light_path(motion_rng(spec, LIGHT), spec.num_frames, config.fps,
                                               config.light_change, config.motion_timing, reverse)
    if config.props:
        rng = motion_rng(spec, PROPS)
        value = spec.context[PROP_FACTOR]
        moving.shape = prop_shape(value)
        moving.colour = np.clip(prop_colour(value, config.num_activities) + rng.uniform(-0.04, 0.04, 3), 0, 1)
        moving.centres, moving.radii = prop_paths(rng, config, spec.num_frames, margin)
    return moving


def render(spec: VideoSpec, config: SyntheticConfig) -> RenderedVideo:
    """The frames of one video and the boxes of its action's object and of its props (`RenderedVideo`).

    With a moving camera the scene (background and actor) is drawn once on a canvas `margin` pixels larger
    than the frame on each side, each frame is its window at that frame's offset, and the arm, the object and
    the props are painted on the frame where they are in it (scene position minus the window's corner).
    """
    rng = np.random.default_rng(spec.render_seed)
    w, h, k = config.width, config.height, config.num_activities
    margin = camera_margin(config)  # the scene canvas is the frame plus `margin` on each side
    yy, xx = np.mgrid[0:h + 2 * margin, 0:w + 2 * margin].astype(np.float32)
    unit = min(w, h)
    clutter = motion_rng(spec, SCENE) if margin else None  # its own stream: the static draws stay as they are
    scene, attire, shoulder = _static_scene(spec, rng, xx, yy, k, (h, w), margin, clutter)
    moving = _moving(spec, config, margin)
    if margin:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)  # the frame's pixels, where the foreground is painted

    gain, tint, slope = lighting_params(spec.context["lighting"], k)
    ramp = xx / w - 0.5
    light = gain * np.asarray(tint, np.float32) * (1.0 + slope * ramp)[..., None]

    anchor = np.array([margin + w * (0.64 + rng.uniform(-0.05, 0.05)), margin + h * (0.50 + rng.uniform(-0.06, 0.06))])
    size = 0.15 * unit * rng.uniform(0.85, 1.15)
    amplitude = 0.12 * unit
    noise_std = config.noise / 255.0 * rng.uniform(0.75, 1.25)

    frames = np.empty((spec.num_frames, h, w, 3), np.uint8)
    boxes = np.full((spec.num_frames, 4), np.nan, np.float32)
    prop_boxes = np.full((spec.num_frames, config.props, 4), np.nan, np.float32)
    for step, start, end in spec.segments:
        sig = step_signature(step)
        colour = np.clip(np.asarray(sig["colour"], np.float32) + rng.uniform(-0.04, 0.04, 3), 0, 1)
        speed, phase = rng.uniform(0.8, 1.25), rng.uniform(0, 2 * np.pi)
        # All frames of a step at once: (n, 1, 1) per-frame values broadcast over (h, w).
        dx, dy, scale = _motion(sig["motion"], np.arange(end - start) / config.fps, amplitude, speed, phase)
        cx, cy = (anchor[0] + dx)[:, None, None], (anchor[1] + dy)[:, None, None]
        if margin:  # scene -> frame coordinates: minus each frame's window corner
            corner = moving.starts[start:end, :, None, None]
            canvas = crop(scene, moving.starts[start:end], h, w)
            cx, cy = cx - corner[:, 0], cy - corner[:, 1]
            arm_from = (shoulder[0] - corner[:, 0], shoulder[1] - corner[:, 1])
        else:
            canvas, arm_from = np.repeat(scene[None], end - start, axis=0), shoulder
        boxes[start:end] = _paint_action(canvas, xx, yy, cx, cy, arm_from, attire, sig["shape"], colour,
                                         size * scale[:, None, None], unit)
        if config.props:
            centres = moving.centres[:, start:end] - (moving.starts[None, start:end] if margin else 0.0)
            prop_boxes[start:end] = paint_props(canvas, centres, moving.radii, moving.shape, moving.colour)
        canvas *= light
        if moving.gain is not None:  # (n, 1, w, 3): a full last axis keeps the broadcast fast (4x)
            change = moving.gain[start:end, None] * (1.0 + moving.slope[start:end, None] * ramp[0])
            canvas *= np.repeat(change[:, None, :, None], 3, axis=3)
        # One float32 draw for the whole step (the noise is most of the rendering time: float32 halves it).
        noise = rng.standard_normal(canvas.shape, dtype=np.float32)
        noise *= np.float32(noise_std)
        canvas += noise
        canvas *= 255.0
        canvas += 0.5
        frames[start:end] = np.clip(canvas, 0, 255, out=canvas)  # cast to uint8 on assignment (truncates)
    return RenderedVideo(frames, boxes, prop_boxes)


def _paint_action(canvas: np.ndarray, xx: np.ndarray, yy: np.ndarray, cx: np.ndarray, cy: np.ndarray,
                  shoulder: tuple, attire: np.ndarray, shape_name: str, colour: np.ndarray,
                  radius: np.ndarray, unit: int) -> np.ndarray:
    """Paint the arm (a thick segment from the shoulder to the object, tying it to the actor) and the
    action's object at (cx, cy) (n, 1, 1) in every frame of `canvas`; returns the object's (n, 4) boxes.
    The shoulder's x and y are numbers, or (n, 1, 1) when the camera moves the actor."""
    h, w = xx.shape
    sx, sy = cx - shoulder[0], cy - shoulder[1]
    norm = np.array([np.array([a, b]) @ np.array([a, b]) for a, b in zip(sx.ravel(), sy.ravel())])[:, None, None]
    thickness = 0.035 * unit
    ys, xs = window([cx.min(), np.min(shoulder[0])], [cx.max(), np.max(shoulder[0])],
                    [cy.min(), np.min(shoulder[1])], [cy.max(), np.max(shoulder[1])], thickness, h, w)
    x, y = xx[ys, xs] - shoulder[0], yy[ys, xs] - shoulder[1]  # from the shoulder
    along = np.clip((x * sx + y * sy) / norm, 0, 1)
    arm = np.hypot(x - along * sx, y - along * sy) - thickness
    paint(canvas[:, ys, xs], arm, attire)
    ys, xs = window([cx.min()], [cx.max()], [cy.min()], [cy.max()], SHAPE_REACH * radius.max(), h, w)
    shape = shape_distance(shape_name, xx[ys, xs] - cx, yy[ys, xs] - cy, radius)
    paint(canvas[:, ys, xs], shape, colour)
    return pixel_boxes(shape < 0.5) + np.array([xs.start, ys.start] * 2, np.float32)


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


def write_prop_boxes(path: Path, boxes: np.ndarray) -> None:
    """A box file of several objects (docs/EXTRACT.md): `frame,object,x0,y0,x1,y1` in pixels, one row per frame
    and object in view; `boxes` is (T, M, 4), object = its index in 0..M-1."""
    lines = ["frame,object,x0,y0,x1,y1"]
    lines += [f"{f},{m},{b[0]:g},{b[1]:g},{b[2]:g},{b[3]:g}" for f, row in enumerate(boxes.tolist())
              for m, b in enumerate(row) if not np.isnan(b).any()]
    Path(path).write_text("\n".join(lines) + "\n")


def render_all(folder: Path, specs: list[VideoSpec], config: SyntheticConfig, progress: bool = True) -> None:
    """Render and write every video (and its box files) of `specs` under `folder`, over one forked process per
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
    video = render(spec, config)
    write_video(folder / spec.path, video.frames, config.fps)
    write_boxes(folder / spec.boxes_path, video.boxes)
    if config.props:
        write_prop_boxes(folder / spec.prop_boxes_path, video.prop_boxes)


@contextlib.contextmanager
def _pool(workers: int):
    """A pool of forked renderers, or None (render in this process) with one core or where fork is missing."""
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        yield None
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield pool
