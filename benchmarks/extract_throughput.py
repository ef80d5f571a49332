"""Extraction throughput: cmdcl's pipeline against the naive per-video pipeline, and against its limits.

    python benchmarks/extract_throughput.py                                  # cmdcl-tiny: decode-bound
    python benchmarks/extract_throughput.py --model ViT-B-16 --videos 4      # encode-bound on a CPU
    python benchmarks/extract_throughput.py --model ViT-L-14 --device cuda --precision fp16 --workers 16 --videos 256
    python benchmarks/extract_throughput.py --tiny                           # seconds; what the test suite runs
    python benchmarks/extract_throughput.py --compare-seek --videos 4        # --seek exact vs keyframe, wall time

Videos are generated once (seeded; H.264 with B-frames, 60-180 s, 320x240 and 640x360, 25/30 fps, a keyframe
every 2-10 s) and cached in benchmarks/out/videos/. Models have random weights: the same compute as real ones.
Four measurements in one process, same machine, same model, same videos, same F:

  cmdcl   extract.runner.run_extraction: W decode worker processes (decoder-side resize) overlapped with
          batched encoding of frames from several videos in the main process, HDF5 output
  naive   what most research code does, per video: decord VideoReader + get_batch at full size, open_clip's
          own PIL `preprocess` per frame, that video's frames encoded as one batch, one .npy per video
  decode  limit of the decode side: the same W workers decoding the same frames to the same size, nothing else
  encode  limit of the encode side: already decoded and preprocessed frames encoded in cmdcl's batches, with
          the torch threads cmdcl's encoder gets (all of torch's)

overlap efficiency = max(decode, encode) / cmdcl: 1.0 means cmdcl runs as fast as its slower side alone.

--compare-seek instead times `run_extraction` with --seek exact and with --seek keyframe on the same videos
(interleaved rounds, the fastest of each): keyframe seeking decodes one frame per sampled keyframe instead of
every frame from the keyframe before each sampled frame.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (OUT, GpuSampler, busy_processes, draw_specs, load_average, machine_info,  # noqa: E402
                    video_set, video_stats, write_json, write_manifest)

# The encode limit is timed on at most this many frames and extrapolated (the rate does not depend on content).
ENCODE_SAMPLE_FRAMES = 2048


def encoder_threads() -> int:
    """The torch threads run_extraction's encoder runs on: all of torch's, beside the decode workers too."""
    import torch

    return torch.get_num_threads()


# ---------------------------------------------------------------------------------------------- measurements

def measure_cmdcl(root: Path, encoder, args: argparse.Namespace, scratch: Path, seek: str | None = None) -> dict:
    """One full `run_extraction` over the dataset; wall time measured around the call."""
    from cmdcl.extract.runner import ExtractConfig, run_extraction

    out = scratch / "cmdcl"
    shutil.rmtree(out, ignore_errors=True)
    cfg = ExtractConfig(dataset="manifest", root=str(root), out_dir=str(out), model=args.model,
                        pretrained="random", patch_grid=0, frames=args.frames,
                        batch_size=args.batch_size, workers=args.workers, decoder=args.decoder, device=args.device,
                        precision=args.precision, progress=False, templates=["{}"], flush_every=64,
                        seek=seek or args.seek)
    load = load_average()
    with GpuSampler() as gpu:
        started = time.perf_counter()
        summary = run_extraction(cfg, log=lambda message: None, encoder=encoder)
        seconds = time.perf_counter() - started
    if summary.failed:
        raise RuntimeError(f"cmdcl failed on {summary.failed} videos: {summary.failures[:3]}")
    return {"seconds": seconds, "frames": summary.frames, "frames_per_s": summary.frames / seconds,
            "decode_worker_s": summary.decode_s, "main_waited_s": summary.wait_s,
            "preprocess_s": summary.preprocess_s, "encode_s": summary.encode_s, "write_s": summary.write_s,
            "workers": args.workers, "encoder_threads": encoder_threads(), "seek": cfg.seek,
            "load_before": load, "gpu": gpu.summary() if gpu.available else None}


def _naive_decode(path: str, frames: int):
    """decord at full size with its default (auto) threads, as research code calls it; PyAV where decord is missing."""
    from cmdcl.extract.decoders import decord_available
    from cmdcl.extract.sampler import FrameSampler

    sampler = FrameSampler(frames)
    if decord_available():
        import decord

        reader = decord.VideoReader(path)
        wanted = sampler.sample(len(reader)).valid
        return reader.get_batch(wanted.tolist()).asnumpy()
    import av  # the naive PyAV loop: decode everything, keep the wanted frames

    with av.open(path) as container:
        stream = container.streams.video[0]
        wanted = set(sampler.sample(stream.frames).valid.tolist())
        return np.stack([f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(stream)) if i in wanted])


def measure_naive(paths: list[Path], encoder, frames: int, scratch: Path) -> dict:
    import open_clip
    import torch
    from PIL import Image

    cfg = open_clip.get_model_preprocess_cfg(encoder.model)
    preprocess = open_clip.image_transform(cfg["size"], is_train=False, mean=cfg["mean"], std=cfg["std"],
                                           resize_mode=cfg["resize_mode"], interpolation=cfg["interpolation"])
    out = scratch / "naive"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    size = int(cfg["size"][0]) if isinstance(cfg["size"], (tuple, list)) else int(cfg["size"])
    encoder.encode_frames(torch.zeros(2, 3, size, size))  # warm-up at this thread count, like the other stages
    load = load_average()
    stage = {"decode_s": 0.0, "preprocess_s": 0.0, "encode_s": 0.0, "write_s": 0.0}
    total = 0
    with GpuSampler() as gpu:
        started = time.perf_counter()
        for path in paths:
            t0 = time.perf_counter()
            video = _naive_decode(str(path), frames)
            t1 = time.perf_counter()
            pixels = torch.stack([preprocess(Image.fromarray(frame)) for frame in video])
            t2 = time.perf_counter()
            features = encoder.encode_frames(pixels)
            t3 = time.perf_counter()
            np.save(out / f"{path.stem}.npy", features.numpy().astype(np.float16))
            t4 = time.perf_counter()
            for key, seconds in zip(stage, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                stage[key] += seconds
            total += len(video)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "frames": total, "frames_per_s": total / seconds, **stage,
            "torch_threads": torch.get_num_threads(), "load_before": load,
            "gpu": gpu.summary() if gpu.available else None}


def _decode_settings(encoder, frames: int, decoder: str | None = None, seek: str = "exact"):
    from cmdcl.extract.decode_pool import DecodeSettings
    from cmdcl.extract.sampler import FrameSampler

    # backend None: each video by its container, as run_extraction's default
    return DecodeSettings(sampler=FrameSampler(frames, seek=seek), image_size=encoder.image_size,
                          resize_mode=encoder.resize_mode, backend=decoder, fallback=True)


def start_worker_server(encoder, frames: int) -> None:
    """Start the runner's forkserver (it imports the decoders once, ~1 s) before anything is timed, so
    that the decode limit and cmdcl both pay only for forking their workers."""
    from cmdcl.extract.decode_pool import DecodePool

    DecodePool(1, _decode_settings(encoder, frames), timeout_s=60.0).close()


def measure_decode(root: Path, encoder, args: argparse.Namespace, keep_frames: int) -> tuple[dict, list[np.ndarray]]:
    """The runner's own decode pool (same workers, sampler, decoder-side size) with nothing after it.

    Returns the timing and the decoded frames of the first videos (up to `keep_frames`) for the encode limit.
    """
    from cmdcl.extract.datasets.registry import load_dataset
    from cmdcl.extract.decode_pool import DecodeFailure, DecodePool, DecodeTask, decode_inline

    items = sorted(load_dataset("manifest", str(root)).items, key=lambda item: item.video_id)
    settings = _decode_settings(encoder, args.frames, args.decoder, args.seek)
    tasks = [DecodeTask(key, item.video_id, item.path) for key, item in enumerate(items)]
    kept: dict[int, np.ndarray] = {}
    total, worker_s = 0, 0.0
    load = load_average()
    started = time.perf_counter()
    # nvdec decodes in this process, as the runner does: its frames are CUDA tensors.
    pool = DecodePool(args.workers, settings, timeout_s=600.0) if args.workers > 0 and args.decoder != "nvdec" else None
    try:
        for result in (pool.run(tasks) if pool else decode_inline(tasks, settings)):
            if isinstance(result, DecodeFailure):
                raise RuntimeError(f"decode failed: {result}")
            total += len(result.frames)
            worker_s += result.seconds
            if sum(len(f) for f in kept.values()) < keep_frames:
                kept[result.key] = result.frames
    finally:
        if pool is not None:
            pool.close()
    seconds = time.perf_counter() - started
    return ({"seconds": seconds, "frames": total, "frames_per_s": total / seconds, "worker_s": worker_s,
             "workers": args.workers, "decoder": settings.backend or "by container", "load_before": load},
            [kept[k] for k in sorted(kept)])


def measure_encode(clips: list[np.ndarray], encoder, batch_size: int, threads: int, total_frames: int) -> dict:
    """Encode preprocessed frames in batches of `batch_size` (preprocessing timed apart), scaled to `total_frames`."""
    import torch

    from cmdcl.extract.preprocess import FramePreprocessor

    preprocess = FramePreprocessor.from_encoder(encoder, device=encoder.device)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    load = load_average()
    try:
        started = time.perf_counter()
        pixels = torch.cat([preprocess(frames) for frames in clips])
        preprocess_s = time.perf_counter() - started
        # Warm-up: allocator, kernels; on a GPU a full batch, so cuBLAS/cuDNN pick their kernels for its shape.
        encoder.encode_frames(pixels[:batch_size if encoder.device.type == "cuda" else 8])
        started = time.perf_counter()
        for start in range(0, len(pixels), batch_size):
            encoder.encode_frames(pixels[start:start + batch_size])
        encode_s = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    sampled = len(pixels)
    rate = sampled / encode_s
    return {"seconds": total_frames / rate, "frames": total_frames, "frames_per_s": rate, "timed_frames": sampled,
            "timed_s": encode_s, "preprocess_frames_per_s": sampled / preprocess_s, "threads": threads,
            "batch_size": batch_size, "load_before": load}


# ---------------------------------------------------------------------------------------------- main

def run(args: argparse.Namespace) -> dict:
    import torch

    from cmdcl.extract.models import load_encoder

    out = Path(args.out)
    if args.tiny:
        specs = draw_specs(args.videos, seed=args.seed, seconds=(2, 4), sizes=((48, 64), (72, 96)), gop_s=(0.5, 1),
                           prefix="tiny")
    else:
        specs = draw_specs(args.videos, seed=args.seed, prefix="v")
    paths = video_set(specs, out / "videos", log=lambda m: print(m, file=sys.stderr))
    root = write_manifest(out / "datasets" / f"extract-{args.videos}-seed{args.seed}{'-tiny' if args.tiny else ''}",
                          specs, paths)
    scratch = out / "extract-runs"

    torch.manual_seed(args.seed)
    encoder = load_encoder(args.model, "random", device=args.device, precision=args.precision, seed=args.seed)
    threads = encoder_threads()
    report = {"machine": machine_info(), "busy_before": busy_processes(), "model": args.model,
              "device": str(encoder.device), "precision": encoder.precision, "frames_per_video": args.frames,
              "batch_size": args.batch_size, "workers": args.workers,
              "decoder": args.decoder or "default", "seek": args.seek, "videos": video_stats(specs, paths)}

    if args.workers > 0:
        start_worker_server(encoder, args.frames)
    if args.compare_seek:
        return compare_seek(report, root, encoder, args, scratch)
    runs: dict[str, list[dict]] = {"decode_limit": [], "encode_limit": [], "naive": [], "cmdcl": []}
    # Rounds interleave the four, so that a burst of load from other jobs hits one round, not one pipeline.
    for _ in range(args.repeat):
        decode, clips = measure_decode(root, encoder, args, keep_frames=ENCODE_SAMPLE_FRAMES)
        runs["decode_limit"].append(decode)
        runs["encode_limit"].append(measure_encode(clips, encoder, args.batch_size, threads, decode["frames"]))
        del clips
        runs["naive"].append(measure_naive(paths, encoder, args.frames, scratch))
        runs["cmdcl"].append(measure_cmdcl(root, encoder, args, scratch))
    shutil.rmtree(scratch, ignore_errors=True)
    # The fastest of the repeats: the one least disturbed by other processes (as timeit does).
    decode, encode, naive, cmdcl = (
        dict(min(runs[k], key=lambda r: r["seconds"]), all_seconds=[r["seconds"] for r in runs[k]])
        for k in ("decode_limit", "encode_limit", "naive", "cmdcl"))

    limit_s = max(decode["seconds"], encode["seconds"])
    report.update({
        "cmdcl": cmdcl, "naive": naive, "decode_limit": decode, "encode_limit": encode,
        "speedup_over_naive": cmdcl["frames_per_s"] / naive["frames_per_s"],
        "overlap_efficiency": limit_s / cmdcl["seconds"],
        "bottleneck": "decode" if decode["seconds"] >= encode["seconds"] else "encode",
        # With perfect overlap and both sides alone on their own cores, cmdcl / naive could reach this:
        "speedup_bound": naive["seconds"] / limit_s,
        "load_after": load_average(),
    })
    return report


def compare_seek(report: dict, root: Path, encoder, args: argparse.Namespace, scratch: Path) -> dict:
    """`run_extraction` with --seek exact and --seek keyframe, interleaved rounds, the fastest of each."""
    runs: dict[str, list[dict]] = {"exact": [], "keyframe": []}
    for _ in range(args.repeat):
        for seek in runs:
            runs[seek].append(measure_cmdcl(root, encoder, args, scratch, seek=seek))
    shutil.rmtree(scratch, ignore_errors=True)
    best = {seek: dict(min(rows, key=lambda r: r["seconds"]), all_seconds=[r["seconds"] for r in rows])
            for seek, rows in runs.items()}
    report.update({"seek_exact": best["exact"], "seek_keyframe": best["keyframe"],
                   "keyframe_speedup": best["exact"]["seconds"] / best["keyframe"]["seconds"],
                   "load_after": load_average()})
    return report


def print_seek_report(r: dict) -> None:
    print(f"model {r['model']}, F = {r['frames_per_video']}, {r['workers']} decode worker(s); "
          f"videos: {r['videos']['videos']} ({r['videos']['total_s'] / 60:.0f} min, keyframe every "
          f"{r['videos']['gop_s_min_max'][0]:g}-{r['videos']['gop_s_min_max'][1]:g} s)")
    for seek in ("exact", "keyframe"):
        row = r[f"seek_{seek}"]
        print(f"--seek {seek:9s} {row['seconds']:7.1f} s  {row['frames']:6d} frames stored (valid)  "
              f"decode {row['decode_worker_s']:.1f} worker-s  rounds {[round(x, 1) for x in row['all_seconds']]}")
    print(f"keyframe / exact wall time: {r['keyframe_speedup']:.2f}x faster; load average before "
          f"{r['machine']['load_average']}, after {r['load_after']}")


def print_report(r: dict) -> None:
    m, v = r["machine"], r["videos"]
    print(f"machine: {m['cpu_model']}, {m['cores']} cores, torch {m['torch']}, decord {m['decord']}, av {m['av']}"
          + (f", GPU {m['gpu']}" if m.get("gpu") else "") + f"; load average {' '.join(map(str, m['load_average']))}")
    print(f"videos: {v['videos']} ({v['seconds_min_max'][0]:g}-{v['seconds_min_max'][1]:g} s, {'/'.join(v['sizes'])}, "
          f"{'/'.join(map(str, v['fps']))} fps, keyframe every {v['gop_s_min_max'][0]:g}-{v['gop_s_min_max'][1]:g} s; "
          f"{v['total_s'] / 60:.0f} min, {v['total_frames']} frames)")
    print(f"model {r['model']} ({r['device']}, {r['precision']}), F = {r['frames_per_video']}, "
          f"batch {r['batch_size']}, "
          f"{r['workers']} decode worker(s), encoder threads {r['encode_limit']['threads']}")
    c, n, d, e = r["cmdcl"], r["naive"], r["decode_limit"], r["encode_limit"]
    rows = [
        ("cmdcl (run_extraction)", c, f"main waited {c['main_waited_s']:.1f} s for decoded videos, "
                                      f"encode {c['encode_s']:.1f} s, preprocess {c['preprocess_s']:.1f} s"),
        ("naive (per video)", n, f"decode {n['decode_s']:.1f} s, PIL preprocess {n['preprocess_s']:.1f} s, "
                                 f"encode {n['encode_s']:.1f} s ({n['torch_threads']} threads)"),
        ("limit: decode only", d, f"{d['workers']} worker(s), {d['decoder']}"),
        ("limit: encode only", e, f"{e['threads']} thread(s), batch {e['batch_size']}, timed on "
                                   f"{e['timed_frames']} frames"),
    ]
    if len(c["all_seconds"]) > 1:
        print(f"fastest of {len(c['all_seconds'])} interleaved rounds; every round's seconds are in the JSON")
    print(f"{'':26s} {'seconds':>9s} {'frames/s':>10s}")
    for name, row, note in rows:
        print(f"{name:26s} {row['seconds']:9.1f} {row['frames_per_s']:10.1f}   {note}")
    print(f"cmdcl / naive              {r['speedup_over_naive']:.2f}x  (bound with perfect overlap: "
          f"{r['speedup_bound']:.2f}x)")
    print(f"overlap efficiency         {r['overlap_efficiency']:.2f}  = max(decode, encode) / cmdcl; "
          f"{r['bottleneck']}-bound")
    for name, row in (("cmdcl", c), ("naive", n)):
        if row.get("gpu") and row["gpu"]["samples"]:
            g = row["gpu"]
            print(f"GPU utilisation during {name}: mean {g['mean_util']:.0f} % over {g['samples']} samples, "
                  f"peak memory {g['max_memory_mib']:.0f} MiB; samples {g['util_series'][:20]}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cmdcl-tiny", help="open_clip name; random weights (same compute)")
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--frames", type=int, default=64, help="F, sampled frames per video")
    parser.add_argument("--batch-size", type=int, default=256, help="cmdcl's frames per encoder batch")
    parser.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1),
                        help="decode workers (default as `cmdcl extract`: one per core)")
    parser.add_argument("--decoder", choices=["decord", "pyav", "nvdec"], default=None,
                        help="cmdcl's decoder (default: per container, as `cmdcl extract`); the naive pipeline "
                             "always uses decord")
    parser.add_argument("--seek", choices=["exact", "keyframe"], default="exact",
                        help="cmdcl's and the decode limit's seeking (the naive pipeline decodes the exact frames)")
    parser.add_argument("--compare-seek", action="store_true",
                        help="only time run_extraction with --seek exact against --seek keyframe")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="fp32 on CPU, fp16 on CUDA by default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of the four measurements, interleaved; the fastest of each is reported")
    parser.add_argument("--tiny", action="store_true", help="a few tiny videos, F = 8 (seconds; the test suite)")
    parser.add_argument("--out", default=str(OUT), help="video cache and scratch folder")
    parser.add_argument("--json", help="write every number and the machine info here")
    args = parser.parse_args(argv)
    if args.tiny:
        args.videos = min(args.videos, 3)
        args.frames = min(args.frames, 8)
        args.batch_size = min(args.batch_size, 16)
    report = run(args)
    (print_seek_report if args.compare_seek else print_report)(report)
    if args.json:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    main()
