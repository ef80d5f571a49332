"""`cmdcl synth`: generate (or reuse) the synthetic confounded long-term-activity dataset; `cmdcl demo`: the main
job on it.

Only typer, the standard library and the world's option table (synthetic_spec: no numpy) are imported at
module level; the generator (numpy, PyAV) and the demo are imported inside the commands.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cmdcl.extract.datasets.synthetic_spec import (DEFAULT_WORLD, MOTION_TIMINGS, OOD_MOTIONS, WORLDS, SyntheticConfig,
                                                   world_options)
from .demo import DEMO_RUNS  # the demo's table rows (light: standard library only)

_DEFAULTS = SyntheticConfig()  # the options' defaults are the config's
_WORLD_HELP = (f"Which world: {' or '.join(WORLDS)} (confounders that change from frame to frame: camera motion, "
               f"light change, props; or constant over time, the world of generator version 3).")


def world_settings(world: str, camera_motion: float | None, light_change: float | None, props: int | None
                   ) -> dict[str, float | int]:
    """The SyntheticConfig fields of `--world`, with each of its options that was given overriding it."""
    options = world_options(world)
    for name, value in (("camera_motion", camera_motion), ("light_change", light_change), ("props", props)):
        if value is not None:
            options[name] = value
    return options


def world_folder(base: str, options: dict[str, float | int]) -> Path:
    """`base` for the default world, `base-static` (`-custom`) for another: each world its own folder."""
    name = SyntheticConfig(**options).world
    return Path(base if name == DEFAULT_WORLD else f"{base}-{name}")


_ROOT_HELP = "Folder of the dataset (default: data/synthetic; data/synthetic-static with --world static)."
_WORLD_DEFAULT = WORLDS[DEFAULT_WORLD]
_CAMERA_HELP = ("Handheld camera: pan amplitude in frame widths, plus a shake of a tenth of it (0: fixed; "
                f"default: the world's, {DEFAULT_WORLD} {_WORLD_DEFAULT['camera_motion']}).")
_LIGHT_HELP = ("Light drift and flicker within a video, relative (0: constant; default: the world's, "
               f"{DEFAULT_WORLD} {_WORLD_DEFAULT['light_change']}).")
_TIMING_HELP = (f"{' | '.join(MOTION_TIMINGS)}: the pan and the light drift sway at a random phase in every video "
                "(they say nothing about time), or sweep once left to right / dark to bright over every video "
                "(they predict how far into the video a frame is, and so the step).")
_OOD_MOTION_HELP = (f"{' | '.join(OOD_MOTIONS)}: with 'reversed' the pan and the light drift of test_ood run the other "
                    "way (half a period on); every other split and file stays as it is.")
_PROPS_HELP = ("Moving props whose kind agrees with the activity like the context (0: none; default: the "
               f"world's, {DEFAULT_WORLD} {_WORLD_DEFAULT['props']}).")


def synth(
    root: Optional[Path] = typer.Option(None, help=_ROOT_HELP),
    world: str = typer.Option(DEFAULT_WORLD, help=_WORLD_HELP),
    camera_motion: Optional[float] = typer.Option(None, help=_CAMERA_HELP),
    light_change: Optional[float] = typer.Option(None, help=_LIGHT_HELP),
    props: Optional[int] = typer.Option(None, help=_PROPS_HELP),
    seed: int = typer.Option(_DEFAULTS.seed, help="World and video seed; the same seed gives byte-identical files."),
    confounding: float = typer.Option(_DEFAULTS.confounding,
                                      help="P(context agrees with the activity) in train and test."),
    ood_mode: str = typer.Option(_DEFAULTS.ood_mode, help="Context in test_ood: 'chance' or 'reversed'."),
    videos_per_class: int = typer.Option(_DEFAULTS.train_per_class, help="Training videos per activity."),
    test_per_class: int = typer.Option(_DEFAULTS.test_per_class, help="IID test videos per activity (split 'test')."),
    ood_per_class: int = typer.Option(_DEFAULTS.ood_per_class,
                                      help="Out-of-distribution test videos per activity ('test_ood'); 50 keeps one "
                                           "video's weight in OOD top-1 at <= 0.005 with 6 activities."),
    pretrain_per_class: int = typer.Option(_DEFAULTS.pretrain_per_class,
                                           help="Videos per activity in split 'pretrain' (for pretrain-clip only; "
                                                "no head uses them)."),
    unconfounded_per_class: Optional[int] = typer.Option(
        _DEFAULTS.unconfounded_per_class, help="Videos per activity in split 'train_unconfounded' (drawn like "
                                               "train, context at chance: the oracle training set; default: as many "
                                               "as --videos-per-class)."),
    motion_timing: str = typer.Option(_DEFAULTS.motion_timing, help=_TIMING_HELP),
    ood_motion: str = typer.Option(_DEFAULTS.ood_motion, help=_OOD_MOTION_HELP),
    activities: int = typer.Option(_DEFAULTS.num_activities, help="Number of activities (classes)."),
    steps: int = typer.Option(_DEFAULTS.num_steps, help="Size of the atomic-action vocabulary."),
    width: int = typer.Option(_DEFAULTS.width, help="Frame width in pixels (even)."),
    height: int = typer.Option(_DEFAULTS.height, help="Frame height in pixels (even)."),
    fps: int = typer.Option(_DEFAULTS.fps, help="Frames per second."),
    progress: bool = typer.Option(True, help="Show a progress bar while rendering."),
) -> None:
    """Generate the synthetic dataset (or reuse a complete one with the same settings) and summarise it."""
    from cmdcl.extract.datasets.synthetic import is_complete, ensure_synthetic, load_attributes, measured_agreement

    moving = {**world_settings(world, camera_motion, light_change, props), "motion_timing": motion_timing,
              "ood_motion": ood_motion}
    root = root or world_folder("data/synthetic", moving)
    existed = is_complete(root)
    ensure_synthetic(
        root, progress=progress, seed=seed, confounding=confounding, ood_mode=ood_mode,
        train_per_class=videos_per_class, test_per_class=test_per_class, ood_per_class=ood_per_class,
        pretrain_per_class=pretrain_per_class, unconfounded_per_class=unconfounded_per_class, num_activities=activities, num_steps=steps, width=width, height=height,
        fps=fps, **moving,
    )
    rows = load_attributes(root)
    sizes = {}
    for row in rows:
        sizes[row["split"]] = sizes.get(row["split"], 0) + 1
    typer.echo(f"synthetic dataset ({SyntheticConfig(**moving).world} world: "
               + ", ".join(f"{k} {v}" for k, v in moving.items()) + f") {'reused' if existed else 'written'}: {root}")
    typer.echo("videos: " + ", ".join(f"{split}={n}" for split, n in sizes.items()))
    typer.echo(f"confounder agreement with the activity (chance = {1 / activities:.2f}):")
    for split, agreement in measured_agreement(root).items():
        typer.echo(f"  {split:<9} " + "  ".join(f"{name} {value:.2f}" for name, value in agreement.items()))


def demo(
    root: Optional[Path] = typer.Option(None, help=_ROOT_HELP + " Generated when absent."),
    out: Optional[Path] = typer.Option(None, help="Run folder: features, one sub-folder per method, report "
                                                  "(default: runs/demo; runs/demo-static with --world static)."),
    world: str = typer.Option(DEFAULT_WORLD, help=_WORLD_HELP),
    camera_motion: Optional[float] = typer.Option(None, help=_CAMERA_HELP),
    light_change: Optional[float] = typer.Option(None, help=_LIGHT_HELP),
    props: Optional[int] = typer.Option(None, help=_PROPS_HELP),
    seed: int = typer.Option(0, help="Seed of the world, the random encoder and training."),
    confounding: float = typer.Option(0.9, help="P(context agrees with the activity) in train and IID test."),
    frames: int = typer.Option(16, help="Frames sampled per video."),
    videos_per_class: int = typer.Option(40, help="Synthetic training videos per activity."),
    test_per_class: int = typer.Option(10, help="Synthetic IID test videos per activity ('test')."),
    ood_per_class: int = typer.Option(50, help="Synthetic out-of-distribution test videos per activity ('test_ood')."),
    pretrain_per_class: int = typer.Option(40, help="Synthetic videos per activity that pre-train the encoder."),
    epochs: int = typer.Option(0, help="Training epochs per method; 0 = train-head's default schedule."),
    sta_layers: int = typer.Option(2, help="Spatio-temporal attention blocks for cmdcl and transformer."),
    methods: str = typer.Option(",".join(DEMO_RUNS),
                                help="Comma-separated runs to train and compare (cmdcl-no-tci / -no-vci / "
                                     "-no-tci-vci: CMDCL without the textual / visual / both interventions)."),
    seeds: str = typer.Option("0,1,2", help="Train every row once per seed (OUT/<row>/seed-K); the table shows "
                                            "the mean over seeds, results.json each seed."),
    train_workers: int = typer.Option(0, help="Processes training the heads at once (0: one per CPU core)."),
    workers: int = typer.Option(1, help="Decode worker processes."),
    model: str = typer.Option("cmdcl-tiny", help="open_clip model (cmdcl-tiny: tiny, trained here from scratch)."),
    pretrained: Optional[str] = typer.Option(None, help="Weights (tag, file, hf-hub:) to extract with, or random; "
                                                        "default: pre-train them on the world's 'pretrain' split."),
    pretrain: bool = typer.Option(True, "--pretrain/--no-pretrain", help="Pre-train the encoder CLIP-style "
                                  "(cached); --no-pretrain keeps random weights."),
    pretrain_epochs: int = typer.Option(10, help="Epochs of the encoder's CLIP pre-training."),
    report: bool = typer.Option(True, "--report/--no-report", help="Render the HTML report of the cmdcl run."),
    row_config: List[str] = typer.Option([], "--row-config", help="NAME=FILE (repeatable): a row trained with the "
                                         "HeadConfig options of a YAML/JSON file (e.g. a run's config.json); "
                                         "replaces the row NAME or adds one, always trained."),
    oracle: bool = typer.Option(False, "--oracle/--no-oracle", help="Also train transformer and cmdcl (when rows) on "
                                "the world's train_unconfounded split (rows <row>-unconfounded) and print their "
                                "residual confounding, OOD(unconfounded) - OOD(train), with paired intervals "
                                "(about a third more training time)."),
    patch_layer: int = typer.Option(-1, help="Encoder block whose patch tokens are stored (extract's --patch-layer: "
                                             "-1 the last, 0 the first)."),
    motion_timing: str = typer.Option(_DEFAULTS.motion_timing, help=_TIMING_HELP),
    ood_motion: str = typer.Option(_DEFAULTS.ood_motion, help=_OOD_MOTION_HELP),
) -> None:
    """End to end: synthetic data -> pre-trained encoder -> features -> CMDCL and baselines -> table."""
    from cmdcl.head.training.seeds import parse_seeds
    from .cmd_head import TRAIN_RUN_OPTIONS
    from .config_file import read_row_configs
    from .demo import DemoConfig, run_demo

    rows = read_row_configs(row_config, TRAIN_RUN_OPTIONS)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    moving = {**world_settings(world, camera_motion, light_change, props), "motion_timing": motion_timing,
              "ood_motion": ood_motion}
    run_demo(DemoConfig(
        data_root=root or world_folder("data/synthetic", moving), out_dir=out or world_folder("runs/demo", moving),
        seed=seed, confounding=confounding, frames=frames, epochs=epochs, sta_layers=sta_layers,
        methods=tuple(names + [r for r in rows if r not in names]), rows=rows, workers=workers,
        seeds=tuple(parse_seeds(seeds)), train_workers=train_workers,
        model=model, pretrained=pretrained, pretrain=pretrain, pretrain_epochs=pretrain_epochs, report=report,
        oracle=oracle, patch_layer=patch_layer,
        synthetic={"train_per_class": videos_per_class, "test_per_class": test_per_class,
                   "ood_per_class": ood_per_class, "pretrain_per_class": pretrain_per_class, **moving},
    ), say=typer.echo)


COMMANDS: dict = {"synth": synth, "demo": demo}
