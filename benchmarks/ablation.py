"""Ablation runner: train rows (cmdcl at the defaults, each new switch flipped, no-TCI, no-VCI, baselines)
over seeds into OUT/<row>/seed-<k>/ and print a plain mean table of test / test_ood top-1.

    .venv/bin/python benchmarks/ablation.py --features runs/demo/features/<tag>/shard-00000-of-00001.h5 \\
        --out runs/ablation [--rows cmdcl,transformer] [--seeds 0,1,2] [--sta-layers 2] [--epochs 0]

Each OUT/<row>/ is a multi-seed run (head/seed_runs.py: seeds.json + seed-<k>/), each seed folder an
ordinary run (best.pt, metrics_test.json, metrics_test_ood.json, predictions_*.npz), so `cmdcl compare` reads
them. A seed whose metrics_test_ood.json exists is not retrained (delete the folder to redo it). The recipe
is the demo's (train-head's schedule, --sta-layers 2 by default); OUT/table.json holds the per-seed numbers.
Intervals and paired differences are `cmdcl compare`'s job; this prints means only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# Each row: HeadConfig options over the defaults. The "flipped" rows change one new switch each.
ROWS: dict[str, dict] = {
    "cmdcl": {"method": "cmdcl"},
    "cmdcl-no-patches": {"method": "cmdcl", "use_patches": False},
    "cmdcl-frame-context": {"method": "cmdcl", "patch_frame_context": True},
    "cmdcl-no-static-split": {"method": "cmdcl", "static_split": False},
    "cmdcl-cross-text": {"method": "cmdcl", "frontdoor_cross": "dictionary"},
    "cmdcl-cross-none": {"method": "cmdcl", "frontdoor_cross": "none"},
    "cmdcl-tci-video": {"method": "cmdcl", "bias_source": "video"},
    "cmdcl-no-grounding": {"method": "cmdcl", "grounding_loss": 0.0},
    "cmdcl-cosine": {"method": "cmdcl", "mediator": "cosine", "frontdoor_cross": "dictionary"},
    "cmdcl-legacy": {"method": "cmdcl", "legacy": True},  # the head before this change, for reference
    "cmdcl-no-tci": {"method": "cmdcl", "use_tci": False},
    "cmdcl-no-vci": {"method": "cmdcl", "use_vci": False},
    "transformer": {"method": "transformer"},
    "linear": {"method": "linear"},
    "zeroshot": {"method": "zeroshot"},
}
SPLITS = ("test", "test_ood")


def row_config(row: str, seed: int, sta_layers: int, epochs: int):
    """The HeadConfig of one row and seed."""
    from cmdcl.head.config import LEGACY, HeadConfig

    options = dict(ROWS[row])
    if options.pop("legacy", False):
        options = {**LEGACY, **options}
    return HeadConfig(**options, sta_layers=sta_layers, epochs=epochs, seed=seed)


def run_row(features: str, out: Path, row: str, seeds: list[int], sta_layers: int, epochs: int) -> list[dict]:
    """Train and evaluate one row over `seeds`; returns per-seed {seed, test, test_ood, train_s}."""
    from cmdcl.head.evaluate import evaluate_splits
    from cmdcl.head.seed_runs import seed_dir, write_seeds
    from cmdcl.head.train import train

    write_seeds(out / row, seeds, ROWS[row]["method"])
    results = []
    for seed in seeds:
        run = seed_dir(out / row, seed)
        done = run / "metrics_test_ood.json"
        t0 = time.perf_counter()
        if not done.is_file():
            cfg = row_config(row, seed, sta_layers, epochs)
            train(features, run, cfg, resume="auto", progress=False, log=lambda m: None)
            evaluate_splits(run / "best.pt", features, list(SPLITS), out_dir=run)
        metrics = {s: json.loads((run / f"metrics_{s}.json").read_text()) for s in SPLITS}
        results.append({"seed": seed, "train_s": time.perf_counter() - t0,
                        **{s: metrics[s]["top1"] for s in SPLITS},
                        "grounding": metrics["test"].get("grounding_mass_ratio")})
        print(f"  {row:<22} seed {seed}: test {results[-1]['test']:.3f}  test_ood {results[-1]['test_ood']:.3f}"
              f"  ({results[-1]['train_s']:.0f} s)", flush=True)
    return results


def mean_table(table: dict[str, list[dict]]) -> str:
    lines = [f"| row | seeds | test top-1 | test_ood top-1 | grounding ratio (test) |", "|---|---|---|---|---|"]
    for row, runs in table.items():
        mean = {k: sum(r[k] for r in runs) / len(runs) for k in SPLITS}
        grounding = [r["grounding"] for r in runs if r["grounding"] is not None]
        g = f"{sum(grounding) / len(grounding):.2f}" if grounding else "-"
        lines.append(f"| {row} | {len(runs)} | {mean['test']:.3f} | {mean['test_ood']:.3f} | {g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help="feature file (e.g. the demo's shard)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from: {', '.join(ROWS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sta-layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=0, help="0 = train-head's schedule")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for tiny heads)")
    args = parser.parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        print(f"--rows: unknown row {unknown[0]!r}; choose from {', '.join(ROWS)}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    table = {row: run_row(args.features, args.out, row, seeds, args.sta_layers, args.epochs) for row in rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    text = mean_table(table)
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
