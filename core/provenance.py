"""Provenance compatibility: which recorded settings must agree, and one comparison for every site.

Feature files record how they were made as HDF5 attributes (docs/FORMAT.md); checkpoints keep a copy.
Four places compare them: feature files read or merged together (`FeatureSet`), part files of a shard
being resumed (`extract.runner`), a set of shards given to `cmdcl verify` (`core.store.verify`) and
features given to a trained head (`head.checkpoint`). They differ only in which attributes matter, named
here, and in how they word the refusal; the comparison itself is `mismatches` / `first_mismatch`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

# Feature files may only be read or merged together when these agree: same frozen model, same input
# pipeline, same sampling, same layout.
COMPATIBILITY_KEYS = (
    "format_version", "model_name", "pretrained", "weights_sha256", "image_size", "preprocess",
    "sampler", "frames", "patch_grid", "patch_layer", "embed_dim", "precision", "dataset",
)
# What a file written before an attribute existed meant by it: the patch tokens were the last block's.
ADDED_ATTRIBUTES = {"patch_layer": -1}
# A shard's part files, written by an interrupted run, may only be resumed by a run with these equal too.
RESUME_KEYS = (*COMPATIBILITY_KEYS, "shard_index", "num_shards")
# Shards of one dataset could be combined without these, but must not differ in them.
# (Not dataset_root: array tasks often read the videos from node-local copies.)
SHARD_CONSISTENCY_KEYS = ("num_classes", "num_steps", "multilabel", "splits")
# A trained head reads only features of the format and frozen model it was trained on
# (embedding size, vocabulary and patch grid are checked from the checkpoint's own dimensions).
CHECKPOINT_FORMAT_KEYS = ("format_version",)
CHECKPOINT_MODEL_KEYS = ("model_name", "pretrained")
# Runs compared by `cmdcl compare` must have been scored on the same feature files; these attributes
# identify them. dataset_root too (unlike SHARD_CONSISTENCY_KEYS): two worlds made by one generator can
# share every video id and label, and only where their videos came from tells them apart.
FEATURE_IDENTITY_KEYS = (*COMPATIBILITY_KEYS, "dataset_root")


def identity(attrs: Mapping[str, Any]) -> dict[str, str]:
    """The FEATURE_IDENTITY_KEYS of `attrs` as `comparable` text (absent keys left out)."""
    return {key: comparable(attrs[key]) for key in FEATURE_IDENTITY_KEYS if key in attrs}

_MISSING = object()


def comparable(value: Any) -> str:
    """One text form for a value as written (Python, JSON-able) and as read back from HDF5 (bytes, numpy
    scalars, nested values stored as JSON text, None stored as "")."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar
        value = value.item()
    return str("" if value is None else value)


@dataclass(frozen=True)
class Mismatch:
    """One attribute that differs: its name and the two values (as `comparable` text)."""

    key: str
    ours: str
    theirs: str

    def __str__(self) -> str:
        return f"{self.key}={self.ours!r} vs {self.theirs!r}"


def mismatches(ours: Mapping[str, Any], theirs: Mapping[str, Any], keys: Sequence[str] = COMPATIBILITY_KEYS,
               skip_missing: bool = False) -> Iterator[Mismatch]:
    """The attributes among `keys` whose values differ, in `keys` order.

    A key missing on one side differs from any value on the other, unless `skip_missing` (files
    written before that attribute existed are then trusted on it).
    """
    for key in keys:
        a, b = ours.get(key, _MISSING), theirs.get(key, _MISSING)
        if a is _MISSING or b is _MISSING:
            if a is not b and not skip_missing:
                yield Mismatch(key, "<missing>" if a is _MISSING else comparable(a),
                               "<missing>" if b is _MISSING else comparable(b))
            continue
        if comparable(a) != comparable(b):
            yield Mismatch(key, comparable(a), comparable(b))


def first_mismatch(ours: Mapping[str, Any], theirs: Mapping[str, Any], keys: Sequence[str] = COMPATIBILITY_KEYS,
                   skip_missing: bool = False) -> Mismatch | None:
    """The first attribute among `keys` that differs, or None when all agree."""
    return next(mismatches(ours, theirs, keys, skip_missing), None)
