"""Where a head's training time goes on the demo's features, and what several seeds cost.

    python benchmarks/seed_cost.py -f runs/demo/features/*/shard-00000-of-00001.h5 [--methods linear,cmdcl]
                                   [--seeds 0,1,2] [--configs 1:full,1:conv,2:full,2:conv] [--skip-breakdown]

1. breakdown: one seed per method (torch threads 1, as the demo trains): seconds reading the features,
   fitting dictionaries (CMDCL's KMeans), in optimiser steps (metrics.jsonl epoch_seconds), and the rest
   (per-epoch validation, memory refresh, checkpoints), plus the epoch at which the training-loss
   convergence rule (head/training/schedule.py) would have stopped.
2. seeds: every method x seed trained through `train_jobs` (features read once), per --configs entry
   (worker processes; full schedule or the convergence stop): wall seconds, and seconds per run.
Nothing here asserts a speed; it prints numbers (and writes them to OUT/seed_cost.json).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path


def breakdown(features: str, methods: list[str], out: Path, sta_layers: int) -> list[dict]:
    from cmdcl.head.model.config import HeadConfig
    from cmdcl.head.data import load_train_data
    from cmdcl.head.training.train import train

    t0 = time.perf_counter()
    data = load_train_data(features, log=lambda m: None)
    read_s = time.perf_counter() - t0
    rows = []
    for method in methods:
        messages: list[tuple[float, str]] = []
        run = out / "breakdown" / method
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.perf_counter()
        summary = train(features, run, HeadConfig(method=method, sta_layers=sta_layers, converge_patience=0),
                        progress=False, data=data, log=lambda m: messages.append((time.perf_counter(), m)))
        total = time.perf_counter() - t0
        fit = next((float(m.split(" in ")[-1].rstrip("s.")) for _, m in messages if m.startswith("fitted")), 0.0)
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        steps = sum(x.get("epoch_seconds", 0.0) for x in lines)
        rows.append({"method": method, "total_s": round(total, 2), "fit_dictionaries_s": round(fit, 2),
                     "steps_s": round(steps, 2), "validation_and_rest_s": round(total - fit - steps, 2),
                     "epochs": summary["epochs_run"], "would_converge_at": _would_converge(lines),
                     "val_top1_last": lines[-1].get("val_top1"),
                     "train_loss": [round(x["train_loss"], 4) for x in lines],
                     "train_top1": [round(x.get("train_top1", 0), 3) for x in lines],
                     "val_top1": [x.get("val_top1") for x in lines]})
        print(json.dumps(rows[-1]), flush=True)
    print(f"features read once: {read_s:.2f} s")
    return rows


CANDIDATES = ((3, 0.05), (3, 0.1), (5, 0.05), (5, 0.1), (8, 0.1))  # (--converge-patience, --converge-delta)


def _would_converge(lines: list[dict]) -> dict[str, int | None]:
    """Per candidate rule, the epoch at which it would have stopped this run (None: never)."""
    from cmdcl.head.training.schedule import Convergence

    stops: dict[str, int | None] = {}
    for patience, delta in CANDIDATES:
        rule = Convergence(patience, delta)
        stops[f"p{patience}-d{delta:g}"] = next(
            (x["epoch"] for x in lines if rule.update(x["train_loss"], x["epoch"], x.get("train_top1"))), None)
    return stops


def seeds_cost(features: str, methods: list[str], seeds: list[int], workers: int, out: Path,
               sta_layers: int, converge: bool) -> dict:
    import dataclasses

    from cmdcl.head.model.config import HeadConfig
    from cmdcl.head.training.seeds import train_jobs

    root = out / f"seeds-w{workers}-{'conv' if converge else 'full'}"
    shutil.rmtree(root, ignore_errors=True)
    base = {} if converge else {"converge_patience": 0}
    jobs = [(dataclasses.replace(HeadConfig(method=m, sta_layers=sta_layers, **base), seed=s), root / m / f"seed-{s}")
            for m in methods for s in seeds]
    t0 = time.perf_counter()
    runs = train_jobs(features, jobs, workers=workers, progress=False, log=lambda m: None)
    wall = time.perf_counter() - t0
    row = {"workers": workers, "converge": converge, "runs": len(jobs), "wall_s": round(wall, 1),
           "load_average_after": round(os.getloadavg()[0], 2),
           "wall_per_run_s": round(wall / len(jobs), 2),
           "epochs": [r["epochs_run"] for r in runs],
           "val_top1": [round(r["best"].get("top1", float("nan")), 3) for r in runs]}
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--features", required=True)
    parser.add_argument("--methods", default="linear,transformer,cmdcl")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--configs", default="1:full,1:conv,2:full,2:conv",
                        help="WORKERS:full (train-head's full schedule, --converge-patience 0) or WORKERS:conv "
                             "(the default convergence stop), comma-separated")
    parser.add_argument("--sta-layers", type=int, default=2)  # the demo's
    parser.add_argument("--skip-breakdown", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "seed_cost")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"features": args.features, "argv": sys.argv[1:]}
    if not args.skip_breakdown:
        result["breakdown"] = breakdown(args.features, methods, args.out, args.sta_layers)
    configs = [c.split(":") for c in args.configs.split(",") if c]
    result["seeds"] = [seeds_cost(args.features, methods, seeds, int(w), args.out, args.sta_layers, kind == "conv")
                       for w, kind in configs]
    (args.out / "seed_cost.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
