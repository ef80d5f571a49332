"""User-facing errors: one line, naming the file and what is wrong, with the fix when known.

The CLI catches `CmdclError`, prints its message and exits with `exit_code` (2 for bad input),
without a traceback unless `--debug` is given.
"""
from __future__ import annotations

import re

# Noise in library messages: decord's "[12:00:00] /github/workspace/src/x.cc:218: " and PyAV's "[Errno -1094995529] ".
_MESSAGE_NOISE = re.compile(r"\[\d\d:\d\d:\d\d\] \S+\.(?:cc|h|cpp):\d+: |\[Errno -?\d+\] ")


def shorten(text: str, limit: int) -> str:
    """`text` on one line in at most `limit` characters, cut at a word boundary with "..." (never
    mid-word: a cut word reads like a different word, "we cann")."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 3, 0) + 1]
    cut = cut[: cut.rfind(" ")] if " " in cut.strip() else cut[: max(limit - 3, 0)]
    return cut.rstrip(" ,;:-(") + "..."


def one_line(exc: BaseException, limit: int = 300, kind: bool = True) -> str:
    """An exception squeezed onto one line for messages and failure records: `Type: message` (or the
    message alone with `kind=False`), library noise removed, at most `limit` characters (cut between words)."""
    text = _MESSAGE_NOISE.sub("", " ".join(str(exc).split())) or "(no message)"
    return shorten(f"{type(exc).__name__}: {text}" if kind else text, limit)


class CmdclError(Exception):
    """An error caused by the user's input or environment, explained in one line."""

    exit_code = 2

    def __init__(self, message: str, *, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        if self.fix and not text.endswith((".", "!", "?", ":")):
            text += "."
        if self.fix:
            text += f" Fix: {' '.join(self.fix.split())}"
        return text


class FeatureFileError(CmdclError):
    """A feature file that is missing, not HDF5, not ours, corrupt or incompatible."""


class CheckpointError(CmdclError):
    """A checkpoint that is missing, corrupt or does not match the features."""


class DatasetError(CmdclError):
    """A dataset root or annotation file that is missing or has the wrong layout."""


class WeightsError(CmdclError):
    """Model weights that cannot be found or loaded (e.g. offline without a cache)."""
