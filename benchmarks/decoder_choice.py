"""Which decoder is fastest for each container, and what keyframe seeking saves: the evidence behind
`cmdcl.extract.decoders.DEFAULT_BY_CONTAINER` and `--seek keyframe`.

    python benchmarks/decoder_choice.py                       # every container, both backends, exact seeking
    python benchmarks/decoder_choice.py --containers mp4 --seek exact keyframe --seconds 120

Per container, the same seeded videos (320x240, 25 fps, a keyframe every `--gop-s` seconds; H.264 with
B-frames in mp4/mkv/mov, VP8 in webm, MPEG-4 Part 2 in avi) are decoded by each backend the way a decode
worker does (`FallbackDecoder.read_sampled`, no fallback, F sampled frames resized in the decoder to
224 short side, one thread). One process: this is the per-worker rate; the fastest of `--repeat` runs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, VideoSpec, load_average, machine_info, write_json, write_video  # noqa: E402

CODECS = {"mp4": "libx264", "mkv": "libx264", "mov": "libx264", "webm": "libvpx", "avi": "mpeg4"}


def videos(container: str, count: int, seconds: float, gop_s: float, folder: Path) -> list[Path]:
    paths = []
    for i in range(count):
        spec = VideoSpec(f"choice{i}", seconds, 240, 320, 25, gop_s, seed=i)
        path = folder / f"{Path(spec.file_name()).stem}-{CODECS[container]}.{container}"
        if not path.is_file():
            write_video(path, spec, codec=CODECS[container])
        paths.append(path)
    return paths


def decode_rate(paths: list[Path], backend: str, frames: int, seek: str, repeat: int) -> dict:
    from cmdcl.extract.decoders import fallback_decoder
    from cmdcl.extract.preprocess import decode_size
    from cmdcl.extract.sampler import FrameSampler

    sampler = FrameSampler(frames, seek=seek)
    best = None
    for _ in range(repeat):
        started, total = time.perf_counter(), 0
        for path in paths:
            decoder = fallback_decoder(backend, fallback=False)
            decoder.open(path, lambda h, w: decode_size(h, w, 224, "shortest"))
            total += len(decoder.read_sampled(sampler, salvage=False).frames)
            decoder.close()
        seconds = time.perf_counter() - started
        best = seconds if best is None else min(best, seconds)
    return {"seconds": best, "frames": total, "frames_per_s": total / best}


def main(argv: list[str] | None = None) -> dict:
    from cmdcl.extract.decoders import BACKENDS, backend_available

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", nargs="+", default=list(CODECS), choices=list(CODECS))
    parser.add_argument("--backends", nargs="+", default=None, help="default: every installed backend")
    parser.add_argument("--seek", nargs="+", default=["exact"], choices=["exact", "keyframe"])
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--gop-s", type=float, default=5.0, help="keyframe interval, seconds")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    report = {"machine": machine_info(), "load_before": load_average(), "args": vars(args), "rates": {}}
    print(f"load average {load_average()}; F = {args.frames}, {args.videos} videos of {args.seconds:g} s per "
          f"container, keyframe every {args.gop_s:g} s")
    print(f"{'container':10s} {'backend':8s} {'seek':9s} {'seconds':>8s} {'frames/s':>9s}")
    # Every video is written before decord is first imported: its bundled libvpx breaks PyAV's VP8 encoder.
    paths = {c: videos(c, args.videos, args.seconds, args.gop_s, Path(args.out) / "choice-videos")
             for c in args.containers}
    args.backends = args.backends or [b for b in BACKENDS if backend_available(b)]
    for container in args.containers:
        for backend in args.backends:
            for seek in args.seek:
                row = decode_rate(paths[container], backend, args.frames, seek, args.repeat)
                report["rates"][f"{container}/{backend}/{seek}"] = row
                print(f"{container:10s} {backend:8s} {seek:9s} {row['seconds']:8.2f} {row['frames_per_s']:9.1f}",
                      flush=True)
    report["load_after"] = load_average()
    print(f"load average after: {report['load_after']}")
    if args.json:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
