"""The layout of a run trained over several seeds, in one place (no torch: the CLI and `compare` read it).

    RUN/seeds.json              {"seeds": [0, 1, 2], "method": "cmdcl"}
    RUN/seed-0/                 an ordinary run folder (best.pt, last.pt, metrics.jsonl, metrics_<split>.json,
    RUN/seed-1/                 predictions_<split>.npz), one per seed
    ...

A run trained with one seed (no --seeds) is the run folder itself. `seed_dirs(RUN)` gives the folders to read
either way, so every consumer handles both.
"""
from __future__ import annotations

import json
from pathlib import Path

from cmdcl.core.errors import CmdclError

SEEDS_FILE = "seeds.json"


def seed_dir(run: Path, seed: int) -> Path:
    """The folder of one seed inside a multi-seed run."""
    return Path(run) / f"seed-{seed}"


def write_seeds(run: Path, seeds: list[int], method: str) -> None:
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    (run / SEEDS_FILE).write_text(json.dumps({"seeds": [int(s) for s in seeds], "method": method}, indent=2) + "\n")


def read_seeds(run: Path) -> list[int] | None:
    """The seeds of a multi-seed run, or None for a single run folder."""
    path = Path(run) / SEEDS_FILE
    if not path.is_file():
        return None
    try:
        return [int(s) for s in json.loads(path.read_text())["seeds"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CmdclError(f"{path}: not a seeds file ({exc}).") from None


def seed_dirs(run: Path) -> list[Path]:
    """[(seed folder)...] of a multi-seed run, or [run] for a single run; a one-line error when neither."""
    run = Path(run)
    seeds = read_seeds(run)
    if seeds is None:
        if not run.is_dir():
            raise CmdclError(f"{run}: no such run folder.")
        return [run]
    return [seed_dir(run, s) for s in seeds]
