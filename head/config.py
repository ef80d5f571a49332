"""Every option of the head in one dataclass, so checkpoints store and restore it whole.

Defaults follow docs/METHOD.md (our reading of the paper); [ours] choices are the switches of §6.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class HeadConfig:
    method: str = "cmdcl"  # cmdcl | linear | transformer | zeroshot
    # --- CMDCL switches (method.md §6)
    use_tci: bool = True  # textual causal (back-door) intervention
    use_vci: bool = True  # visual causal (front-door) intervention
    sta_layers: int = 6  # H spatio-temporal attention blocks (paper's best: 6 or 8)
    frames: int = 0  # sub-sample cached frames to this many (0 = all cached)
    bias_estimator: str = "attention"  # attention | sinkhorn
    sinkhorn_iters: int = 5
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
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    grad_clip: float = 1.0
    patience: int = 10  # early stopping on the validation metric (0 = off)
    val_fraction: float = 0.1  # carved from train when the features have no "val" split
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HeadConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
