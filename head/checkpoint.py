"""Checkpoints: what they hold, atomic saving, and loading that refuses bad or mismatched files in one line.

Contents (a plain dict, loadable with `torch.load(..., weights_only=True)`):
  model, optimizer, scheduler            state dicts (optimizer/scheduler None for heads without parameters)
  model_args                             {"method", "dims", "multilabel", "class_names", "step_names",
                                          "class_text", "step_text"}: enough to rebuild the head without features
  config                                 HeadConfig.to_dict()
  provenance                             the feature files' provenance (FeatureSet.provenance())
  vocabulary                             {"class_names", "step_names"}
  format_version                         CHECKPOINT_FORMAT_VERSION (of this dict, not of the features)
  epoch, step_in_epoch                   where training resumes: epoch index and batches already done in it
  best_metric, best_epoch, patience_left early-stopping state
  partial_epoch                          running train-loss sums of an interrupted epoch
  rng                                    torch / cuda / numpy / python RNG states
  code_version                           core.version.code_version()
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmdcl.core.errors import CheckpointError
from cmdcl.core.provenance import CHECKPOINT_FORMAT_KEYS, CHECKPOINT_MODEL_KEYS, first_mismatch
from cmdcl.core.store import FeatureSet

CHECKPOINT_FORMAT_VERSION = 1
REQUIRED_KEYS = ("model", "model_args", "config", "provenance", "vocabulary", "format_version", "epoch",
                 "step_in_epoch", "best_metric", "patience_left", "rng", "code_version")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write under a temporary name, fsync, then rename: a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and sanity-check a checkpoint, or raise a one-line CheckpointError naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint does not exist.")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file.",
                              fix=f"pass {path / 'best.pt'} or {path / 'last.pt'}.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for garbage, truncation and foreign pickles
        reason = " ".join(str(exc).split())[:120]
        raise CheckpointError(f"{path}: not a readable cmdcl checkpoint (corrupt, truncated or another format: "
                              f"{type(exc).__name__}: {reason}).") from None
    if not isinstance(state, dict) or "model_args" not in state:
        raise CheckpointError(f"{path}: not a cmdcl checkpoint (no model_args).")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing {', '.join(missing)}.")
    if state["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format_version {state['format_version']} but this cmdcl reads "
                              f"{CHECKPOINT_FORMAT_VERSION}.", fix="use the cmdcl version that wrote it.")
    return state


def check_compatible(state: dict[str, Any], features: FeatureSet, path: str | Path) -> None:
    """Refuse features the checkpoint's head cannot read: embedding size, vocabulary or feature format."""
    prov = state["provenance"]
    where = f"{path}: checkpoint"
    feat = features.paths[0]
    if first_mismatch(prov, features.attrs, CHECKPOINT_FORMAT_KEYS):
        raise CheckpointError(f"{where} was trained on feature format_version {prov.get('format_version')} but "
                              f"{feat} has format_version {features.attrs.get('format_version')}.")
    dims = state["model_args"]["dims"]
    if int(dims["D"]) != features.dims["D"]:
        raise CheckpointError(f"{where} expects {dims['D']}-d embeddings ({prov.get('model_name')}) but {feat} "
                              f"holds {features.dims['D']}-d ({features.attrs.get('model_name')}).",
                              fix="evaluate with features extracted by the same model.")
    for kind in ("class_names", "step_names"):
        ours, theirs = list(state["vocabulary"][kind]), getattr(features.text, kind)
        if ours != theirs:
            if len(ours) != len(theirs):
                detail = f"{len(ours)} vs {len(theirs)} names"
            else:
                i = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
                detail = f"entry {i} is {ours[i]!r} vs {theirs[i]!r}"
            raise CheckpointError(f"{where} label vocabulary ({kind}) differs from {feat}: {detail}.")
    if int(dims.get("P", 0)) and int(dims["P"]) != features.dims["P"]:
        raise CheckpointError(f"{where} uses {dims['P']} patches per frame but {feat} has {features.dims['P']}.")
    mismatch = first_mismatch(prov, features.attrs, CHECKPOINT_MODEL_KEYS)
    if mismatch:
        key = mismatch.key
        raise CheckpointError(f"{where} was trained on features of {key}={prov.get(key)!r} but {feat} has "
                              f"{key}={features.attrs.get(key)!r}.",
                              fix="evaluate with features extracted by the same model.")


# ---------------------------------------------------------------------------------------------- RNG

def rng_state() -> dict[str, Any]:
    """Every RNG the loop touches, in types that `weights_only` loading accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
