"""Rank and world size from the environment, one idiom for SLURM arrays, srun and torchrun.

Extraction shards a sorted video list by (index, count); training uses (rank, world_size).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import CmdclError


@dataclass(frozen=True)
class ShardSpec:
    index: int
    count: int
    source: str  # where the numbers came from, for logs and provenance

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> ShardSpec:
    """Parse `k/N` (0-based k) as given on the command line."""
    try:
        k_text, n_text = text.split("/")
        index, count = int(k_text), int(n_text)
    except ValueError:
        raise CmdclError(f"--shard {text!r} is not of the form k/N.", fix="e.g. --shard 0/4") from None
    return _checked(index, count, "--shard")


def _checked(index: int, count: int, source: str) -> ShardSpec:
    if count < 1 or not 0 <= index < count:
        raise CmdclError(f"shard {index}/{count} from {source} is out of range: need 0 <= k < N, N >= 1.")
    return ShardSpec(index, count, source)


def shard_from_env(env: dict[str, str] | None = None) -> ShardSpec:
    """SLURM array variables first, then torchrun's RANK/WORLD_SIZE, else a single shard.

    SLURM_ARRAY_TASK_ID is offset by SLURM_ARRAY_TASK_MIN and divided by SLURM_ARRAY_TASK_STEP, so that
    `--array=1-8` and `--array=0-28:4` number their shards 0..N-1 like `--array=0-7`.
    """
    env = dict(os.environ) if env is None else env
    if "SLURM_ARRAY_TASK_ID" in env:
        if "SLURM_ARRAY_TASK_COUNT" not in env:
            raise CmdclError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not (SLURM older than 18.08?).",
                             fix="pass --shard $SLURM_ARRAY_TASK_ID/N explicitly.")
        offset = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1"))
        if offset % step:
            raise CmdclError(f"SLURM_ARRAY_TASK_ID {env['SLURM_ARRAY_TASK_ID']} is not on the array's step {step}.",
                             fix="pass --shard k/N explicitly.")
        return _checked(offset // step, int(env["SLURM_ARRAY_TASK_COUNT"]), "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")
    if "RANK" in env and "WORLD_SIZE" in env:
        return _checked(int(env["RANK"]), int(env["WORLD_SIZE"]), "RANK/WORLD_SIZE")
    return ShardSpec(0, 1, "default")


def world_from_env(env: dict[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, local_rank, world_size) for DDP: torchrun variables first, then bare `srun`."""
    env = dict(os.environ) if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env.get("LOCAL_RANK", "0")), int(env["WORLD_SIZE"])
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        return int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", "0")), int(env["SLURM_NTASKS"])
    return 0, 0, 1
