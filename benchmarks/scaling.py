"""How cost grows: extraction time with video length and with F, training time per epoch with the dataset size.

    python benchmarks/scaling.py            # 640x360 videos of 30/60/120/240 s, F = 16..128; 128..1024 videos
    python benchmarks/scaling.py --tiny     # seconds; what the test suite runs

Writes benchmarks/out/scaling.json and the three-panel plot docs/scaling.png.

  length    run_extraction (cmdcl-tiny: the decode cost alone) over videos of each length, F = 64
  frames    the same over the 120 s videos for F = 16, 32, 64, 128
  training  one epoch of the CMDCL head (small H) over feature files of growing size, written with
            ShardWriter (benchmarks/train_throughput.py's generator), one torch thread
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, VideoSpec, load_average, machine_info, video_set, write_json, write_manifest  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"

FULL = dict(lengths=[30, 60, 120, 240], per_length=3, height=360, width=640, fps=30, gop_s=5.0,
            frames=[16, 32, 64, 128], frames_length=120, length_frames=64, workers=None,
            train_sizes=[128, 256, 512, 1024], train_frames=64, train_dim=512, classes=180, steps=778, layers=2)
TINY = dict(lengths=[1, 2, 4], per_length=1, height=48, width=64, fps=25, gop_s=0.5,
            frames=[4, 8], frames_length=2, length_frames=8, workers=1,
            train_sizes=[32, 64], train_frames=8, train_dim=32, classes=5, steps=10, layers=1)


def length_specs(length: float, size: dict, seed: int) -> list[VideoSpec]:
    return [VideoSpec(video_id=f"len{length:g}-{i}", seconds=float(length), height=size["height"],
                      width=size["width"], fps=size["fps"], gop_s=size["gop_s"], seed=seed * 1000 + i)
            for i in range(size["per_length"])]


def time_extraction(root: Path, frames: int, workers: int, scratch: Path, encoder) -> dict:
    from cmdcl.extract.runner import ExtractConfig, run_extraction

    shutil.rmtree(scratch, ignore_errors=True)
    cfg = ExtractConfig(dataset="manifest", root=str(root), out_dir=str(scratch), model="cmdcl-tiny",
                        pretrained="random", patch_grid=0, frames=frames,
                        workers=workers, device="cpu", precision="fp32", progress=False, templates=["{}"])
    load = load_average()
    started = time.perf_counter()
    summary = run_extraction(cfg, log=lambda m: None, encoder=encoder)
    seconds = time.perf_counter() - started
    shutil.rmtree(scratch, ignore_errors=True)
    return {"seconds": seconds, "videos": summary.extracted, "seconds_per_video": seconds / max(1, summary.extracted),
            "frames_encoded": summary.frames, "frames_per_s": summary.frames / seconds,
            "decode_worker_s_per_video": summary.decode_s / max(1, summary.extracted), "load_before": load}


def time_training(size: dict, videos: int, out: Path) -> dict:
    import torch

    import train_throughput

    path = train_throughput.feature_file(out, videos, size["train_frames"], size["train_dim"], size["classes"],
                                         size["steps"])
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as train_throughput: stable timings on shared cores
    load = load_average()
    try:
        result = train_throughput.measure_cmdcl(path, batch_size=32, subset=videos, layers=size["layers"])
    finally:
        torch.set_num_threads(previous)
    return {"videos": videos, "train_videos": result["videos"], "epoch_s": result["epoch_s"],
            "videos_per_s": result["videos_per_s"], "layers": size["layers"], "frames": size["train_frames"],
            "dim": size["train_dim"], "load_before": load}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    length, frames, train = report["length"], report["frames"], report["training"]

    ax = axes[0]
    x = [r["length_s"] for r in length]
    ax.plot(x, [r["seconds_per_video"] for r in length], "o-", label="cmdcl wall per video")
    ax.plot(x, [r["decode_worker_s_per_video"] for r in length], "s--", label="decode per video (worker)")
    ax.set(xlabel="video length (s)", ylabel="seconds per video",
           title=f"extraction vs length (F = {report['size']['length_frames']})")
    ax.legend(fontsize=8)

    ax = axes[1]
    x = [r["frames"] for r in frames]
    ax.plot(x, [r["seconds_per_video"] for r in frames], "o-", label="cmdcl wall per video")
    ax.plot(x, [r["decode_worker_s_per_video"] for r in frames], "s--", label="decode per video (worker)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(v) for v in x])
    ax.set(xlabel="F (sampled frames per video)", ylabel="seconds per video",
           title=f"extraction vs F ({report['size']['frames_length']:g} s videos)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)

    ax = axes[2]
    x = [r["train_videos"] for r in train]
    ax.plot(x, [r["epoch_s"] for r in train], "o-")
    ax.set(xlabel="training videos", ylabel="seconds per epoch",
           title=f"CMDCL head epoch (H = {report['size']['layers']}, F = {report['size']['train_frames']}, 1 thread)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(10)
    axes[0].set_ylim(bottom=0)
    axes[2].set_ylim(bottom=0)
    fig.suptitle(f"{report['machine']['cpu_model']}, {report['machine']['cores']} cores "
                 f"(load average {report['machine']['load_average'][0]:.1f} at start)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict:
    import torch

    from cmdcl.extract.models import load_encoder

    size = dict(TINY if args.tiny else FULL)
    workers = size["workers"] or max(1, min(8, (os.cpu_count() or 2) - 1))
    out = Path(args.out)
    torch.manual_seed(0)
    encoder = load_encoder("cmdcl-tiny", "random", device="cpu", precision="fp32", seed=0)
    report = {"machine": machine_info(), "size": size, "workers": workers}

    roots = {}
    for length in size["lengths"]:
        specs = length_specs(length, size, seed=length)
        paths = video_set(specs, out / "videos", log=lambda m: print(m, file=sys.stderr))
        roots[length] = write_manifest(out / "datasets" / f"scaling-{size['width']}x{size['height']}-{length:g}s",
                                       specs, paths)
    scratch = out / "scaling-run"
    time_extraction(roots[size["lengths"][0]], size["length_frames"], workers, scratch, encoder)  # warm-up

    report["length"] = []
    for length in size["lengths"]:
        row = time_extraction(roots[length], size["length_frames"], workers, scratch, encoder)
        report["length"].append({"length_s": length, **row})
        print(f"length {length:5g} s, F = {size['length_frames']:3d}: {row['seconds_per_video']:6.2f} s/video "
              f"({row['frames_per_s']:.0f} frames/s; decode {row['decode_worker_s_per_video']:.2f} worker-s/video)")
    report["frames"] = []
    for frames in size["frames"]:
        row = time_extraction(roots[size["frames_length"]], frames, workers, scratch, encoder)
        report["frames"].append({"frames": frames, **row})
        print(f"F = {frames:3d}, {size['frames_length']:g} s videos: {row['seconds_per_video']:6.2f} s/video "
              f"({row['frames_per_s']:.0f} frames/s; decode {row['decode_worker_s_per_video']:.2f} worker-s/video)")
    report["training"] = []
    for videos in size["train_sizes"]:
        row = time_training(size, videos, out)
        report["training"].append(row)
        print(f"training {row['train_videos']:5d} videos: {row['epoch_s']:6.1f} s/epoch "
              f"({row['videos_per_s']:.0f} videos/s, H = {row['layers']}, F = {row['frames']}, D = {row['dim']})")
    report["load_after"] = load_average()
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (seconds), as the test suite runs it")
    parser.add_argument("--out", default=str(OUT), help="video/feature cache and scaling.json")
    parser.add_argument("--plot", default=None,
                        help="plot path (default docs/scaling.png; with --tiny <out>/scaling.png)")
    args = parser.parse_args(argv)
    report = run(args)
    write_json(Path(args.out) / "scaling.json", report)
    default_plot = Path(args.out) / "scaling.png" if args.tiny else DOCS / "scaling.png"
    plot_path = Path(args.plot) if args.plot else default_plot
    plot(report, plot_path)
    report["plot"] = str(plot_path)
    print(f"wrote {Path(args.out) / 'scaling.json'} and {plot_path}")
    return report


if __name__ == "__main__":
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    main()
