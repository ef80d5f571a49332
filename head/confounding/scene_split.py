"""A scene-shifted split for any dataset (`cmdcl scene-split`), in the spirit of Charades-CD: an OOD test on real
videos built from context labels, zero-shot pseudo labels where the dataset has no true ones.

Over the labelled videos of the source splits (default train, val and test), the share of an activity's videos
whose context value (e.g. pseudo:scene) is s is share(activity, s). A scene is rare for an activity when that
share is below `rare` (default 0.1). A video is held out when its scene is rare for each of its activities
(single-label: its one activity; multi-label: every class it has, so a video whose scene is usual for one of its
activities stays). Held-out videos move to the new split (default `test_scene`); every other video keeps its
split, so train keeps only the usual scenes of each activity and `test` stays the IID test. Videos with an
unknown value (-1) stay where they are.

The new feature file is a copy with the split column rewritten (core/store/merge.py), so every command reads it
unchanged: `cmdcl train-head -f NEW`, then `cmdcl evaluate --split test --split test_scene`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import FeatureSet

from ..metrics.leakage import context_factors

DEFAULT_SOURCES = ("train", "val", "test")


@dataclass
class SceneSplit:
    factor: str
    rare: float
    name: str
    moved: dict[str, str]  # video id -> its split before it was held out
    summary: dict[str, Any] = field(default_factory=dict)


def _activities(fs: FeatureSet, positions: np.ndarray) -> np.ndarray:
    """(n, C) bool: each video's activities (one-hot of the label, or the multi-hot labels)."""
    labels = fs.index["labels"][positions] > 0
    single = fs.index["label"][positions]
    one_hot = np.zeros_like(labels)
    known = single >= 0
    one_hot[np.flatnonzero(known), single[known]] = True
    return one_hot | labels


def scene_shift(fs: FeatureSet, factor: str = "pseudo:scene", rare: float = 0.1, name: str = "test_scene",
                sources: Sequence[str] = DEFAULT_SOURCES) -> SceneSplit:
    """Which videos of `sources` hold a scene that is rare for their activities (see the module docstring)."""
    if not 0.0 < rare < 1.0:
        raise CmdclError(f"--rare {rare}: must be a share between 0 and 1.")
    present = set(fs.index["split"].tolist())
    if name in present:
        raise CmdclError(f"{fs.paths[0]}: already has a split {name!r}.", fix="pass another --name.")
    positions = fs.select([s for s in sources if s in present])
    values, names = context_factors(fs, positions)
    if factor not in names:
        raise CmdclError(f"{fs.paths[0]}: no context factor {factor!r}; it has {', '.join(names) or 'none'}.",
                         fix="store a vocabulary with `cmdcl context-labels`, or pick one of those.")
    scene = values[:, names.index(factor)]
    activities = _activities(fs, positions) & (scene >= 0)[:, None]
    size = int(scene.max()) + 1 if len(scene) else 0
    counts = np.zeros((activities.shape[1], max(size, 1)), np.int64)  # (C, values): videos per activity and scene
    for c in range(activities.shape[1]):
        counts[c] = np.bincount(scene[activities[:, c]], minlength=counts.shape[1])
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    usual = share >= rare  # (C, values)
    held = activities.any(axis=1) & ~(activities & usual[:, np.clip(scene, 0, None)].T).any(axis=1)
    ids, splits = fs.index["video_id"][positions], fs.index["split"][positions]
    moved = {str(v): str(s) for v, s in zip(ids[held], splits[held])}
    summary = _summary(fs, positions, held, activities, splits, name)
    return SceneSplit(factor, rare, name, moved, {"factor": factor, "rare": rare, **summary})


def _summary(fs: FeatureSet, positions: np.ndarray, held: np.ndarray, activities: np.ndarray, splits: np.ndarray,
             name: str) -> dict[str, Any]:
    """Split sizes before and after, and per activity how many videos were held out."""
    before = {str(s): int(c) for s, c in zip(*np.unique(fs.index["split"], return_counts=True))}
    after = dict(before)
    for split in splits[held]:
        after[str(split)] -= 1
    after[name] = int(held.sum())
    classes = fs.text.class_names
    per_activity = {classes[c]: {"videos": int(activities[:, c].sum()), "held_out": int((activities[:, c] & held).sum())}
                    for c in range(activities.shape[1]) if activities[:, c].any()}
    return {"videos_considered": int(len(positions)), "held_out": int(held.sum()), "before": before, "after": after,
            "per_activity": per_activity}


def write_scene_split(features: str | Path | Sequence[str | Path], out: str | Path, split: SceneSplit) -> dict[str, int]:
    """Copy the features to `out` with the held-out videos in the new split."""
    from cmdcl.core.store import merge_feature_files

    if not split.moved:
        raise CmdclError(f"no video has a scene rarer than {split.rare} for its activities; nothing to hold out.",
                         fix="raise --rare.")
    return merge_feature_files(features, out, splits={v: split.name for v in split.moved})
