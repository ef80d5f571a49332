"""The code version stored in every feature file and checkpoint."""
from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`<package version>+g<git sha>[.dirty]` when run from a git checkout, else the package version."""
    try:
        pkg = metadata.version("cmdcl")
    except metadata.PackageNotFoundError:
        pkg = "0+unknown"
    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return pkg
    return f"{pkg}+g{sha}{'.dirty' if dirty else ''}"
