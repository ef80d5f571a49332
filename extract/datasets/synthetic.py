"""The embedded default dataset: a procedural world of long-term activities with controllable confounders.

An activity ("make soup") is an ordered script of atomic actions ("stir pot", "add salt", ...). Each atomic
action has its own foreground signature (object shape, colour and motion near the actor's hand); some
actions appear in several activities, some in one only, and one pair of activities shares the same bag of
actions in a different order, so order matters. Order (one adjacent swap now and then) and durations vary
between videos of an activity.

The scene context (background colour/texture, the actor's attire colour, the lighting and, in the moving
world, the props' kind) does not cause the label but agrees with it with probability `confounding` in the
"train" and "test" splits; in "test_ood" it is drawn at chance (or reversed: it points to another
activity). A model that reads the context instead of the actions therefore scores well on "test" and badly
on "test_ood".

Two worlds (synthetic_spec.WORLDS, the `world` option of `cmdcl synth` and `cmdcl demo`). The "moving" world
(the default) makes the context change from frame to frame, as real scenes do, so that subtracting a video's
mean does not remove it: a handheld camera pans and shakes across a larger cluttered scene, the light
drifts and flickers, and `props` moving objects with no part in the activity (as large and salient as the
action's objects, passing near or over them) show the "prop" factor (synthetic_motion.py). The "static"
world (generator version 3) keeps every confounder constant over time; each of `camera_motion`,
`light_change` and `props` also turns on and off alone.

The "train_unconfounded" split is drawn like "train" (same size, same scripts, durations and order noise)
but with the context at chance, as in "test_ood": the oracle training set. A head trained on it has no
context to learn, so OOD(trained on "train_unconfounded") - OOD(trained on "train") measures what the
confounding still costs that head (its residual confounding; docs/REPORT.md).

The "pretrain" split (confounded like "train") is for pre-training the encoder (`cmdcl pretrain-clip`), the
way CLIP is trained on web images: no head trains or tests on it, and extraction skips it unless asked. The
manifest's `context` column describes each video's scene in words ("in a blue kitchen with stripes, red
apron, dim warm light, two teal stars moving about"), like the alt-text around a web image.

The dataset is written in the manifest format (classes.txt, steps.txt, manifest.csv) so it goes through the
same adapter as users' own videos, plus `attributes.csv` (the confounders of every video) and `world.json`
(config, scripts, provenance). The manifest's `boxes` column names each video's box file
(`boxes/<split>/<video_id>.csv`: the foreground object's pixel box in every frame, the spatial ground truth),
its `prop_boxes` column (moving world) each video's prop box file (`prop_boxes/<split>/<video_id>.csv`, every
prop's box in every frame) and its `confounder:background|attire|lighting[|prop]` columns repeat the context
ids, so extraction stores all three in the feature file. Same seed -> byte-identical manifest, box and video files.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from cmdcl.core.errors import CmdclError
from .base import DatasetIndex, SplitSpec
from .synthetic_spec import (  # noqa: F401  (re-exported: the world's public names)
    ACTIVITY_NAMES, CHANCE_SPLITS, CONFOUNDERS, DEFAULT_WORLD, HEAD_SPLITS, PROP_FACTOR, SPLITS, STEP_NAMES,
    UNCONFOUNDED_SPLIT, WORLDS, SyntheticConfig, VideoSpec, World, world_options)
from .synthetic_motion import PROP_SHAPES, prop_colour, prop_shape  # noqa: F401
from .synthetic_render import (  # noqa: F401  (re-exported: the world's public names)
    SHAPES, OBJECT_COLOURS, MOTIONS, TEXTURES, SKIN, HUE_NAMES, RenderedVideo, background_colour,
    attire_colour, lighting_params, colour_name, context_text, step_signature, render, render_video, write_video,
    render_all, render_video_with_boxes, write_boxes, write_prop_boxes)

GENERATOR_VERSION = 5  # 2: the "pretrain" split and the manifest's context column; 3: object boxes and the
# manifest's boxes and confounder:* columns, float32 scene and noise (faster; other pixels than 2), test_ood's
# default size 50 per class; 4: the moving world (camera motion, light change, props, the prop factor and
# prop boxes) as the default; the static world's files are version 3's; 5: the "train_unconfounded" split
# (the other splits' files are version 4's). Bump when the rendering or sampling changes, so stale datasets
# are not reused

OUTPUT_NAMES = {"manifest.csv", "classes.txt", "steps.txt", "attributes.csv", "world.json", "videos", "boxes",
                "prop_boxes", "DONE"}


# ---------------------------------------------------------------------------------------------- sampling

def build_world(config: SyntheticConfig) -> World:
    """Draw the activity scripts and preferred contexts from the seed.

    Activities 0 and 1 share one bag of steps in reversed order. Every other activity owns one exclusive
    step and takes its other steps from a shared pool, least-used first, so the pool is covered and shared.
    """
    rng = np.random.default_rng([config.seed, 0])
    num_classes, num_steps = config.num_activities, config.num_steps
    order = [int(s) for s in rng.permutation(num_steps)]
    exclusive, pool = order[:num_classes - 2], order[num_classes - 2:]
    usage = {s: 0 for s in pool}

    def take_from_pool(count: int) -> list[int]:
        ranked = sorted(pool, key=lambda s: (usage[s], rng.random()))
        chosen = ranked[:count]
        for s in chosen:
            usage[s] += 1
        return chosen

    def script_length(minimum: int) -> int:
        return int(rng.integers(max(minimum, config.min_script_steps), config.max_script_steps + 1))

    first = [int(s) for s in rng.permutation(take_from_pool(script_length(3)))]
    scripts = [first, first[::-1]]
    for c in range(2, num_classes):  # the exclusive step makes every later bag unique
        bag = [exclusive[c - 2]] + take_from_pool(script_length(2) - 1)
        scripts.append([int(s) for s in rng.permutation(bag)])
    # the prop factor's preference is drawn last, so the static factors' are those of the static world
    preferred = {name: [int(v) for v in rng.permutation(num_classes)] for name in (*CONFOUNDERS, PROP_FACTOR)}
    return World(
        activity_names=list(ACTIVITY_NAMES[:num_classes]), step_names=list(STEP_NAMES[:num_steps]),
        scripts=scripts, preferred=preferred, same_bag_pairs=[(0, 1)],
    )


def _draw_context(rng: np.random.Generator, label: int, split: str, world: World,
                  config: SyntheticConfig) -> dict[str, int]:
    """Jointly agreeing context with P = rho; otherwise each confounder takes another value at random."""
    num_values = config.num_activities
    if split in CHANCE_SPLITS or (split == "test_ood" and config.ood_mode == "chance"):
        return {name: int(rng.integers(num_values)) for name in config.factors}
    # "reversed" points the context to the next activity instead of the true one, with the same strength
    target = (label + 1) % config.num_activities if split == "test_ood" else label
    if rng.random() < config.confounding:
        return {name: world.preferred[name][target] for name in config.factors}
    context = {}
    for name in config.factors:
        others = [v for v in range(num_values) if v != world.preferred[name][target]]
        context[name] = int(others[rng.integers(len(others))])
    return context


def _draw_segments(rng: np.random.Generator, script: list[int], config: SyntheticConfig
                   ) -> tuple[int, list[tuple[int, int, int]]]:
    num_frames = int(round(rng.uniform(config.min_seconds, config.max_seconds) * config.fps))
    steps = list(script)
    if len(steps) > 1 and rng.random() < config.order_noise:
        i = int(rng.integers(len(steps) - 1))
        steps[i], steps[i + 1] = steps[i + 1], steps[i]
    # Every step keeps at least 65% of an equal share, so 16 uniformly sampled frames catch each one.
    n = len(steps)
    floor = 0.65 / n
    shares = floor + (1.0 - n * floor) * rng.dirichlet(np.full(n, 2.0))
    bounds = np.round(np.concatenate([[0.0], np.cumsum(shares)]) * num_frames).astype(int)
    bounds[-1] = num_frames
    for i in range(1, n + 1):  # at least one frame per step even for tiny videos
        bounds[i] = max(bounds[i], bounds[i - 1] + 1)
    return num_frames, [(s, int(bounds[i]), int(bounds[i + 1])) for i, s in enumerate(steps)]


def sample_videos(config: SyntheticConfig, world: World | None = None,
                  splits: tuple[str, ...] = SPLITS) -> list[VideoSpec]:
    """The video specs (labels, step segments, confounders) without rendering anything.

    Each video has its own random stream keyed by (seed, split, label, index), so adding videos to a
    split leaves the existing ones unchanged.
    """
    config.validate()
    world = world or build_world(config)
    specs = []
    for split_code, split in enumerate(SPLITS):
        if split not in splits:
            continue
        for label in range(config.num_activities):
            for i in range(config.videos_per_class(split)):
                key = [config.seed, 1, split_code, label, i]
                rng = np.random.default_rng(key)
                num_frames, segments = _draw_segments(rng, world.scripts[label], config)
                context = _draw_context(rng, label, split, world, config)
                agrees = {name: context[name] == world.preferred[name][label] for name in config.factors}
                specs.append(VideoSpec(
                    video_id=f"{split}_{label:02d}_{i:04d}", split=split, label=label, num_frames=num_frames,
                    segments=segments, context=context, agrees=agrees,
                    render_seed=[config.seed, 2, split_code, label, i],
                ))
    return specs


# ------------------------------------------------------------------------------------------------ output

def _steps_field(spec: VideoSpec, world: World, fps: int) -> str:
    return ";".join(f"{world.step_names[s]}@{a / fps:.3f}-{b / fps:.3f}" for s, a, b in spec.segments)


def _write_tables(folder: Path, specs: list[VideoSpec], world: World, config: SyntheticConfig) -> None:
    (folder / "classes.txt").write_text("".join(f"{n}\n" for n in world.activity_names))
    (folder / "steps.txt").write_text("".join(f"{n}\n" for n in world.step_names))
    factors = config.factors
    props = ["prop_boxes"] if config.props else []  # absent from the static world's manifest (version 3's)
    with open(folder / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["video_id", "path", "split", "label", "labels", "steps", "context", "boxes", *props,
                         *(f"confounder:{n}" for n in factors)])
        for spec in specs:
            writer.writerow([spec.video_id, spec.path, spec.split, world.activity_names[spec.label], "",
                             _steps_field(spec, world, config.fps),
                             context_text(spec.context, config.num_activities, config.props), spec.boxes_path,
                             *([spec.prop_boxes_path] if props else []), *(spec.context[n] for n in factors)])
    with open(folder / "attributes.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["video_id", "split", "label", "label_index", *factors,
                         *(f"{n}_agrees" for n in factors), "num_frames", "seconds", "order"])
        for spec in specs:
            writer.writerow([spec.video_id, spec.split, world.activity_names[spec.label], spec.label,
                             *(spec.context[n] for n in factors), *(int(spec.agrees[n]) for n in factors),
                             spec.num_frames, f"{spec.num_frames / config.fps:.3f}",
                             " ".join(str(s) for s, _, _ in spec.segments)])


def _agreement(specs: list[VideoSpec], factors: tuple[str, ...]) -> dict[str, dict[str, float]]:
    out = {}
    for split in SPLITS:
        chosen = [s for s in specs if s.split == split]
        if chosen:
            out[split] = {n: round(float(np.mean([s.agrees[n] for s in chosen])), 4) for n in factors}
    return out


def _world_json(world: World, specs: list[VideoSpec], config: SyntheticConfig) -> dict:
    from cmdcl.core.version import code_version

    k = config.num_activities
    users = {s: [c for c, script in enumerate(world.scripts) if s in script] for s in range(config.num_steps)}
    chance = 1.0 / k
    return {
        "format": "cmdcl-synthetic",
        "generator_version": GENERATOR_VERSION,
        "code_version": code_version(),
        "seed": config.seed,
        "world": config.world,
        "config": asdict(config),
        "activities": [
            {"index": c, "name": world.activity_names[c], "script": [world.step_names[s] for s in script],
             "script_index": script, "context": {n: world.preferred[n][c] for n in config.factors}}
            for c, script in enumerate(world.scripts)
        ],
        "steps": [{"index": s, "name": world.step_names[s], **step_signature(s),
                   "activities": users[s]} for s in range(config.num_steps)],
        "shared_steps": [world.step_names[s] for s, c in users.items() if len(c) > 1],
        "exclusive_steps": [world.step_names[s] for s, c in users.items() if len(c) == 1],
        "same_bag_pairs": [[world.activity_names[a], world.activity_names[b]] for a, b in world.same_bag_pairs],
        "confounder_values": {
            "background": [{"colour": background_colour(v, k).round(3).tolist(),
                            "texture": TEXTURES[v % len(TEXTURES)]} for v in range(k)],
            "attire": [{"colour": attire_colour(v, k).round(3).tolist()} for v in range(k)],
            "lighting": [dict(zip(("gain", "tint", "slope"), lighting_params(v, k))) for v in range(k)],
            **({PROP_FACTOR: [{"shape": prop_shape(v), "colour": prop_colour(v, k).round(3).tolist()}
                              for v in range(k)]} if config.props else {}),
        },
        "splits": {
            split: {"videos": sum(s.split == split for s in specs),
                    "expected_agreement": (chance if split in CHANCE_SPLITS else
                                           config.confounding if split != "test_ood" else
                                           chance if config.ood_mode == "chance" else
                                           (1 - config.confounding) / (k - 1)),
                    "measured_agreement": agreement}
            for split, agreement in _agreement(specs, config.factors).items()
        },
    }


def is_complete(root: str | Path) -> bool:
    """True when `root` holds a finished dataset (the DONE marker is written last)."""
    root = Path(root)
    return (root / "DONE").is_file() and (root / "world.json").is_file()


def _check_replaceable(root: Path) -> None:
    """Only a folder we wrote (or an empty one) may be replaced: never delete a user's other files."""
    if not root.exists():
        return
    if not root.is_dir():
        raise CmdclError(f"synthetic dataset root {root} exists and is not a folder.",
                         fix="pass another --root.")
    foreign = sorted(p.name for p in root.iterdir() if p.name not in OUTPUT_NAMES)
    if foreign:
        raise CmdclError(f"synthetic dataset root {root} holds files the generator did not write "
                         f"({', '.join(foreign[:5])}); refusing to replace it.", fix="pass another --root.")


