"""Finding the files a run recorded by path after the run has moved: `predict`, `evaluate` and `report` run
from another working directory, on a copied run folder or on another machine.

A recorded path is tried as recorded (absolute, or relative to the working directory), then under each anchor
folder (the run folder, the features' folders) and each of their parents, first whole and then by its trailing
parts: `runs/demo/pretrain/weights.pt` recorded by a run at `/x/runs/demo/cmdcl` is found at
`/x/runs/demo/pretrain/weights.pt` from any directory, and at `/y/demo-copy/pretrain/weights.pt` in a copy of
`runs/demo`. Weights are accepted only when their SHA-256 is the recorded one. Standard library only: the
commands call this before importing torch, so a missing file is reported in a second, not after the imports.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import WeightsError

WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex); hashed once per file state in a process."""
    stat = os.stat(path)
    return _sha256(os.path.abspath(path), stat.st_size, stat.st_mtime_ns, block)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int, block: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def candidates(recorded: str | Path, anchors: Sequence[str | Path], min_parts: int = 1) -> Iterator[Path]:
    """Where a recorded path may be now, most specific first (see the module docstring); each path once.
    `min_parts`: the fewest trailing parts of the recorded path tried under an anchor (1: the file name alone)."""
    path = Path(recorded).expanduser()
    seen: set[str] = set()

    def new(candidate: Path) -> bool:
        key = os.path.abspath(candidate)
        fresh = key not in seen
        seen.add(key)
        return fresh

    if new(path):
        yield path
    parts = path.parts[1:] if path.is_absolute() else path.parts
    folders = [folder for anchor in anchors for folder in (Path(anchor).absolute(), *Path(anchor).absolute().parents)]
    for keep in range(len(parts), max(1, min(min_parts, len(parts))) - 1, -1):
        tail = Path(*parts[len(parts) - keep:])
        for folder in folders:
            if new(folder / tail):
                yield folder / tail


def find_file(recorded: str | Path, anchors: Sequence[str | Path], sha256: str = "",
              min_parts: int = 1) -> Path | None:
    """The first candidate that is a file (with SHA-256 `sha256`, when given), else None."""
    for candidate in candidates(recorded, anchors, min_parts):
        if candidate.is_file() and (not sha256 or file_sha256(candidate) == sha256):
            return candidate.absolute()
    return None


def is_weights_path(pretrained: str) -> bool:
    """A `pretrained` value that names a file or folder (not a tag such as `openai`, not random weights)."""
    return bool(pretrained) and not pretrained.startswith("random") and (
        os.sep in pretrained or "/" in pretrained or Path(pretrained).suffix in WEIGHT_SUFFIXES)


def find_weights(provenance: dict[str, Any], anchors: Sequence[str | Path], given: str | None,
                 where: str) -> str | None:
    """The `pretrained` value that rebuilds the encoder recorded in `provenance` here: a weights file given
    (checked against the recorded SHA-256) or found from the recorded paths; None when the record names no
    file (a tag, random weights: rebuilt from the record as it is). A one-line WeightsError otherwise."""
    recorded, sha = str(provenance.get("pretrained") or ""), str(provenance.get("weights_sha256") or "")
    short = f"sha256 {sha[:12]}..." if sha else "no recorded sha256"
    if given:
        path = Path(given).expanduser()
        if path.is_file() and sha and file_sha256(path) != sha:
            raise WeightsError(f"{where}: --pretrained {given} is not the encoder that made its features ({short}).",
                               fix="pass the weights file the features were extracted with.")
        if is_weights_path(given) and not path.exists():
            raise WeightsError(f"{where}: --pretrained {given}: no such file.", fix="pass an existing weights file.")
        return str(path.absolute()) if path.exists() else given
    if not is_weights_path(recorded):
        return None
    for name in dict.fromkeys([recorded, str(provenance.get("weights_file") or "")]):
        found = find_file(name, anchors, sha) if name else None
        if found is not None:
            return str(found)
        folder = next((c for c in candidates(name, anchors) if c.is_dir()), None) if name else None
        if folder is not None:  # a weights folder (open_clip_config.json + weights): its file is checked on load
            return str(folder.absolute())
    raise WeightsError(f"{where}: the encoder weights {recorded} ({short}) are neither there nor beside the run "
                       f"or its features.", fix="pass --pretrained PATH, the weights file with that sha256.")
