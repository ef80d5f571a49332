"""Device names from the command line to torch devices, with one-line errors (torch imported lazily)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import CmdclError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str = "auto", local_rank: int = 0) -> "torch.device":
    """"auto" is this process's GPU (cuda:LOCAL_RANK) when CUDA is available, else the CPU."""
    import torch

    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise CmdclError(f"--device {device!r} is not a torch device.", fix="use auto, cpu, cuda or cuda:N.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CmdclError(f"--device {device} requested but CUDA is not available.", fix="use --device cpu or auto.")
    return resolved
