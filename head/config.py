"""Every option of the head in one dataclass, so checkpoints store and restore it whole.

Defaults follow docs/METHOD.md (our reading of the paper); [ours] choices are the switches of §6.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from cmdcl.core.errors import CmdclError

# The allowed values of the string-valued options: the one list, checked by `check_choice` (used by
# `HeadConfig.check()` and by the head modules' constructors).
CHOICES: dict[str, tuple[str, ...]] = {
    "method": ("cmdcl", "linear", "transformer", "zeroshot"),
    "bias_estimator": ("attention", "sinkhorn"),
    "bias_source": ("video", "dictionary"),
    "frontdoor_cross": ("dictionary", "none"),
    "classifier": ("similarity", "attention"),
    "data_mode": ("auto", "memory", "memmap"),
}


def check_choice(name: str, value: str) -> None:
    """Raise a one-line CmdclError when `value` is not an allowed value of option `name` (CHOICES)."""
    if value not in CHOICES[name]:
        raise CmdclError(f"--{name.replace('_', '-')} {value!r} is not one of {', '.join(CHOICES[name])}.")


@dataclass
class HeadConfig:
    method: str = "cmdcl"  # cmdcl | linear | transformer | zeroshot
    # --- CMDCL switches (method.md §6)
    use_tci: bool = True  # textual causal (back-door) intervention
    use_vci: bool = True  # visual causal (front-door) intervention
    sta_layers: int = 6  # H spatio-temporal attention blocks (paper's best: 6 or 8)
    frames: int = 0  # FeatureData keeps this many frames per video, spread over its valid ones (0 = all cached)
    bias_estimator: str = "attention"  # attention | sinkhorn
    sinkhorn_iters: int = 50  # 5 leaves row sums ~37% off at S=48, F=64; 50 converges (eps 0.1)
    sinkhorn_eps: float = 0.1
    bias_source: str = "video"  # video | dictionary
    frontdoor_cross: str = "dictionary"  # dictionary | none
    dictionary_size: int = 32  # K prototypes for the bias dictionary and the front-door memory
    use_patches: bool = False  # use cached patch tokens (divided space/time attention)
    tci_residual: bool = True  # T' = T + [T;B]W_B (True) or [T;B]W_B (False)
    classifier: str = "similarity"  # similarity | attention: how V', T' give per-step evidence
    # --- shared model sizes
    width: int = 0  # hidden width of the video encoder (0 = embedding size D)
    heads: int = 4
    dropout: float = 0.1
    init_temperature: float = 0.07
    aux_step_loss: float = 0.5  # weight of BCE on atomic-action presence when steps are annotated
    # --- optimisation
    # Schedule and selection: head/schedule.py, docs/TRAINING.md. Every trained method uses the same recipe.
    epochs: int = 0  # 0 = auto: 30 epochs of enough passes for min_steps steps in all; N = exactly N one-pass epochs
    min_steps: int = 1000  # fewest optimiser steps of an automatic schedule (small datasets: passes per epoch)
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2  # linear warm-up over this many epochs of the resolved schedule, in steps
    grad_clip: float = 1.0
    patience: int = 10  # early stopping on the validation metric (0 = off)
    min_val_videos: int = 100  # fewer validation videos: no early stopping, best.pt is the last epoch
    val_fraction: float = 0.1  # carved from train when the features have no "val" split
    seed: int = 0
    refresh_memory: bool = True  # EMA-refresh the front-door memory from training-video summaries after each epoch
    # --- data path (head/data.py)
    data_mode: str = "auto"  # auto | memory | memmap: load features into RAM, or gather batches from a memory map
    eval_batch_size: int = 0  # batch size for validation/evaluation (0 = 2 x batch_size)

    def check(self) -> "HeadConfig":
        """Raise a one-line CmdclError naming the first option with an impossible value (the one place that
        validates options; checks that need the data, e.g. patches present, are made where it is read)."""
        for name in CHOICES:
            check_choice(name, getattr(self, name))
        for name in ("batch_size", "heads", "dictionary_size"):
            if getattr(self, name) < 1:
                raise CmdclError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}.")
        for name in ("epochs", "min_steps", "min_val_videos", "sta_layers", "frames", "width", "patience",
                     "warmup_epochs", "eval_batch_size"):
            if getattr(self, name) < 0:
                raise CmdclError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}.")
        if self.lr <= 0:
            raise CmdclError(f"--lr must be > 0, got {self.lr}.")
        if self.init_temperature <= 0:
            raise CmdclError(f"init_temperature must be > 0, got {self.init_temperature}.")
        if self.width and self.sta_layers > 0 and self.width % self.heads:
            raise CmdclError(f"--width {self.width} is not divisible by --heads {self.heads}.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise CmdclError(f"--val-fraction must be in [0, 1), got {self.val_fraction}.")
        if not 0.0 <= self.dropout < 1.0:
            raise CmdclError(f"--dropout must be in [0, 1), got {self.dropout}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HeadConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
