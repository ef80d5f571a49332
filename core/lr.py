"""The learning-rate shape every trainer here uses: linear warm-up, then cosine decay to zero
(the head's `train-head` loop and `pretrain-clip`'s CLIP training)."""
from __future__ import annotations

import math
from typing import Callable


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR multiplier per optimiser step: linear warm-up from ~0 to 1, then cosine decay to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor
