"""The run folder's text files: config.json and provenance.json (written once), metrics.jsonl (a line per
epoch, truncated back to the checkpoint's epoch when a run resumes)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from cmdcl.core.version import code_version
from cmdcl.core.json_files import write_json


def write_run_files(out_dir: Path, config: dict[str, Any], provenance: dict[str, Any]) -> None:
    """config.json: `config` plus code/torch versions and the command; provenance.json: the features'."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "config.json", {**config, "code_version": code_version(), "torch": torch.__version__,
                                         "command": " ".join(sys.argv)})
    write_json(out_dir / "provenance.json", provenance)


def append_metrics(out_dir: Path, record: dict[str, Any]) -> None:
    with open(out_dir / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


def truncate_metrics(out_dir: Path, completed_epochs: int) -> None:
    """Drop lines of epochs after the checkpoint (written before a crash, about to be redone)."""
    path = out_dir / "metrics.jsonl"
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= completed_epochs]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))
