"""The optional /context group: zero-shot context vocabularies (scenes, lighting, clothing...) stored with
the features, from which per-video pseudo context labels are read (head/metrics/pseudo_labels.py).

    /context/<factor>/names          (V,)   str      the factor's values ("kitchen", "bedroom", ...)
    /context/<factor>/templates      (T,)   str      prompt templates, "{}" is the value
    /context/<factor>/text_features  (V, D) float32  L2-normalised CLIP text embeddings (template ensemble)
    /context/<factor>/truncated      (K,)   str      values whose prompts hit the 77-token context
    /context/<factor>  attribute `source`: where the vocabulary came from (places365, a file...)

Only the vocabulary is stored, never per-video labels: those follow from the stored frame features, so
they cannot go stale and a vocabulary can be added to a finished file afterwards (`cmdcl context-labels`,
`write_context`) without touching /videos. docs/FORMAT.md "Context vocabularies".
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from ..errors import FeatureFileError

from .layout import STR, _decode_attr, _strings

CONTEXT_GROUP = "context"
FACTOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_ .-]*$")  # an HDF5 group name, and one word on a table


@dataclass
class ContextVocab:
    """One context factor's values and their frozen text embeddings."""

    factor: str
    names: list[str]
    templates: list[str]
    text_features: np.ndarray  # (V, D) float32, L2-normalised
    source: str = ""
    truncated: list[str] = field(default_factory=list)

    def same_as(self, other: "ContextVocab") -> bool:
        """The same values from the same prompts (the embeddings then follow from the file's model)."""
        return (self.factor, self.names, self.templates) == (other.factor, other.names, other.templates)


def check_factor_name(factor: str, where: str) -> str:
    if not FACTOR_NAME.match(factor or ""):
        raise FeatureFileError(f"{where}: context factor name {factor!r} must start with a letter or digit and "
                               "hold only letters, digits, spaces and _ . -")
    return factor


def write_context_group(f: h5py.File, vocabs: Mapping[str, ContextVocab], replace: bool = False) -> None:
    """Write each vocabulary under /context/<factor> of an open file (replacing a factor only with `replace`)."""
    if not vocabs:
        return
    # Creation order kept: factors list in the order they were given (HDF5 would otherwise sort them by name).
    group = f[CONTEXT_GROUP] if CONTEXT_GROUP in f else f.create_group(CONTEXT_GROUP, track_order=True)
    for factor, vocab in vocabs.items():
        check_factor_name(factor, str(f.filename))
        if factor in group:
            if not replace:
                raise FeatureFileError(f"{f.filename}: context factor {factor!r} is already stored.",
                                       fix="pass --replace to overwrite it.")
            del group[factor]
        sub = group.create_group(factor)
        sub.attrs["source"] = vocab.source
        for name, values in (("names", vocab.names), ("templates", vocab.templates), ("truncated", vocab.truncated)):
            sub.create_dataset(name, data=np.array(list(values), dtype=object), dtype=STR)
        sub.create_dataset("text_features", data=np.asarray(vocab.text_features, np.float32))


def read_context_group(f: h5py.File) -> dict[str, ContextVocab]:
    """factor -> vocabulary of an open file ({} without /context)."""
    if CONTEXT_GROUP not in f:
        return {}
    out = {}
    for factor, sub in f[CONTEXT_GROUP].items():
        out[factor] = ContextVocab(factor=factor, names=_strings(sub["names"]), templates=_strings(sub["templates"]),
                                   text_features=sub["text_features"][()].astype(np.float32),
                                   source=str(_decode_attr(sub.attrs.get("source", ""))),
                                   truncated=_strings(sub["truncated"]) if "truncated" in sub else [])
    return out


def check_context_group(f: h5py.File, path: Path, embed_dim: int) -> None:
    """Each factor needs names and (V, D) text features of the file's embedding size."""
    if CONTEXT_GROUP not in f:
        return
    for factor, sub in f[CONTEXT_GROUP].items():
        if not isinstance(sub, h5py.Group) or "names" not in sub or "text_features" not in sub:
            raise FeatureFileError(f"{path}: /{CONTEXT_GROUP}/{factor} needs datasets names and text_features.")
        shape, count = sub["text_features"].shape, sub["names"].shape[0]
        if shape != (count, embed_dim) or count < 1:
            raise FeatureFileError(f"{path}: /{CONTEXT_GROUP}/{factor}/text_features has shape {shape}, "
                                   f"expected ({count}, {embed_dim}) with at least one value.")


def read_context(path: str | Path) -> dict[str, ContextVocab]:
    """factor -> vocabulary of one file ({} without /context)."""
    with h5py.File(path, "r") as f:
        return read_context_group(f)


def write_context(path: str | Path, vocabs: Mapping[str, ContextVocab], replace: bool = False) -> None:
    """Add vocabularies to a finished feature file in place.

    Only the small /context group is written; /videos is not touched, so memory maps and the `.done` marker
    stay valid. The write is an in-place HDF5 update, not a renamed copy: a crash in the middle can damage the
    file's metadata, so keep a copy of files you cannot re-extract (the group itself is a few hundred KB)."""
    with h5py.File(path, "a") as f:
        write_context_group(f, vocabs, replace=replace)
        f.flush()
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
