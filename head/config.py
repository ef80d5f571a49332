"""Every option of the head in one dataclass, so checkpoints store and restore it whole.

Defaults follow docs/METHOD.md (our reading of the paper), which marks our own choices [ours].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

from cmdcl.core.errors import CmdclError

from .registry import METHODS, TableNames, methods_help

# The allowed values of the string-valued options: the one list, checked by `check_choice` (used by
# `HeadConfig.check()` and by the head modules' constructors).
CHOICES: dict[str, Sequence[str]] = {
    "method": TableNames(METHODS),  # the heads of head/registry.py, read when checked
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


def option(default: Any, help: str, flag: str | None = None) -> Any:
    """A dataclass field with its command-line help (and flag, when not --field-name): the one source of
    each option's default and help, read by pipelines/config_options.py."""
    return field(default=default, metadata={"help": help, **({"flag": flag} if flag else {})})


@dataclass
class HeadConfig:
    method: str = option("cmdcl", methods_help())
    # --- CMDCL switches (docs/METHOD.md)
    use_tci: bool = option(True, "Textual causal (back-door) intervention.", flag="--tci/--no-tci")
    use_vci: bool = option(True, "Visual causal (front-door) intervention.", flag="--vci/--no-vci")
    sta_layers: int = option(6, "H spatio-temporal attention blocks (transformer: layers); paper's best 6 or 8.")
    frames: int = option(0, "Keep this many frames per video, spread over its valid frames (0 = all cached).")
    bias_estimator: str = option("attention", "attention | sinkhorn.")
    # 5 iterations leave row sums ~37% off at S=48, F=64; 50 converge (eps 0.1): docs/METHOD.md
    sinkhorn_iters: int = option(50, "Sinkhorn iterations (bias estimator sinkhorn).")
    sinkhorn_eps: float = option(0.1, "Entropic regularisation of the Sinkhorn plan.")
    bias_source: str = option("video", "video | dictionary.")
    frontdoor_cross: str = option("dictionary", "dictionary | none.")
    dictionary_size: int = option(32, "K prototypes of the bias dictionary and the front-door memory.")
    use_patches: bool = option(False, "Use cached patch tokens (divided space/time attention).")
    tci_residual: bool = option(True, "T' = T + [T;B]W_B (residual) or [T;B]W_B.")
    classifier: str = option("similarity", "similarity | attention: how V', T' give per-step evidence.")
    # --- shared model sizes
    width: int = option(0, "Hidden width (0 = embedding size).")
    heads: int = option(4, "Attention heads.")
    dropout: float = option(0.1, "Dropout.")
    init_temperature: float = option(0.07, "Initial temperature of the learnable logit scales.")
    aux_step_loss: float = option(0.5, "Weight of the step-presence BCE (when steps are annotated).")
    # --- optimisation. Schedule and selection: head/schedule.py, docs/TRAINING.md; one recipe for every method.
    epochs: int = option(0, "0 = auto: 30 epochs with >= --min-steps steps in all (small sets: several passes "
                            "per epoch); N = exactly N one-pass epochs.")
    min_steps: int = option(1000, "Fewest optimiser steps of the automatic schedule.")
    batch_size: int = option(32, "Global batch size (split over DDP ranks).")
    lr: float = option(1e-3, "Peak learning rate (AdamW).")
    weight_decay: float = option(0.05, "AdamW weight decay (matrices only).")
    warmup_epochs: int = option(2, "Linear warm-up over this many epochs' steps.")
    grad_clip: float = option(1.0, "Gradient-norm clipping (0 = off).")
    patience: int = option(10, "Early stopping patience in epochs (0 = off).")
    min_val_videos: int = option(100, "Fewer validation videos: no early stopping, best.pt = last epoch.")
    converge_patience: int = option(5, "Stop once the TRAINING loss has not fallen by --converge-delta (relative) "
                                       "for this many epochs (0 = off; automatic schedule only): docs/TRAINING.md.")
    converge_delta: float = option(0.05, "Relative fall of the best training loss that counts as progress.")
    val_fraction: float = option(0.1, "Carved from train when there is no val split.")
    seed: int = option(0, "Seed of the head, the data order and the carved validation.")
    refresh_memory: bool = option(True, "EMA-refresh the front-door memory after each epoch.")
    # --- data path (head/data.py)
    data_mode: str = option("auto", "auto | memory | memmap (larger than RAM).")
    eval_batch_size: int = option(0, "Validation batch size (0 = 2 x batch size).")

    def check(self) -> "HeadConfig":
        """Raise a one-line CmdclError naming the first option with an impossible value (the one place that
        validates options; checks that need the data, e.g. patches present, are made where it is read)."""
        for name in CHOICES:
            check_choice(name, getattr(self, name))
        for name in ("batch_size", "heads", "dictionary_size"):
            if getattr(self, name) < 1:
                raise CmdclError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}.")
        for name in ("epochs", "min_steps", "min_val_videos", "sta_layers", "frames", "width", "patience",
                     "warmup_epochs", "eval_batch_size", "converge_patience"):
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
        if not 0.0 <= self.converge_delta < 1.0:
            raise CmdclError(f"--converge-delta must be in [0, 1), got {self.converge_delta}.")
        if not 0.0 <= self.dropout < 1.0:
            raise CmdclError(f"--dropout must be in [0, 1), got {self.dropout}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HeadConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