def _build(folder: Path, config: SyntheticConfig, progress: bool) -> None:
    world = build_world(config)
    specs = sample_videos(config, world)
    for split in SPLITS:
        for kind in ("videos", "boxes", *(("prop_boxes",) if config.props else ())):
            (folder / kind / split).mkdir(parents=True, exist_ok=True)
    render_all(folder, specs, config, progress)
    _write_tables(folder, specs, world, config)
    (folder / "world.json").write_text(json.dumps(_world_json(world, specs, config), indent=2) + "\n")
    (folder / "DONE").write_text(f"cmdcl-synthetic generator {GENERATOR_VERSION}\n")  # last: marks completion


def _generate(root: Path, config: SyntheticConfig, progress: bool, replace: bool) -> Path:
    config.validate()
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _build(tmp, config, progress)
        if root.exists() and not replace and is_complete(root):
            # Another process finished the same request first: keep its copy (it may be in use).
            _check_config(root, config)
            return root
        if root.exists():
            _check_replaceable(root)
            old = root.with_name(f"{root.name}.old-{os.getpid()}")
            root.rename(old)
            tmp.rename(root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def generate_synthetic(root: str | Path, config: SyntheticConfig | None = None, progress: bool = True) -> Path:
    """Render the synthetic dataset into `root` (built in `root.tmp-<pid>`, renamed when complete)."""
    return _generate(Path(root), config or SyntheticConfig(), progress, replace=True)


def _read_world(root: Path) -> dict:
    try:
        return json.loads((root / "world.json").read_text())
    except (OSError, ValueError) as exc:
        raise CmdclError(f"{root / 'world.json'} cannot be read ({exc}).",
                         fix=f"delete {root} to regenerate it, or pass another --root.") from exc


def _check_config(root: Path, config: SyntheticConfig) -> None:
    stored = _read_world(root)
    wanted = asdict(config)
    have = stored.get("config", {})
    diff = [f"{k}={have.get(k)!r} (requested {v!r})" for k, v in wanted.items() if have.get(k) != v]
    if stored.get("generator_version") != GENERATOR_VERSION:
        diff.append(f"generator_version={stored.get('generator_version')!r} (current {GENERATOR_VERSION})")
    if diff:
        raise CmdclError(f"{root} already holds a synthetic dataset made with different settings: "
                         f"{', '.join(diff)}.", fix=f"pass another --root, delete {root} to regenerate it, or "
                         "read it as it is with --dataset manifest.")


def ensure_synthetic(root: str | Path, *, progress: bool = True, **options) -> Path:
    """Return `root` if it holds a complete dataset with this config; generate it if absent or incomplete.

    `options` are SyntheticConfig field names. A complete dataset made with other options is an error,
    never silently replaced.
    """
    known = {f.name for f in fields(SyntheticConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise CmdclError(f"unknown synthetic option(s) {', '.join(unknown)}.",
                         fix=f"use one of: {', '.join(sorted(known))}.")
    config = SyntheticConfig(**options)
    config.validate()
    root = Path(root)
    if is_complete(root):
        _check_config(root, config)
        return root
    return _generate(root, config, progress, replace=False)


def load(root: Path, splits: SplitSpec = None, **options) -> DatasetIndex:
    """The `synthetic` adapter (extract/datasets/registry.py): generate the world at `root` if needed (`options`
    are SyntheticConfig fields), then read it as a manifest. Its "pretrain" split is read only when named."""
    from .manifest import load as load_manifest
    from .registry import check_options

    check_options("synthetic", ensure_synthetic, options)
    index = load_manifest(ensure_synthetic(root, **options), splits)
    if splits is None:
        index.items = [item for item in index.items if item.split in HEAD_SPLITS]
    index.name = "synthetic"
    return index


def load_attributes(root: str | Path) -> list[dict[str, str]]:
    with open(Path(root) / "attributes.csv", newline="") as f:
        return list(csv.DictReader(f))


def attribute_factors(rows: list[dict[str, str]]) -> list[str]:
    """The context factors of attributes.csv rows: its columns NAME that have a NAME_agrees column."""
    return [name for name in (rows[0] if rows else {}) if f"{name}_agrees" in rows[0]]


def measured_agreement(root: str | Path) -> dict[str, dict[str, float]]:
    """split -> confounder -> fraction of videos whose context value agrees with their activity."""
    rows = load_attributes(root)
    factors = attribute_factors(rows)
    out = {}
    for split in dict.fromkeys(r["split"] for r in rows):
        chosen = [r for r in rows if r["split"] == split]
        out[split] = {n: sum(int(r[f"{n}_agrees"]) for r in chosen) / len(chosen) for n in factors}
    return out


def context_only_accuracy(root: str | Path, seed: int = 0) -> dict[str, float]:
    """split -> top-1 of a classifier that sees only the confounders (one-hot), trained on `train`.

    The reference row of the demo: what a head that learned the context alone would score.
    """
    from sklearn.linear_model import LogisticRegression

    rows = load_attributes(root)
    factors = attribute_factors(rows)
    num_values = 1 + max(int(r[n]) for r in rows for n in factors)

    def table(split: str) -> tuple[np.ndarray, np.ndarray]:
        chosen = [r for r in rows if r["split"] == split]
        x = np.zeros((len(chosen), len(factors) * num_values))
        for i, row in enumerate(chosen):
            for j, name in enumerate(factors):
                x[i, j * num_values + int(row[name])] = 1
        return x, np.array([int(r["label_index"]) for r in chosen])

    classifier = LogisticRegression(max_iter=1000, random_state=seed).fit(*table("train"))
    splits = dict.fromkeys(r["split"] for r in rows
                           if r["split"] in HEAD_SPLITS and r["split"] not in ("train", UNCONFOUNDED_SPLIT))
    return {split: float(classifier.score(*table(split))) for split in splits}
