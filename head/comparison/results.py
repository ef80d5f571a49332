"""What `cmdcl compare` finds: one `Row` per run and the `Comparison` that holds them (plain data; compare.py
computes them, compare_output.py writes them)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cmdcl.core.json_files import json_safe
from .stats import CONFIDENCE


@dataclass
class Row:
    """One run of a comparison. diff_* and p are None for the reference."""

    run: str
    path: str
    seeds: list[int | None]
    per_seed: list[float]
    mean: float
    ci_low: float
    ci_high: float
    ci_kind: str  # "t over seeds" or "bootstrap over videos"
    video_ci: tuple[float, float]  # bootstrap over videos of the seed mean (test-set noise alone)
    diff: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    p: float | None = None
    pairing: str | None = None
    diff_seed_ci: tuple[float, float] | None = None  # t interval of per-seed differences (matched seeds, n >= 2)
    diff_method: str | None = None  # the bootstrap method the difference's interval used (BCa may fall back)
    train_split: str | None = None  # the split the run's head was trained on (config.json; None: unknown)


@dataclass
class Comparison:
    split: str
    metric: str
    reference: str
    num_videos: int
    rows: list[Row]
    n_resamples: int
    ci_method: str
    confidence: float = CONFIDENCE
    notes: list[str] = field(default_factory=list)
    forced: bool = False  # --force: runs compared although their features or split differ (said in notes)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))
