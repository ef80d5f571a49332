"""Checkpoints: the schema (`Checkpoint`), atomic saving, and loading that refuses bad or mismatched files
in one line.

On disk a checkpoint is a plain dict, loadable with `torch.load(..., weights_only=True)`; `Checkpoint`
is the only code that knows its keys (`to_dict` / `from_dict`):
  model, optimizer, scheduler            state dicts (optimizer/scheduler None for heads without parameters)
  model_args                             {"method", "dims", "multilabel", "class_names", "step_names",
                                          "class_text", "step_text"}: enough to rebuild the head without features
  config                                 HeadConfig.to_dict()
  provenance                             the feature files' provenance (FeatureSet.provenance())
  vocabulary                             {"class_names", "step_names"}
  format_version                         CHECKPOINT_FORMAT_VERSION (of this dict, not of the features)
  epoch, step_in_epoch                   where training resumes: epoch index and batches already done in it
  best_metric, best_epoch, best_val,     model-selection and early-stopping state
  patience_left
  partial_epoch                          running train-loss sums of an interrupted epoch
  finished                               the run ended (all epochs or early stop)
  schedule                               the resolved schedule (head/training/schedule.py), None in older files
  rng                                    torch / cuda / numpy / python RNG states
  code_version                           core.version.code_version()
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmdcl.core.errors import CheckpointError, shorten
from cmdcl.core.provenance import CHECKPOINT_FORMAT_KEYS, CHECKPOINT_MODEL_KEYS, first_mismatch
from cmdcl.core.store import FeatureSet
from .config import HeadConfig

CHECKPOINT_FORMAT_VERSION = 1
REQUIRED_KEYS = ("model", "model_args", "config", "provenance", "vocabulary", "format_version", "epoch",
                 "step_in_epoch", "best_metric", "patience_left", "rng", "code_version")


@dataclass
class ModelArgs:
    """What rebuilds the head without the features: method, dims {F, D, C, S, P}, label texts."""
    method: str
    dims: dict[str, int]
    multilabel: bool
    class_names: list[str]
    step_names: list[str]
    class_text: torch.Tensor
    step_text: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "dims": dict(self.dims), "multilabel": self.multilabel,
                "class_names": list(self.class_names), "step_names": list(self.step_names),
                "class_text": self.class_text, "step_text": self.step_text}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelArgs":
        return cls(method=str(data["method"]), dims={k: int(v) for k, v in data["dims"].items()},
                   multilabel=bool(data["multilabel"]), class_names=list(data["class_names"]),
                   step_names=list(data["step_names"]), class_text=data["class_text"], step_text=data["step_text"])


@dataclass
class Checkpoint:
    """One checkpoint file's content (see the module docstring for the on-disk keys)."""
    model: dict[str, torch.Tensor]
    model_args: ModelArgs
    config: HeadConfig
    provenance: dict[str, Any]
    epoch: int = 0
    step_in_epoch: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    best_val: dict[str, Any] = field(default_factory=dict)
    patience_left: int = 0
    finished: bool = False
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    partial_epoch: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    format_version: int = CHECKPOINT_FORMAT_VERSION

    # Shorthands for what readers of a checkpoint ask most.
    @property
    def method(self) -> str:
        return self.model_args.method

    @property
    def frames(self) -> int:
        """Frames per video the head was trained on (after --frames)."""
        return int(self.model_args.dims["F"])

    @property
    def multilabel(self) -> bool:
        return self.model_args.multilabel

    @property
    def class_names(self) -> list[str]:
        return self.model_args.class_names

    @property
    def step_names(self) -> list[str]:
        return self.model_args.step_names

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
            "model_args": self.model_args.to_dict(), "config": self.config.to_dict(), "provenance": self.provenance,
            "vocabulary": {"class_names": list(self.class_names), "step_names": list(self.step_names)},
            "format_version": self.format_version, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "best_metric": self.best_metric, "best_epoch": self.best_epoch, "best_val": self.best_val,
            "patience_left": self.patience_left, "partial_epoch": self.partial_epoch, "finished": self.finished,
            "schedule": self.schedule, "rng": self.rng, "code_version": self.code_version,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "Checkpoint":
        """From a loaded dict; keys added after format 1 (best_epoch, best_val, finished, schedule) may be absent."""
        return cls(
            model=state["model"], model_args=ModelArgs.from_dict(state["model_args"]),
            config=HeadConfig.from_dict(state["config"]), provenance=dict(state["provenance"]),
            epoch=int(state["epoch"]), step_in_epoch=int(state["step_in_epoch"]),
            best_metric=float(state["best_metric"]), best_epoch=int(state.get("best_epoch", 0)),
            best_val=dict(state.get("best_val") or {}), patience_left=int(state["patience_left"]),
            finished=bool(state.get("finished", False)), optimizer=state.get("optimizer"),
            scheduler=state.get("scheduler"), partial_epoch=state.get("partial_epoch"), schedule=state.get("schedule"),
            rng=state["rng"], code_version=str(state["code_version"]), format_version=int(state["format_version"]))


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write under a temporary name, fsync, then rename: a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(checkpoint.to_dict(), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
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
        reason = shorten(str(exc), 120)
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
    try:
        return Checkpoint.from_dict(state)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: malformed cmdcl checkpoint ({type(exc).__name__}: {exc}).") from None


def check_compatible(checkpoint: Checkpoint, features: FeatureSet, path: str | Path) -> None:
    """Refuse features the checkpoint's head cannot read: embedding size, vocabulary or feature format."""
    prov = checkpoint.provenance
    where = f"{path}: checkpoint"
    feat = features.paths[0]
    if first_mismatch(prov, features.attrs, CHECKPOINT_FORMAT_KEYS):
        raise CheckpointError(f"{where} was trained on feature format_version {prov.get('format_version')} but "
                              f"{feat} has format_version {features.attrs.get('format_version')}.")
    dims = checkpoint.model_args.dims
    if int(dims["D"]) != features.dims["D"]:
        raise CheckpointError(f"{where} expects {dims['D']}-d embeddings ({prov.get('model_name')}) but {feat} "
                              f"holds {features.dims['D']}-d ({features.attrs.get('model_name')}).",
                              fix="evaluate with features extracted by the same model.")
    for kind in ("class_names", "step_names"):
        ours, theirs = list(getattr(checkpoint, kind)), getattr(features.text, kind)
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
