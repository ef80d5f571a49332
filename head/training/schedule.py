"""The recipe shared by every trained head: AdamW parameter groups, the schedule in optimiser steps
(warm-up + cosine), and the model-selection / early-stopping rule. docs/TRAINING.md gives the reasons.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

from cmdcl.core.lr import warmup_cosine  # noqa: F401  (re-exported: the head's schedule)
from ..model.config import HeadConfig
from ..data import steps_per_epoch


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: not on norms, biases or temperatures (1-d or named *temperature*)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "temperature" in name or "logit_scale" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------- schedule

AUTO_EPOCHS = 30  # epochs (= validation rounds) of an automatic schedule (--epochs 0)


@dataclass
class Schedule:
    """The resolved optimisation schedule of a run, in optimiser steps (stored in checkpoints).

    An epoch is `passes_per_epoch` shuffled passes over the training videos: 1 unless the training set
    is so small that AUTO_EPOCHS single passes would make fewer than `min_steps` steps.
    """
    train_videos: int
    batch_size: int  # global
    steps_per_pass: int
    passes_per_epoch: int
    epochs: int
    warmup_steps: int

    @property
    def steps_per_epoch(self) -> int:
        return self.steps_per_pass * self.passes_per_epoch

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def describe(self) -> str:
        passes = f" x {self.passes_per_epoch} passes" if self.passes_per_epoch > 1 else ""
        return (f"schedule: {self.train_videos} training videos, batch {self.batch_size}: {self.steps_per_pass} steps "
                f"per pass{passes} = {self.steps_per_epoch} steps per epoch, {self.epochs} epochs = "
                f"{self.total_steps} steps, warm-up {self.warmup_steps} steps.")

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Schedule":
        return cls(**{f.name: int(data[f.name]) for f in fields(cls)})


def resolve_schedule(cfg: HeadConfig, train_videos: int, world: int = 1,
                     passes_per_epoch: int | None = None) -> Schedule:
    """The schedule for `train_videos` at cfg's batch size (docs/TRAINING.md, "Schedule").

    --epochs N (N > 0): exactly N single-pass epochs. --epochs 0 (default): AUTO_EPOCHS epochs of as few
    passes as give at least cfg.min_steps steps in all. A resumed run passes its checkpoint's
    passes_per_epoch, so that the data order (a function of seed, epoch and pass) does not change.
    """
    per_pass = steps_per_epoch(train_videos, cfg.batch_size // world, world)
    epochs = cfg.epochs or AUTO_EPOCHS
    if passes_per_epoch is None:
        passes_per_epoch = 1 if cfg.epochs else max(1, math.ceil(cfg.min_steps / (epochs * per_pass)))
    steps = per_pass * passes_per_epoch
    return Schedule(train_videos=int(train_videos), batch_size=cfg.batch_size, steps_per_pass=per_pass,
                    passes_per_epoch=int(passes_per_epoch), epochs=epochs, warmup_steps=cfg.warmup_epochs * steps)


# ---------------------------------------------------------------------------------------------- selection

@dataclass
class Selection:
    """How best.pt is chosen and when training stops early (docs/TRAINING.md, "Model selection")."""
    val_videos: int
    keep: str  # "best": the epoch with the best validation metric; "last": the final epoch
    patience: int  # epochs without improvement before stopping (0 = never stop early)
    reason: str

    def describe(self, metric: str) -> str:
        if self.keep == "last":
            return f"model selection: best.pt = the last epoch, no early stopping ({self.reason})."
        stop = (f"early stopping after {self.patience} epochs without improvement" if self.patience
                else "no early stopping")
        return f"model selection: best.pt = the epoch of best validation {metric} on {self.val_videos} videos, {stop}."


def resolve_selection(cfg: HeadConfig, val_videos: int, validates_on_train: bool) -> Selection:
    """Select on validation only when it is large enough that one video moves the metric little."""
    if validates_on_train:
        return Selection(val_videos, "last", 0, "no validation videos: the training videos stand in")
    if val_videos < cfg.min_val_videos:
        return Selection(val_videos, "last", 0, f"{val_videos} validation videos < --min-val-videos "
                                                 f"{cfg.min_val_videos}: one video moves top-1 by "
                                                 f"{100 / max(1, val_videos):.0f} points")
    return Selection(val_videos, "best", cfg.patience, "")


# ---------------------------------------------------------------------------------------------- convergence

CONVERGE_MIN_FALL = 1e-3  # nats: a smaller fall of the training loss is not progress
CONVERGE_MIN_TOP1 = 0.99  # the run must fit its training videos before it may stop


@dataclass
class Convergence:
    """Stop a run whose TRAINING loss has stopped falling (docs/TRAINING.md, "Convergence").

    Judged on the training set only: validation may be too small to trust (the demo's is 24 videos) and a
    test split must never steer training. An epoch is progress when its training loss falls below the best
    so far by more than `delta` of it (relative, like ReduceLROnPlateau's "rel" mode) and by more than
    CONVERGE_MIN_FALL (absolute: a loss of 2e-4 halving to 1e-4 is not learning anything). After `patience`
    epochs without progress the run stops and keeps that epoch, but only once it fits its training set
    (train top-1 >= CONVERGE_MIN_TOP1; multi-label runs have no top-1 and are judged on the loss alone):
    a loss that sits still at chance before a head finds the signal is a plateau, not convergence.
    patience 0: never.
    """
    patience: int
    delta: float
    best_loss: float = math.inf
    stale: int = 0
    stopped_at: int = 0  # the epoch at which the rule stopped the run (0: it did not)

    @classmethod
    def from_config(cls, cfg: HeadConfig, saved: dict[str, Any] | None = None) -> "Convergence":
        """The rule of cfg, continuing the state `saved` (a checkpoint's schedule["convergence"]) on resume."""
        # --epochs N asks for exactly N epochs (to reproduce a schedule): the rule shortens the automatic one only
        rule = cls(0 if cfg.epochs else cfg.converge_patience, cfg.converge_delta)
        if saved:
            rule.best_loss, rule.stale = float(saved["best_loss"]), int(saved["stale"])
            rule.stopped_at = int(saved.get("stopped_at", 0))
        return rule

    def update(self, train_loss: float, epoch: int = 0, train_top1: float | None = None) -> bool:
        """Record one epoch's training loss (and top-1); True when the run has converged and should stop."""
        if not math.isfinite(train_loss):
            return False
        if self.best_loss == math.inf or self.best_loss - train_loss > max(self.delta * self.best_loss,
                                                                        CONVERGE_MIN_FALL):
            self.best_loss, self.stale = train_loss, 0
        else:
            self.stale += 1
        fits = train_top1 is None or train_top1 >= CONVERGE_MIN_TOP1
        if self.patience and self.stale >= self.patience and fits:
            self.stopped_at = self.stopped_at or epoch
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "stale": self.stale, "stopped_at": self.stopped_at}

    def describe(self) -> str:
        if not self.patience:
            return "convergence stop: off (--converge-patience 0, or an explicit --epochs)."
        return (f"convergence stop: after {self.patience} epochs in which the training loss fell less than "
                f"{self.delta:.0%} (and {CONVERGE_MIN_FALL:g}) below its best, once train top-1 >= "
                f"{CONVERGE_MIN_TOP1:g}.")
