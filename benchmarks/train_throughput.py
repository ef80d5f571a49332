"""Training data-path throughput: cmdcl's FeatureData vs a per-item h5py Dataset + DataLoader.

    python benchmarks/train_throughput.py            # COIN-sized: 11,000 videos x 64 frames x 512 dims, float16
    python benchmarks/train_throughput.py --small    # seconds; what the test suite runs

The feature file is generated once in the documented format (ShardWriter) and cached in benchmarks/out/.
Each measurement runs in its own Python process so that its peak RSS (resource.getrusage) is its own:
  fast   FeatureData (one chunked read into a float16 tensor) + one epoch of linear-probe steps
  naive  torch Dataset reading one video per __getitem__ through h5py + DataLoader(num_workers=2), same steps
  cmdcl  seconds per epoch of the CMDCL head (H=6, all frames) on a subset, extrapolated to the full set
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def peak_rss_bytes(children: bool = False) -> int:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss * 1024  # kilobytes on Linux


# ---------------------------------------------------------------------------------------------- data

def feature_file(out: Path, videos: int, frames: int, dim: int, classes: int, steps: int) -> Path:
    """The cached benchmark file, written through ShardWriter (parts, then one contiguous shard)."""
    from cmdcl.core.store import ShardWriter, TextBank, VideoRecord, shard_is_done

    path = out / f"coin-like-{videos}x{frames}x{dim}.h5"
    if shard_is_done(path):
        return path
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    text = TextBank(class_names=[f"task {i}" for i in range(classes)],
                    class_embeddings=rng.standard_normal((classes, dim)).astype(np.float32),
                    step_names=[f"step {i}" for i in range(steps)],
                    step_embeddings=rng.standard_normal((steps, dim)).astype(np.float32), templates=["{}"])
    attrs = {"frames": frames, "embed_dim": dim, "num_classes": classes, "num_steps": steps, "patch_grid": 0,
             "model_name": "benchmark", "pretrained": "random", "weights_sha256": "", "image_size": 224,
             "preprocess": {}, "sampler": {"kind": "uniform"}, "precision": "fp16", "dataset": "coin-like",
             "shard_index": 0, "num_shards": 1}
    writer = ShardWriter(path, attrs, text, flush_every=512)
    started = time.time()
    for i in range(videos):
        label = int(rng.integers(classes))
        labels = np.zeros(classes, np.uint8)
        labels[label] = 1
        step_vec = np.zeros(steps, np.uint8)
        step_vec[rng.integers(steps, size=4)] = 1
        valid = frames if i % 10 else frames // 2
        writer.add(VideoRecord(
            video_id=f"v{i:06d}", split="train" if i % 10 else "test", path=f"/coin/v{i:06d}.mp4", label=label,
            labels=labels, steps=step_vec, fps=30.0, duration=150.0, num_frames=4500,
            frame_index=np.minimum(np.arange(frames), valid - 1) * 70, timestamps_ms=np.arange(frames) * 2333.0,
            frame_mask=np.arange(frames) < valid,
            features=rng.standard_normal((frames, dim), dtype=np.float32).astype(np.float16)))
    writer.finalize()
    print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.time() - started:.0f}s", file=sys.stderr)
    return path


# ---------------------------------------------------------------------------------------------- measurements

def _linear_step(model, optimizer, features, mask, label):
    import torch.nn.functional as F

    weights = mask.float().unsqueeze(-1)
    video = (features * weights).sum(1) / weights.sum(1).clamp(min=1)
    loss = F.cross_entropy(model(video), label)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _warm_linear(path: Path):
    """Model and optimiser after one step on random data: torch's lazily loaded runtime (hundreds of MB,
    e.g. on the first optimiser step) is then resident before the data path is measured."""
    import h5py
    import torch

    with h5py.File(path, "r") as f:
        frames, dim = f["videos/features"].shape[1:]
        classes = int(f.attrs["num_classes"])
    model = torch.nn.Linear(dim, classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    _linear_step(model, optimizer, torch.randn(2, frames, dim), torch.ones(2, frames, dtype=torch.bool),
                 torch.zeros(2, dtype=torch.long))
    return model, optimizer


def measure_fast(path: Path, batch_size: int) -> dict:
    from cmdcl.head.data import FeatureData, epoch_batches

    model, optimizer = _warm_linear(path)
    baseline = peak_rss_bytes()
    started = time.time()
    data = FeatureData(path, "train", mode="memory", log=lambda m: None)
    loaded = time.time()
    for rows in epoch_batches(np.arange(len(data)), batch_size, seed=0, epoch=0):
        batch = data.batch(rows)
        _linear_step(model, optimizer, batch["features"], batch["frame_mask"], batch["label"])
    done = time.time()
    return {"videos": len(data), "load_s": loaded - started, "epoch_s": done - loaded, "total_s": done - started,
            "videos_per_s": len(data) / (done - started), "videos_per_s_after_load": len(data) / (done - loaded),
            "peak_rss": peak_rss_bytes(), "rss_before": baseline}


class NaiveH5Dataset:
    """The usual per-item Dataset: one h5py read of one video per __getitem__, file opened per worker."""

    def __init__(self, path: Path, rows: np.ndarray):
        self.path, self.rows, self.handle = str(path), rows, None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        import h5py
        import torch

        if self.handle is None:  # opened lazily inside each worker (h5py handles do not survive fork)
            self.handle = h5py.File(self.path, "r")
        videos, row = self.handle["videos"], int(self.rows[i])
        return (torch.from_numpy(videos["features"][row].astype(np.float32)),
                torch.from_numpy(videos["frame_mask"][row]), int(videos["label"][row]))


def measure_naive(path: Path, batch_size: int, workers: int) -> dict:
    import h5py
    import torch

    model, optimizer = _warm_linear(path)
    baseline = peak_rss_bytes()
    started = time.time()
    with h5py.File(path, "r") as f:
        rows = np.flatnonzero(np.array([s.decode() if isinstance(s, bytes) else s for s in f["videos/split"][()]])
                              == "train")
    loader = torch.utils.data.DataLoader(NaiveH5Dataset(path, rows), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, generator=torch.Generator().manual_seed(0))
    for features, mask, label in loader:
        _linear_step(model, optimizer, features, mask, label)
    done = time.time()
    return {"videos": len(rows), "total_s": done - started, "videos_per_s": len(rows) / (done - started),
            "peak_rss": peak_rss_bytes(), "peak_rss_workers": peak_rss_bytes(children=True), "rss_before": baseline}


def measure_cmdcl(path: Path, batch_size: int, subset: int, layers: int) -> dict:
    import torch

    from cmdcl.head.model.config import HeadConfig
    from cmdcl.head.data import FeatureData, epoch_batches
    from cmdcl.head.model.factory import build_model
    from cmdcl.head.training.train import head_loss, param_groups

    data = FeatureData(path, "train", mode="memory", log=lambda m: None)
    rows = np.arange(min(subset, len(data)))
    fs = data.feature_set
    cfg = HeadConfig(method="cmdcl", sta_layers=layers)
    model = build_model(cfg, fs.text, {"F": data.frames, "D": data.dim, "C": fs.dims["C"], "S": fs.dims["S"],
                                       "P": 0}, multilabel=False)
    model.fit_dictionaries(*data.numpy_features(rows))
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    started = time.time()
    for batch_rows in epoch_batches(rows, batch_size, seed=0, epoch=0):
        batch = data.batch(batch_rows)
        loss = head_loss(model(batch["features"], batch["frame_mask"]), batch, False, cfg.aux_step_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
    seconds = time.time() - started
    return {"videos": len(rows), "layers": layers, "frames": data.frames, "epoch_s": seconds,
            "videos_per_s": len(rows) / seconds, "full_epoch_s_estimate": seconds * len(data) / len(rows),
            "train_videos": len(data), "threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------------------------- main

SIZES = {"full": dict(videos=11000, frames=64, dim=512, classes=180, steps=778, subset=512),
         "small": dict(videos=256, frames=16, dim=64, classes=10, steps=20, subset=64)}


def run(args: argparse.Namespace) -> dict:
    size = dict(SIZES["small" if args.small else "full"])
    for key in ("videos", "frames", "dim", "subset"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    path = feature_file(Path(args.out), size["videos"], size["frames"], size["dim"], size["classes"], size["steps"])
    jobs = {"fast": ["fast"], "naive": ["naive"], "cmdcl": ["cmdcl"]}
    if args.skip_cmdcl:
        jobs.pop("cmdcl")
    results = {}
    for name in jobs:
        if args.in_process:
            results[name] = measure(name, path, args, size)
        else:
            command = [sys.executable, __file__, "--measure", name, "--file", str(path), "--batch-size",
                       str(args.batch_size), "--workers", str(args.workers), "--subset", str(size["subset"]),
                       "--layers", str(args.layers), "--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    file_bytes = path.stat().st_size
    fast, naive = results["fast"], results["naive"]
    report = {"file": str(path), "file_bytes": file_bytes, "size": size, "batch_size": args.batch_size,
              "workers": args.workers, "threads": args.threads, **results,
              "speedup": fast["videos_per_s"] / naive["videos_per_s"],
              "fast_peak_rss_over_file": fast["peak_rss"] / file_bytes,
              "fast_data_rss_over_file": (fast["peak_rss"] - fast["rss_before"]) / file_bytes}
    return report


def measure(name: str, path: Path, args: argparse.Namespace, size: dict) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    if name == "fast":
        return measure_fast(path, args.batch_size)
    if name == "naive":
        return measure_naive(path, args.batch_size, args.workers)
    return measure_cmdcl(path, args.batch_size, size["subset"], args.layers)


def print_report(report: dict) -> None:
    gib = 2 ** 30
    fast, naive = report["fast"], report["naive"]
    size = report["size"]
    print(f"file: {report['file']}  {report['file_bytes'] / gib:.2f} GiB  "
          f"({size['videos']} videos x {size['frames']} frames x {size['dim']} dims, float16)")
    print(f"batch size {report['batch_size']}, torch threads {report['threads']}")
    print(f"FeatureData + linear step : {fast['videos_per_s']:9.0f} videos/s over one epoch incl. loading "
          f"({fast['videos']} videos: load {fast['load_s']:.2f}s + epoch {fast['epoch_s']:.2f}s; "
          f"{fast['videos_per_s_after_load']:.0f} videos/s once loaded)")
    print(f"h5py Dataset + DataLoader : {naive['videos_per_s']:9.0f} videos/s (num_workers={report['workers']}, "
          f"{naive['total_s']:.2f}s)")
    print(f"speed-up                  : {report['speedup']:.1f}x")
    print(f"peak RSS FeatureData      : {fast['peak_rss'] / gib:.2f} GiB = {report['fast_peak_rss_over_file']:.2f}x "
          f"the file; torch runtime before loading {fast['rss_before'] / gib:.2f} GiB, so the data path adds "
          f"{(fast['peak_rss'] - fast['rss_before']) / gib:.2f} GiB = {report['fast_data_rss_over_file']:.2f}x the file")
    print(f"peak RSS naive            : {naive['peak_rss'] / gib:.2f} GiB main, "
          f"{naive['peak_rss_workers'] / gib:.2f} GiB largest worker")
    if "cmdcl" in report:
        c = report["cmdcl"]
        print(f"cmdcl head H={c['layers']} F={c['frames']} CPU ({c['threads']} threads): {c['epoch_s']:.2f}s for "
              f"{c['videos']} videos ({c['videos_per_s']:.0f} videos/s) -> ~{c['full_epoch_s_estimate'] / 60:.1f} "
              f"min per epoch of {c['train_videos']} training videos")


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="tiny sizes (seconds), as the test suite runs it")
    parser.add_argument("--videos", type=int)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--dim", type=int)
    parser.add_argument("--subset", type=int, help="videos for the cmdcl epoch timing")
    parser.add_argument("--layers", type=int, default=6, help="H for the cmdcl timing")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in each measurement (1: the linear step is tiny, and spinning OpenMP "
                             "threads on shared cores distorts timings)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "out"))
    parser.add_argument("--skip-cmdcl", action="store_true")
    parser.add_argument("--in-process", action="store_true", help="measure in this process (peak RSS mixes)")
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("--measure", choices=["fast", "naive", "cmdcl"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:  # child process: one measurement, one JSON line
        size = {"subset": args.subset}
        print(json.dumps(measure(args.measure, Path(args.file), args, size)))
        return None
    report = run(args)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    main()
