"""Small data, the same actions in different orders, measured at `cmdcl train-head`'s defaults on real
extracted features.

A world of 3 activities that are the same 4 atomic actions in different orders (0-1-2-3, 3-2-1-0,
1-3-0-2), 30 training and 15 test videos per activity, rendered by the synthetic world's renderer with
the scene context at chance (it carries no label information), extracted with `cmdcl-tiny` (random
weights) at F = 32, then `cmdcl train-head -f FEATS --method M` with no other option, for cmdcl,
transformer and linear. Prints test top-1 per method (chance 0.333).

    python benchmarks/order_world_defaults.py --out benchmarks/out/order-world [--seed 0]

The world is generated once and reused; pass `--cmdcl PATH` to train with another cmdcl executable
(e.g. an older checkout's venv, for a before/after comparison on the same features).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]]


def build(root: Path, seed: int) -> None:
    from cmdcl.extract.datasets import synthetic as syn

    if (root / "DONE").exists():
        return
    config = syn.SyntheticConfig(seed=seed, num_activities=3, num_steps=5, min_script_steps=4, max_script_steps=4,
                                 train_per_class=30, test_per_class=15, ood_per_class=0, pretrain_per_class=0,
                                 confounding=1 / 3, order_noise=0.0, min_seconds=8.0, max_seconds=12.0)
    world = syn.build_world(config)
    world.scripts = [list(s) for s in SCRIPTS]  # the same bag of 4 actions, three orders
    world.step_names = world.step_names[:4]
    specs = syn.sample_videos(config, world, splits=("train", "test"))
    for split in ("train", "test"):
        (root / "videos" / split).mkdir(parents=True, exist_ok=True)
    for spec in specs:
        syn.write_video(root / spec.path, syn.render_video(spec, config), config.fps)
    syn._write_tables(root, specs, world, config)
    (root / "DONE").write_text("order world\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/order-world"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cmdcl", default=str(Path(sys.executable).with_name("cmdcl")))
    parser.add_argument("--tag", default="now", help="names the run folders (e.g. before/after)")
    args = parser.parse_args(argv)
    world, feats = args.out / "world", args.out / "features"
    build(world, args.seed)
    if not feats.exists():
        subprocess.run([args.cmdcl, "extract", "--dataset", "manifest", "--root", str(world), "--out", str(feats),
                        "--model", "cmdcl-tiny",
                        "--pretrained", "random", "--patch-grid", "0", "--frames", "32", "--device", "cpu",
                        "--no-progress"], check=True)
    results = {}
    for method in ("cmdcl", "transformer", "linear"):
        run = args.out / f"{args.tag}-{method}"
        subprocess.run([args.cmdcl, "train-head", "-f", str(feats), "--method", method, "--out", str(run),
                        "--no-progress"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([args.cmdcl, "evaluate", "--checkpoint", str(run / "best.pt"), "--features", str(feats),
                        "--split", "test", "--out", str(run / "metrics_test.json")], check=True,
                       stdout=subprocess.DEVNULL)
        results[method] = json.loads((run / "metrics_test.json").read_text())["top1"]
        print(f"{args.tag} {method:12s} test top-1 {results[method]:.3f}", flush=True)
    print(json.dumps({"tag": args.tag, "seed": args.seed, "top1": results}))


if __name__ == "__main__":
    main()
