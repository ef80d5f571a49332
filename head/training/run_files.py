"""The run folder's text files: config.json and provenance.json (written once), metrics.jsonl (a line per
epoch, truncated back to the checkpoint's epoch when a run resumes).

`read_metrics` is the one reader of metrics.jsonl (resume and `cmdcl report`): a torn last line (a crash or
a full disk during the append of an older version) is dropped with a note, anything else malformed is a
one-line error.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from cmdcl.core.atomic import append_text, write_text_atomic
from cmdcl.core.errors import CmdclError
from cmdcl.core.locks import FolderLock
from cmdcl.core.version import code_version
from cmdcl.core.json_files import write_json
from .runtime import agreed

METRICS_FILE = "metrics.jsonl"
LOCK_FILE = "train.lock"


def run_lock(run: Path) -> FolderLock:
    """The lock of a run folder (core/locks.py), held by the one process training into it (DDP: rank 0;
    --seeds: the parent on RUN and each run on RUN/seed-K). Not taken yet: call `take()`."""
    def busy(holder: str) -> CmdclError:
        return CmdclError(f"{run}: run is being trained by {holder}.",
                          fix="wait for it to finish, or train into another --out.")

    return FolderLock(Path(run) / LOCK_FILE, busy)


def lock_run(out_dir: Path, rank: int, dist, dev: torch.device, say: Callable[[str], None]) -> FolderLock | None:
    """Rank 0 locks the run folder (`run_lock`); under DDP every rank learns whether it could, so
    that all of them stop together when another process is training into the folder."""
    lock, refused = None, None
    if rank == 0:
        try:
            lock = run_lock(out_dir)
            note = lock.take()
            if note:
                say(note)
        except CmdclError as exc:
            lock, refused = None, exc
    if agreed(dist, refused is not None, dev):
        raise refused or CmdclError(f"{out_dir}: rank 0 could not lock the run folder (see its message).")
    return lock


def write_run_files(out_dir: Path, config: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """config.json: `config` plus code/torch versions and the command (returned); provenance.json: the
    features'. `train-head --config config.json` reads it back (pipelines/config_file.py: RUN_RECORD)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {**config, "code_version": code_version(), "torch": torch.__version__, "command": " ".join(sys.argv)}
    write_json(out_dir / "config.json", record)
    write_json(out_dir / "provenance.json", provenance)
    return record


def append_metrics(out_dir: Path, record: dict[str, Any]) -> None:
    append_text(out_dir / METRICS_FILE, json.dumps(record) + "\n")


def read_metrics(path: Path, note: Callable[[str], None] = lambda message: None) -> list[dict[str, Any]]:
    """The per-epoch records of a metrics.jsonl ([] when missing). A torn last line is dropped and `note`
    told so; a malformed line elsewhere, or an epoch recorded twice (two runs wrote the folder), is a
    one-line CmdclError."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise ValueError("no epoch")
        except ValueError:
            if number == len(lines):
                note(f"{path}: dropped its last line, cut short ({len(line)} characters, not JSON).")
                break
            raise CmdclError(f"{path}: line {number} is not an epoch record (JSON with an integer epoch).") from None
        if records and record["epoch"] <= records[-1]["epoch"]:
            raise CmdclError(f"{path}: line {number} records epoch {record['epoch']} after epoch "
                             f"{records[-1]['epoch']} (two runs wrote into this folder?).",
                             fix="train again into a new --out.")
        records.append(record)
    return records


def truncate_metrics(out_dir: Path, completed_epochs: int, note: Callable[[str], None] = lambda m: None) -> None:
    """Drop lines of epochs after the checkpoint (written before a crash, about to be redone) and a torn
    last line; the file is rewritten atomically."""
    path = out_dir / METRICS_FILE
    if not path.exists():
        return
    if completed_epochs <= 0:  # starting over (or zeroshot scoring again): nothing of the old file is kept
        path.unlink()
        return
    records = read_metrics(path, note)
    kept = [r for r in records if r["epoch"] <= completed_epochs]
    text = "".join(json.dumps(r) + "\n" for r in kept)
    if text != path.read_text(errors="replace"):
        write_text_atomic(path, text)
