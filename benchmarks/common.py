"""Shared pieces of the benchmark scripts: realistic test videos (cached), machine info, GPU sampling.

Benchmarks are scripts, not tests: they print numbers and write JSON; nothing here asserts a speed.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


# ------------------------------------------------------------------------------------------ videos

@dataclass(frozen=True)
class VideoSpec:
    """One generated video: what a downloaded COIN/Breakfast clip looks like to a decoder."""

    video_id: str
    seconds: float
    height: int
    width: int
    fps: int
    gop_s: float  # keyframe interval in seconds
    seed: int

    @property
    def frames(self) -> int:
        return int(round(self.seconds * self.fps))

    @property
    def gop(self) -> int:
        return max(1, int(round(self.gop_s * self.fps)))

    def file_name(self) -> str:
        return (f"{self.video_id}-{self.width}x{self.height}-{self.fps}fps-{self.seconds:g}s-gop{self.gop_s:g}s"
                f"-seed{self.seed}.mp4")


def draw_specs(count: int, seed: int = 0, seconds: tuple[float, float] = (60, 180),
               sizes: tuple[tuple[int, int], ...] = ((240, 320), (360, 640)), fps: tuple[int, ...] = (25, 30),
               gop_s: tuple[float, float] = (2, 10), prefix: str = "v") -> list[VideoSpec]:
    """`count` seeded video specs: lengths and keyframe intervals uniform in their ranges, sizes and rates
    drawn from the lists (lengths rounded to whole seconds, intervals to 0.5 s)."""
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(count):
        height, width = sizes[int(rng.integers(len(sizes)))]
        specs.append(VideoSpec(
            video_id=f"{prefix}{i:03d}", seconds=float(round(rng.uniform(*seconds))), height=height, width=width,
            fps=int(fps[int(rng.integers(len(fps)))]), gop_s=float(round(2 * rng.uniform(*gop_s)) / 2),
            seed=seed * 100_003 + i))
    return specs


class SceneRenderer:
    """Frames that cost a decoder what real footage costs: a textured scene under a slow camera pan,
    a few moving objects, light flicker and sensor noise (so x264 spends real bits on every frame)."""

    def __init__(self, height: int, width: int, seed: int):
        self.height, self.width = height, width
        self.rng = np.random.default_rng(seed)
        # A scene twice the frame size: low-frequency colour blobs plus fine texture.
        big_h, big_w = 2 * height, 2 * width
        coarse = self.rng.uniform(40, 215, (big_h // 32 + 2, big_w // 32 + 2, 3)).astype(np.float32)
        scene = np.repeat(np.repeat(coarse, 32, 0), 32, 1)[:big_h, :big_w]
        kernel = np.ones(17, np.float32) / 17  # box blur, separable: smooth the blocks into blobs
        for axis in (0, 1):
            scene = np.apply_along_axis(lambda m: np.convolve(m, kernel, mode="same"), axis, scene)
        scene += self.rng.normal(0, 12, scene.shape).astype(np.float32)
        self.scene = np.clip(scene, 0, 255).astype(np.float32)
        self.objects = [dict(size=int(self.rng.integers(height // 10, height // 4)),
                             colour=self.rng.uniform(0, 255, 3).astype(np.float32),
                             speed=self.rng.uniform(0.2, 1.0, 2), phase=self.rng.uniform(0, 2 * np.pi, 2))
                        for _ in range(3)]
        self.noise = self.rng.normal(0, 4, (8, height, width, 1)).astype(np.float32)

    def frame(self, t: float, index: int) -> np.ndarray:
        h, w = self.height, self.width
        # Camera: slow Lissajous pan over the scene.
        y = int((0.5 + 0.5 * np.sin(0.07 * t)) * h)
        x = int((0.5 + 0.5 * np.sin(0.05 * t + 1.0)) * w)
        canvas = self.scene[y:y + h, x:x + w].copy()
        for obj in self.objects:
            s = obj["size"]
            oy = int((0.5 + 0.4 * np.sin(obj["speed"][0] * t + obj["phase"][0])) * (h - s))
            ox = int((0.5 + 0.4 * np.sin(obj["speed"][1] * t + obj["phase"][1])) * (w - s))
            canvas[oy:oy + s, ox:ox + s] = obj["colour"]
        canvas *= 0.9 + 0.1 * np.sin(0.3 * t)  # lighting
        canvas += self.noise[index % len(self.noise)]
        return np.clip(canvas, 0, 255).astype(np.uint8)


def write_video(path: Path, spec: VideoSpec, preset: str = "veryfast", crf: int = 23, bframes: int = 3,
                codec: str = "libx264") -> Path:
    """H.264 (libx264 through PyAV) with a fixed keyframe interval, B-frames, yuv420p: the settings of typical
    web video, in the container `path`'s suffix names (another `codec` for containers H.264 does not go in).
    Written to a temporary name and renamed, so a cached file is always complete."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    render = SceneRenderer(spec.height, spec.width, spec.seed)
    rate = Fraction(spec.fps)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.codec_context.gop_size = spec.gop
        # scenecut=0: keyframes exactly every `gop` frames, so the interval is what the spec says.
        if codec == "libx264":
            stream.options = {"preset": preset, "crf": str(crf), "bf": str(bframes), "keyint": str(spec.gop),
                              "min-keyint": str(spec.gop), "scenecut": "0"}
        for i in range(spec.frames):
            frame = av.VideoFrame.from_ndarray(render.frame(i / spec.fps, i), format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    os.replace(tmp, path)
    return path


def video_set(specs: list[VideoSpec], folder: Path = OUT / "videos", log=print) -> list[Path]:
    """The videos of `specs`, generated on first use and reused afterwards (the file name is the spec)."""
    paths = []
    started, made = time.time(), 0
    for spec in specs:
        path = folder / spec.file_name()
        if not path.is_file():
            write_video(path, spec)
            made += 1
        paths.append(path)
    if made:
        log(f"generated {made} videos in {folder} ({time.time() - started:.0f} s)")
    return paths


def write_manifest(root: Path, specs: list[VideoSpec], paths: list[Path]) -> Path:
    """A `manifest` dataset (docs/EXTRACT.md) over the given videos, for `cmdcl extract --dataset manifest`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("activity a\nactivity b\n")
    rows = [{"video_id": spec.video_id, "path": str(path.resolve()), "split": "train", "label": i % 2, "steps": []}
            for i, (spec, path) in enumerate(zip(specs, paths))]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def video_stats(specs: list[VideoSpec], paths: list[Path]) -> dict:
    seconds = [s.seconds for s in specs]
    return {"videos": len(specs), "total_s": float(sum(seconds)), "total_frames": int(sum(s.frames for s in specs)),
            "seconds_min_max": [min(seconds), max(seconds)],
            "sizes": sorted({f"{s.width}x{s.height}" for s in specs}), "fps": sorted({s.fps for s in specs}),
            "gop_s_min_max": [min(s.gop_s for s in specs), max(s.gop_s for s in specs)],
            "bytes": int(sum(p.stat().st_size for p in paths)), "codec": "h264 (libx264 veryfast crf 23, 3 B-frames)",
            "specs": [asdict(s) for s in specs]}


# ------------------------------------------------------------------------------------------ machine

def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def busy_processes(limit: int = 5) -> list[str]:
    """The busiest processes right now (`top -bn1`), to say what else was running during a measurement."""
    try:
        out = subprocess.run(["top", "-bn1", "-o", "%CPU"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("PID")), None)
    if start is None:
        return []
    rows = [line.split() for line in lines[start + 1:]]
    # Columns from %CPU on: %CPU %MEM TIME+ COMMAND; idle processes are left out.
    busy = [" ".join(row[8:]) for row in rows if len(row) > 11 and row[8] not in ("0.0", "0")]
    return busy[:limit]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    import av
    import open_clip
    import torch

    from cmdcl.extract.decoders import backend_version

    info = {"cpu_model": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform(), "torch": str(torch.__version__),
            "open_clip": str(open_clip.__version__), "av": str(av.__version__),
            "decord": backend_version("decord"), "numpy": np.__version__, "load_average": load_average(),
            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


class GpuSampler:
    """Samples `nvidia-smi` GPU utilisation and memory in a thread while a measurement runs.

    The mean utilisation says which side is the bottleneck: near 100 % the GPU encoder, well below
    it the decoders (the GPU waits for frames).
    """

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.samples: list[tuple[float, float, float]] = []  # (t, util %, memory MiB)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.available = shutil.which("nvidia-smi") is not None

    def _loop(self) -> None:
        start = time.time()
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits", "-i", "0"],
                                     capture_output=True, text=True, timeout=5).stdout
                util, mem = (float(v) for v in out.strip().splitlines()[0].split(","))
                self.samples.append((round(time.time() - start, 2), util, mem))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                pass
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "GpuSampler":
        if self.available:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> dict:
        utils = [u for _, u, _ in self.samples]
        return {"samples": len(utils), "mean_util": float(np.mean(utils)) if utils else None,
                "max_memory_mib": max((m for _, _, m in self.samples), default=None),
                "util_series": [u for u in utils][:600]}


def write_json(path: str | Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
