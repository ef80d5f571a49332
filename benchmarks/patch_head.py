"""Cost of the patch path of the CMDCL head (docs/BENCHMARKS.md, "Patch head").

    python benchmarks/patch_head.py                      # reduced COIN-shaped set on CPU, projected to COIN
    python benchmarks/patch_head.py --demo-features runs/demo/features/<tag>/shard-00000-of-00001.h5
    python benchmarks/patch_head.py --small              # seconds (sizes for a smoke run)

Prints, per head variant, seconds per training step (forward + backward + AdamW, with the grounding losses
the trainer adds where the file has step segments; steps interleaved in one process so contention hits every
variant alike) and the projection to a COIN epoch (8,909 training videos,
F=64, P=16, D=768, S=778, C=180; ceil(8909 / batch) steps). Variants: the learned patch mediator (default: the
class read by the GRU over the frame-step evidence, with the dense step loss), the same mediator with the
class from V' and T' and no step loss ("classifier head"),
the same head with patch grounding loss (`--patch-grounding 1`, off by default), the same head
without patches (frame tokens only), and the old head (cosine mediator after divided
space/time attention over all F x P tokens). Also the COIN feature volume with patches and a one-epoch
train-head run with data_mode memmap on a patch file (the bounded-memory path), with its peak RSS.
"""
from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COIN = {"train": 8909, "videos": 11827, "F": 64, "P": 16, "D": 768, "S": 778, "C": 180}


def variants() -> dict[str, dict]:
    from cmdcl.head.model.config import ADDED_LATER, LEGACY

    # "patch (learned)" is what train-head builds where the file has step segments: the GRU read-out over the
    # frame-step evidence; "classifier head" is the same mediator with the class from V' and T' (step_readout
    # none, no step loss), the head before the read-out. LEGACY rows: configs saved before the learned mediator.
    old = {**ADDED_LATER, **LEGACY}
    fresh = {"step_readout": "gru"}
    return {"patch (learned)": {"use_patches": True, **fresh},
            "classifier head": {"use_patches": True, "step_readout": "none", "step_loss": 0.0},
            "+ patch grounding": {"use_patches": True, "patch_grounding": 1.0, **fresh},
            "frames only": {"use_patches": False, **fresh},
            "old frames only": {**old, "use_patches": False}, "old patch head": {**old, "use_patches": True}}


def coin_like_file(path: Path, videos: int, frames: int, grid: int, dim: int, classes: int, steps: int) -> Path:
    """A COIN-shaped feature file with patches (random unit features, a few step segments per video)."""
    from cmdcl.core.store import ShardWriter, TextBank, VideoRecord

    rng = np.random.default_rng(0)
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)  # noqa: E731
    text = TextBank(class_names=[f"task {i}" for i in range(classes)],
                    class_embeddings=unit(rng.standard_normal((classes, dim))),
                    step_names=[f"step {i}" for i in range(steps)],
                    step_embeddings=unit(rng.standard_normal((steps, dim))),
                    templates=["{}"])
    attrs = {"frames": frames, "embed_dim": dim, "num_classes": classes, "num_steps": steps, "patch_grid": grid,
             "model_name": "benchmark", "pretrained": "random", "weights_sha256": "", "image_size": 224,
             "preprocess": {}, "sampler": {"kind": "uniform"}, "precision": "fp16", "dataset": "coin-like",
             "shard_index": 0, "num_shards": 1}
    writer = ShardWriter(path, attrs, text, flush_every=64)
    for i in range(videos):
        label, step_ids = int(rng.integers(classes)), rng.choice(steps, 3, replace=False)
        step_vec = np.zeros(steps, np.uint8)
        step_vec[step_ids] = 1
        writer.add(VideoRecord(
            video_id=f"v{i:05d}", split="train" if i % 8 else "val", path=f"/coin/v{i:05d}.mp4", label=label,
            labels=np.eye(classes, dtype=np.uint8)[label], steps=step_vec, fps=30.0, duration=float(frames),
            num_frames=frames * 30, frame_index=np.arange(frames) * 30, timestamps_ms=np.arange(frames) * 1000.0,
            frame_mask=np.ones(frames, bool), features=unit(rng.standard_normal((frames, dim))).astype(np.float16),
            patches=unit(rng.standard_normal((frames, grid * grid, dim))).astype(np.float16),
            segments=np.array([[s, 4 * k, 4 * k + 4] for k, s in enumerate(step_ids)], np.float32)))
    writer.finalize()
    return path


