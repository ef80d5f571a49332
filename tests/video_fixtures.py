"""Tiny synthetic videos for tests (written with PyAV), whose pixels say which frame they are.

Frame `i` of a "index"-pattern video is split into a top and a bottom half filled with flat grey levels
that encode `i % 16` and `i // 16` in steps of 16 (so up to 256 frames), which survives lossy
compression, resizing and centre crops: `frame_index_of(decoded_frame)` recovers `i`.
A thin coloured stripe in the middle gives the encoder something other than flat grey to look at.

Bad-file helpers write the broken inputs users meet in the wild: zero-byte, truncated, random bytes,
a text file with a video extension.
"""
from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

LEVEL_STEP = 16


def index_frame(i: int, height: int, width: int) -> np.ndarray:
    """The (height, width, 3) uint8 RGB frame that encodes index `i` (0 <= i < 256)."""
    if not 0 <= i < 256:
        raise ValueError(f"index pattern encodes 0..255, got {i}")
    frame = np.empty((height, width, 3), np.uint8)
    half = height // 2
    frame[:half] = (i % 16) * LEVEL_STEP + LEVEL_STEP // 2
    frame[half:] = (i // 16) * LEVEL_STEP + LEVEL_STEP // 2
    stripe = slice(half - max(1, height // 16), half + max(1, height // 16))
    frame[stripe, : width // 3] = (200, 30, 30)
    frame[stripe, width // 3: 2 * width // 3] = (30, 200, 30)
    frame[stripe, 2 * width // 3:] = (30, 30, 200)
    return frame


def frame_index_of(frame: np.ndarray) -> int:
    """Recover the index from a decoded (possibly resized or cropped) frame of the index pattern."""
    h = frame.shape[0]
    top = frame[h // 8: 3 * h // 8].astype(np.float64).mean()
    bottom = frame[5 * h // 8: 7 * h // 8].astype(np.float64).mean()
    low = int(round((top - LEVEL_STEP // 2) / LEVEL_STEP))
    high = int(round((bottom - LEVEL_STEP // 2) / LEVEL_STEP))
    return int(np.clip(high, 0, 15)) * 16 + int(np.clip(low, 0, 15))


def write_test_video(path: str | Path, num_frames: int = 24, height: int = 48, width: int = 64, fps: float = 12.0,
                     codec: str = "mpeg4", pattern: str = "index", frame_times_s: Sequence[float] | None = None,
                     gop: int = 12, seed: int = 0) -> Path:
    """Write a small video whose frame `i` shows `index_frame(i)`; returns the path.

    `frame_times_s` gives each frame's presentation time for a variable-frame-rate video (the container
    time base is then 1/1000 s); otherwise frames are spaced 1/fps apart. `gop` is the keyframe interval,
    so tests exercise seeking. `pattern="noise"` writes random frames (seeded) instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if codec.startswith("libvpx") and "decord" in sys.modules:
        # decord's bundled FFmpeg/libvpx, once loaded, break PyAV's VP8/VP9 *encoder* in the same process
        # (avcodec_open2 returns EINVAL; decoding is unaffected): write the file from a fresh interpreter.
        args = dict(num_frames=num_frames, height=height, width=width, fps=fps, codec=codec, pattern=pattern,
                    frame_times_s=list(frame_times_s) if frame_times_s is not None else None, gop=gop, seed=seed)
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                f"from video_fixtures import write_test_video; write_test_video({str(path)!r}, **{args!r})")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return path

    import av

    rng = np.random.default_rng(seed)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast", "bf": "2", "keyint": str(gop), "min-keyint": str(gop)}
        else:
            stream.codec_context.bit_rate = 2_000_000
            stream.codec_context.qmax = 4
        if frame_times_s is not None:
            if len(frame_times_s) != num_frames:
                raise ValueError("frame_times_s needs one time per frame")
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(num_frames):
            if pattern == "index":
                image = index_frame(i, height, width)
            elif pattern == "noise":
                image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            else:
                raise ValueError(f"unknown pattern {pattern!r}")
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if frame_times_s is not None:
                frame.pts = int(round(frame_times_s[i] * 1000))
                frame.time_base = Fraction(1, 1000)
            else:
                frame.pts = i
                frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ------------------------------------------------------------------------------------------ bad files

def write_zero_byte(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_truncated(path: str | Path, source: str | Path | None = None, keep: float = 0.3, **video_kwargs) -> Path:
    """A real video cut to its first `keep` fraction of bytes (the header may survive, the data does not)."""
    path = Path(path)
    if source is None:
        source = write_test_video(path.with_name(path.stem + ".full" + path.suffix), **video_kwargs)
    data = Path(source).read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    if source != path and Path(source).name.endswith(".full" + path.suffix):
        Path(source).unlink()
    return path


def write_garbage(path: str | Path, size: int = 4096, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def write_text_file(path: str | Path, text: str = "this is not a video\n") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def extract_tiny_world(tmp_path: Path, train_per_class: int = 2, test_per_class: int = 1):
    """A 3-activity synthetic world (manifest with step segments) extracted with cmdcl-tiny at F=8.

    Returns (world root, shard path)."""
    from cmdcl.extract.datasets.synthetic import SyntheticConfig, generate_synthetic
    from cmdcl.extract.runner import ExtractConfig, run_extraction

    world = SyntheticConfig(seed=3, num_activities=3, num_steps=6, min_script_steps=3, max_script_steps=4,
                            train_per_class=train_per_class, test_per_class=test_per_class, ood_per_class=1,
                            pretrain_per_class=0, width=48, height=32, fps=4, min_seconds=3.0, max_seconds=4.0)
    root = generate_synthetic(tmp_path / "world", world, progress=False)
    summary = run_extraction(ExtractConfig(dataset="manifest", root=str(root), out_dir=str(tmp_path / "f"),
                                           model="cmdcl-tiny",
                                           pretrained="random", patch_grid=0, frames=8, workers=0, progress=False),
                             log=lambda m: None)
    return root, summary.shard_path


def tiny_video(path: Path) -> None:
    """A short video in the codec its extension implies: the `write_video` of the dataset fixtures' end-to-end runs."""
    codec = {".webm": "libvpx", ".avi": "mpeg4"}.get(path.suffix, "libx264")
    write_test_video(path, num_frames=10 + len(path.stem) % 7, height=36, width=48, fps=15.0, codec=codec, gop=5)
