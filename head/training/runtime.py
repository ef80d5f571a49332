"""Process-level plumbing of the training loop: stop signals, seeding, and the few DDP collectives.

Pre-emption: SIGTERM or SIGUSR1 only set a flag (`stop_reason()`); the loop checks it at every step
boundary, so a signal never interrupts a half-done optimiser step or checkpoint write.
"""
from __future__ import annotations

import os
import random
import signal
import threading
from typing import Any

import numpy as np
import torch

from cmdcl.core.errors import CmdclError

_stop_reason: str | None = None


def request_stop(reason: str = "stop requested") -> None:
    """Ask the running loop to save last.pt at the next step boundary and return (what the signals do)."""
    global _stop_reason
    _stop_reason = reason


def clear_stop() -> None:
    global _stop_reason
    _stop_reason = None


def stop_reason() -> str | None:
    return _stop_reason


def _on_signal(signum: int, frame: Any) -> None:
    request_stop(signal.Signals(signum).name)


def install_signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGUSR1)}


def restore_signal_handlers(handlers: dict[int, Any]) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def init_distributed(world: int, rank: int, dev: torch.device):
    """torch.distributed (initialised) when world > 1, else None."""
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise CmdclError(f"{world} processes but {key} is not set.",
                                 fix="launch with torchrun, or export MASTER_ADDR/MASTER_PORT under srun.")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return dist


def agreed(dist, flag: bool, dev: torch.device) -> bool:
    """True on every rank when any rank saw the flag (a signal may reach ranks at different steps)."""
    if dist is None:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=dev)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def sum_over_ranks(dist, sums: torch.Tensor) -> torch.Tensor:
    totals = sums.clone()
    if dist is not None:
        dist.all_reduce(totals)
    return totals.cpu()


class Amp:
    """Mixed precision on CUDA only: bf16 where supported, else fp16 with a GradScaler."""

    def __init__(self, dev: torch.device):
        self.enabled = dev.type == "cuda"
        self.device_type = dev.type
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)