def step_seconds(features: str, options: dict, batch: int, layers: int, steps: int,
                 skip: tuple[str, ...] = ()) -> dict[str, float]:
    """Seconds per training step of each variant on `features`' train split, measured interleaved."""
    import torch

    from cmdcl.head.model.config import HeadConfig
    from cmdcl.head.data import FeatureData
    from cmdcl.head.model.factory import build_model
    from cmdcl.head.training.grounding_loss import frame_step_table
    from cmdcl.head.training.loss import auxiliary_losses

    data = FeatureData(features, "train", use_patches=True, mode="memory", log=lambda m: None)
    fs = data.feature_set
    dims = {"F": data.frames, "D": data.dim, "C": fs.dims["C"], "S": fs.dims["S"], "P": data.patches_per_frame}
    models = {}
    for name, extra in variants().items():
        if name in skip:
            continue
        cfg = HeadConfig(**{**extra, **options}, sta_layers=layers)
        model = build_model(cfg, fs.text, {**dims, "P": dims["P"] if cfg.use_patches else 0}, False)
        models[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4), cfg)
    rows = np.arange(min(batch, len(data)))
    b = data.batch(rows)
    table = frame_step_table(data)  # the trainer's grounding targets (None: no segments in the file)
    frame_step = torch.from_numpy(table[rows]) if table is not None else None
    times = {name: [] for name in models}
    for i in range(steps + 1):  # the first round warms up
        for name, (model, opt, cfg) in models.items():
            t0 = time.perf_counter()
            out = model(b["features"], b["frame_mask"], b["patches"] if cfg.use_patches else None)
            loss = torch.nn.functional.cross_entropy(out["logits"], b["label"])
            loss = loss + auxiliary_losses(cfg, model, out, b, frame_step)  # what the trainer adds
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:
                times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def memmap_epoch(features: Path, out: Path) -> dict:
    """One epoch of train-head with data_mode memmap and auto patches: it must run, in bounded memory."""
    from cmdcl.head.model.config import HeadConfig
    from cmdcl.head.training.train import train

    lines = []
    t0 = time.perf_counter()
    train(features, out, HeadConfig(epochs=1, sta_layers=1, data_mode="memmap", batch_size=8, min_val_videos=1),
          resume="never", progress=False, log=lines.append)
    return {"seconds": time.perf_counter() - t0,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "log": [line for line in lines if "patch" in line or "memmap" in line.lower()]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument("--videos", type=int, default=48, help="videos of the reduced COIN-shaped file")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    parser.add_argument("--layers", type=int, default=6, help="H for the COIN projection (paper: 6)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="batch of the COIN-shaped timing (projection scales)")
    parser.add_argument("--skip-old-patch", action="store_true", help="leave out the old patch head (slowest)")
    parser.add_argument("--skip-memmap", action="store_true", help="leave out the memmap training run")
    parser.add_argument("--demo-features", help="also time the demo's heads (H=2, batch 32) on these features")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    f, d, s, c, videos = ((8, 64, 40, 10, 24) if args.small
                          else (COIN["F"], COIN["D"], COIN["S"], COIN["C"], args.videos))
    volume = COIN["videos"] * COIN["F"] * COIN["P"] * COIN["D"] * 2
    print(f"COIN patch tokens, float16: {COIN['videos']} videos x {COIN['F']} x {COIN['P']} x {COIN['D']} = "
          f"{volume / 1e9:.1f} GB (+{volume / COIN['P'] / 1e9:.2f} GB frame features): use --data-mode memmap")
    with tempfile.TemporaryDirectory() as tmp:
        path = coin_like_file(Path(tmp) / "coin-like.h5", videos, f, 4, d, c, s)
        # first, so that the peak RSS is the memmap run's (the timing below holds its batch in memory)
        result = (memmap_epoch(path, Path(tmp) / "run") if not args.skip_memmap
                  else {"seconds": 0.0, "peak_rss_mib": 0.0, "log": []})
        print(f"train-head --data-mode memmap, patches auto, 1 epoch on {videos} videos: {result['seconds']:.1f} s, "
              f"peak RSS {result['peak_rss_mib']:.0f} MiB")
        for line in result["log"]:
            print("  log:", line)
        batch = min(args.batch, videos * 7 // 8)
        skip = ("old patch head",) if args.skip_old_patch else ()
        per_step = step_seconds(str(path), {}, batch, args.layers, args.steps, skip)
        epoch_steps = math.ceil(COIN["train"] / batch)
        print(f"\nCPU ({args.threads} threads), F={f} P=16 D={d} S={s} C={c}, H={args.layers}, batch {batch}:")
        for name, sec in per_step.items():
            print(f"  {name:<16} {sec:7.3f} s/step  -> COIN epoch ({epoch_steps} steps) ~ "
                  f"{sec * epoch_steps / 60:6.1f} min"
                  f"  ({sec / per_step['old frames only']:.2f}x old frames only)")
    if args.demo_features:
        demo = step_seconds(args.demo_features, {}, 32, 2, max(args.steps, 20))
        print("\ndemo features (H=2, batch 32):")
        for name, sec in demo.items():
            print(f"  {name:<16} {sec * 1000:7.1f} ms/step  ({sec / demo['old frames only']:.2f}x old frames only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
