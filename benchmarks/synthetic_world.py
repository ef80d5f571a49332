"""Time the synthetic world's generation (`cmdcl synth`, the demo's first step): rendering, box files and
MP4 writing, per video and for the whole default world.

    .venv/bin/python benchmarks/synthetic_world.py                 # every video of the default world, by stage
    .venv/bin/python benchmarks/synthetic_world.py --sample 60      # every k-th video, scaled to the whole world
    .venv/bin/python benchmarks/synthetic_world.py --world static   # the static world (generator version 3's)
    .venv/bin/python benchmarks/synthetic_world.py --tiny           # a few seconds

Rendering is vectorised over the frames of each step and paints only the window around the arm and the
object (pixels outside are bit-identical by construction), so the videos stay byte-identical for a seed.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, machine_info, write_json  # noqa: E402

from cmdcl.extract.datasets.synthetic import (WORLDS, SyntheticConfig, build_world, render,  # noqa: E402
                                              sample_videos, world_options, write_boxes, write_prop_boxes,
                                              write_video)


def measure(config: SyntheticConfig, sample: int | None) -> dict:
    """Seconds per stage over the videos timed (every one, or `sample` spread over the world), scaled up."""
    specs = sample_videos(config, build_world(config))
    chosen = specs if not sample or sample >= len(specs) else specs[::max(1, len(specs) // sample)]
    seconds = {"render": 0.0, "boxes": 0.0, "write": 0.0}
    load = load_average()
    with tempfile.TemporaryDirectory() as folder:
        for i, spec in enumerate(chosen):
            start = time.perf_counter()
            video = render(spec, config)
            rendered = time.perf_counter()
            write_boxes(Path(folder) / f"{i}.csv", video.boxes)
            if config.props:
                write_prop_boxes(Path(folder) / f"{i}.props.csv", video.prop_boxes)
            boxed = time.perf_counter()
            write_video(Path(folder) / f"{i}.mp4", video.frames, config.fps)
            seconds["render"] += rendered - start
            seconds["boxes"] += boxed - rendered
            seconds["write"] += time.perf_counter() - boxed
    scale = len(specs) / len(chosen)
    return {"videos": len(specs), "timed": len(chosen), "frames": sum(s.num_frames for s in specs),
            "seconds_timed": seconds, "seconds_world": {k: v * scale for k, v in seconds.items()},
            "load_average_before": load}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=None, help="time only about this many videos")
    parser.add_argument("--tiny", action="store_true", help="a tiny world (a few seconds)")
    parser.add_argument("--world", choices=list(WORLDS), default="moving", help="which world (default: moving)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    sizes = dict(train_per_class=2, test_per_class=1, ood_per_class=1, pretrain_per_class=1) if args.tiny else {}
    config = SyntheticConfig(**sizes, **world_options(args.world))
    result = {"config": vars(config), **measure(config, args.sample), "machine": machine_info()}
    world = result["seconds_world"]
    print(f"synthetic {args.world} world: {result['videos']} videos, {result['frames']} frames "
          f"({result['timed']} timed, load {result['load_average_before']})")
    for stage, value in world.items():
        print(f"  {stage:<7} {value:7.1f} s  {1000 * value / result['videos']:6.1f} ms/video")
    print(f"  total   {sum(world.values()):7.1f} s")
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
