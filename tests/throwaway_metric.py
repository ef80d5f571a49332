"""The throwaway metric of tests/throwaway_entries.py: a new metric is one `compute` function like this one
and one METRICS entry (docs/TRAINING.md, "Adding a metric")."""
from __future__ import annotations

import numpy as np


def margin(split) -> dict:
    """Mean over videos of the gap between the top two class logits; kept per video for `compare`."""
    top = np.sort(split.outputs["logits"], axis=1)
    gap = top[:, -1] - top[:, -2]
    split.keep_per_video("throwaway_margin", gap)
    return {"throwaway_margin": float(gap.mean())} if len(gap) else {}
