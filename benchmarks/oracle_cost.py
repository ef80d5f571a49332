"""What the oracle split `train_unconfounded` adds to the demo's world generation and extraction, measured in one
run as ratios (on a shared machine the absolute seconds move with the load; the ratios much less).

    .venv/bin/python benchmarks/oracle_cost.py [--seed 0] [--out benchmarks/out/oracle-cost] [--tiny]

Renders the demo's world (seed 0, the moving world) in two timed parts, every other split first and then
`train_unconfounded`, into one folder (the files are those `cmdcl synth` writes: each video has its own seeded
stream), then extracts the demo's head splits (train, test, test_ood) and `train_unconfounded` as two timed
extractions with the demo's settings (cmdcl-tiny, 16 frames, 4 x 4 patches, one decode worker, batch 512; random
weights: the cost does not depend on them). The extra rows' training time is the demo's own `train s` column
(`cmdcl demo --oracle`: transformer-unconfounded, cmdcl-unconfounded beside transformer, cmdcl).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def render_parts(folder: Path, config) -> dict[str, float]:
    """Seconds to render every split but the oracle one, then the oracle one (same world, same folder)."""
    from cmdcl.extract.datasets import synthetic as syn

    world = syn.build_world(config)
    specs = syn.sample_videos(config, world)
    for split in syn.SPLITS:
        for kind in ("videos", "boxes", "prop_boxes"):
            (folder / kind / split).mkdir(parents=True, exist_ok=True)
    seconds = {}
    for name, part in (("others", [s for s in specs if s.split != syn.UNCONFOUNDED_SPLIT]),
                       ("oracle", [s for s in specs if s.split == syn.UNCONFOUNDED_SPLIT])):
        started = time.perf_counter()
        syn.render_all(folder, part, config, progress=False)
        seconds[name] = time.perf_counter() - started
        seconds[f"{name}_videos"] = len(part)
    syn._write_tables(folder, specs, world, config)  # a complete world, readable by the synthetic adapter
    (folder / "world.json").write_text(json.dumps(syn._world_json(world, specs, config), indent=2) + "\n")
    (folder / "DONE").write_text(f"cmdcl-synthetic generator {syn.GENERATOR_VERSION}\n")
    return seconds


def extract_parts(root: Path, out: Path, options: dict) -> dict[str, float]:
    """Seconds to extract the demo's head splits, then train_unconfounded, with one encoder."""
    from cmdcl.extract.models import load_encoder
    from cmdcl.extract.runner import ExtractConfig, run_extraction

    encoder = load_encoder("cmdcl-tiny", "random", device="cpu", precision="fp32", seed=0)
    seconds = {}
    for name, splits in (("others", ["train", "test", "test_ood"]), ("oracle", ["train_unconfounded"])):
        started = time.perf_counter()
        summary = run_extraction(ExtractConfig(
            dataset="synthetic", root=str(root), out_dir=str(out / name), model="cmdcl-tiny", frames=16,
            batch_size=512, workers=1, seed=0, patch_grid=4, splits=splits, dataset_options=options,
            progress=False, device="cpu").check(), log=lambda m: None, encoder=encoder)
        seconds[name] = time.perf_counter() - started
        seconds[f"{name}_videos"] = summary.extracted
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/oracle-cost"))
    parser.add_argument("--tiny", action="store_true", help="2 videos per class and split: a run of seconds")
    args = parser.parse_args(argv)
    from cmdcl.extract.datasets.synthetic import SyntheticConfig

    sizes = dict(train_per_class=2, test_per_class=1, ood_per_class=1, pretrain_per_class=1) if args.tiny else {}
    options = {"seed": args.seed, **sizes}
    shutil.rmtree(args.out, ignore_errors=True)
    root = args.out / "world"
    world = render_parts(root, SyntheticConfig(**options))
    extraction = extract_parts(root, args.out / "features", options)
    for stage, s in (("world (rendering)", world), ("extraction", extraction)):
        print(f"{stage:<18} others {s['others']:7.1f} s ({s['others_videos']} videos)   train_unconfounded "
              f"{s['oracle']:6.1f} s ({s['oracle_videos']} videos)   added: {s['oracle'] / s['others']:+.0%}")
    (args.out / "cost.json").write_text(json.dumps({"world": world, "extraction": extraction}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
