"""Ablation runner: train rows (cmdcl at the defaults, each new switch flipped, no-TCI, no-VCI, baselines)
over seeds into OUT/<row>/seed-<k>/ and print a plain mean table of test / test_ood top-1.

    .venv/bin/python benchmarks/ablation.py --features runs/demo/features/<tag>/shard-00000-of-00001.h5 \\
        --out runs/ablation [--rows cmdcl,transformer] [--seeds 0,1,2] [--sta-layers 2] [--epochs 0] \\
        [--row-config mine=recipes/mine.yaml]

`--row-config NAME=FILE` (repeatable) adds a row (or replaces one) with the HeadConfig options of a YAML or
JSON file, e.g. a run's config.json (pipelines/config_file.py); such a row is always run.

Each OUT/<row>/ is a multi-seed run (head/training/seed_runs.py: seeds.json + seed-<k>/), each seed folder an
ordinary run (best.pt, metrics_test.json, metrics_test_ood.json, predictions_*.npz), so `cmdcl compare` reads
them. Runs go through `head/training/seeds.train_jobs` (one worker per core; a finished run is reused). The recipe is
the demo's (train-head's schedule, --sta-layers 2 by default). The table is the demo's
(pipelines/demo_table.py): intervals over seeds, the paired test_ood difference against `transformer`
(when it is a row), grounding and leakage; also in OUT/table.txt, with OUT/compare-<split>/. A row trained beside
its oracle row (`cmdcl` and `cmdcl-unconfounded`, `transformer` and `transformer-unconfounded`: trained on the
synthetic world's `train_unconfounded` split) gets its residual confounding, OOD(oracle) - OOD(row), in a
second table (OUT/compare-residual-<row>/).
"""
from __future__ import annotations

import argparse
import json
import sys
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
    # switches for the moving world (off by default: none beat the defaults on the dev world, docs/METHOD.md)
    "cmdcl-patch-grounding": {"method": "cmdcl", "patch_grounding": 1.0},
    "cmdcl-patch-grounding-all": {"method": "cmdcl", "patch_grounding": 1.0, "patch_contrast": "all"},
    "cmdcl-no-mediator-frames": {"method": "cmdcl", "mediator_frames": False},
    "cmdcl-tci-debias": {"method": "cmdcl", "tci_debias": 10.0},
    # what the static split does alone: the mediator with the split, no TCI, no cross term, no grounding loss
    "cmdcl-split-only": {"method": "cmdcl", "use_tci": False, "frontdoor_cross": "none", "grounding_loss": 0.0},
    "cmdcl-legacy": {"method": "cmdcl", "legacy": True},  # the earlier default head, for reference
    "cmdcl-no-tci": {"method": "cmdcl", "use_tci": False},
    "cmdcl-no-vci": {"method": "cmdcl", "use_vci": False},
    "transformer": {"method": "transformer"},
    # the oracles: the same heads trained on the synthetic world's split whose context is at chance; with their
    # row beside them, the table below the main one gives each one's residual confounding (docs/REPORT.md)
    "cmdcl-unconfounded": {"method": "cmdcl", "train_split": "train_unconfounded"},
    "transformer-unconfounded": {"method": "transformer", "train_split": "train_unconfounded"},
    "linear": {"method": "linear"},
    "zeroshot": {"method": "zeroshot"},
}
SPLITS = ("test", "test_ood")


def row_config(row: str, seed: int, sta_layers: int, epochs: int, table: dict[str, dict] = ROWS):
    """The HeadConfig of one row and seed (--sta-layers and --epochs under what the row sets)."""
    from cmdcl.head.model.config import LEGACY, HeadConfig

    options = dict(table[row])
    if options.pop("legacy", False):
        options = {**LEGACY, **options}
    return HeadConfig(**{"sta_layers": sta_layers, "epochs": epochs, **options, "seed": seed})


def run_rows(features: str, out: Path, rows: list[str], seeds: list[int], sta_layers: int, epochs: int,
             workers: int, table: dict[str, dict] = ROWS) -> dict[str, float]:
    """Train and score every row x seed through `train_jobs` (the code path of `train-head --seeds` and the
    demo; finished runs are reused); returns each row's mean training seconds per seed."""
    from cmdcl.head.training.seed_runs import seed_dir, write_seeds
    from cmdcl.head.training.seeds import train_jobs

    for row in rows:
        write_seeds(out / row, seeds, row_config(row, 0, sta_layers, epochs, table).method)
    keys = [(row, seed) for row in rows for seed in seeds]
    jobs = [(row_config(row, seed, sta_layers, epochs, table), seed_dir(out / row, seed)) for row, seed in keys]
    runs = train_jobs(features, jobs, workers=workers, resume="auto", progress=False, log=lambda m: None,
                      evaluate=list(SPLITS))
    seconds: dict[str, list[float]] = {}
    for (row, seed), run in zip(keys, runs):
        seconds.setdefault(row, []).append(float(run.get("train_seconds") or 0.0))
        print(f"  {row:<22} seed {seed}: test {run['metrics']['test']['top1']:.3f}  test_ood "
              f"{run['metrics']['test_ood']['top1']:.3f}  ({seconds[row][-1]:.0f} s)", flush=True)
    return {row: sum(v) / len(v) for row, v in seconds.items()}


def row_configs(items: list[str]) -> dict[str, dict]:
    """--row-config NAME=FILE -> {NAME: HeadConfig options} (pipelines/config_file.py)."""
    from cmdcl.pipelines.cmd_head import TRAIN_RUN_OPTIONS
    from cmdcl.pipelines.config_file import read_row_configs

    return read_row_configs(items, TRAIN_RUN_OPTIONS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help="feature file (e.g. the demo's shard)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from: {', '.join(ROWS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sta-layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=0, help="0 = train-head's schedule")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: one per core)")
    parser.add_argument("--row-config", action="append", default=[], metavar="NAME=FILE",
                        help="a row from a YAML/JSON file of HeadConfig options (repeatable)")
    args = parser.parse_args(argv)
    from cmdcl.core.errors import CmdclError

    try:
        extra = row_configs(args.row_config)
    except CmdclError as exc:
        print(exc.one_line(), file=sys.stderr)
        return 2
    table = {**ROWS, **extra}
    rows = [r for r in args.rows.split(",") if r]
    rows += [r for r in extra if r not in rows]
    unknown = [r for r in rows if r not in table]
    if unknown:
        print(f"--rows: unknown row {unknown[0]!r}; choose from {', '.join(table)}", file=sys.stderr)
        return 2
    import os

    import torch

    from cmdcl.core.store import FeatureSet
    from cmdcl.pipelines.demo_table import compare_splits, format_demo_table

    torch.set_num_threads(1)  # tiny heads: one thread per worker is fastest
    seeds = [int(s) for s in args.seeds.split(",")]
    train_s = run_rows(args.features, args.out, rows, seeds, args.sta_layers, args.epochs,
                       args.workers or os.cpu_count() or 1, table)
    text = format_demo_table(args.out, rows, compare_splits(args.out, rows), train_s,
                             chance=1.0 / FeatureSet(args.features).dims["C"])
    from cmdcl.pipelines.demo import residual_confounding

    residual = residual_confounding(args.out, rows)
    if residual["rows"]:
        text += "\n\n" + residual["table"]
    (args.out / "table.txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
