"""Writing files so that neither a crash nor a full disk leaves a half-written one behind.

One home for two rules every file the tool writes follows (checkpoints, predictions, JSON, metrics.jsonl,
feature part files):
  - a file is written under a temporary name and renamed into place, so readers see the old file or the
    new one, never part of one; whatever fails, the temporary file is removed (it would hold the space);
  - running out of space (ENOSPC, or EDQUOT: over quota) is not a traceback but a one-line `DiskFullError`
    naming the path being written.

Libraries report a full disk in their own words: Python raises OSError(ENOSPC), torch.save a RuntimeError
chained to it, HDF5 a RuntimeError whose text holds "errno = 28". `is_disk_full` recognises all three.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .errors import CmdclError

_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "no space left on device (disk quota exceeded)"}
_FULL_TEXT = tuple(os.strerror(code) for code in _FULL) + tuple(f"errno = {code}," for code in _FULL)


class DiskFullError(CmdclError):
    """The disk (or the user's quota) is full: nothing half-written was left, earlier files are intact."""


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from or during, is a full disk or an exceeded quota."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return True
        if any(text in str(exc) for text in _FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _reason(exc: BaseException) -> str:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return _FULL[exc.errno]
        exc = exc.__cause__ or exc.__context__
    return _FULL[errno.ENOSPC]


def disk_full_error(path: str | Path, exc: BaseException, kept: bool = False) -> DiskFullError:
    """The one-line error for a full disk while writing `path`; `kept`: an earlier `path` is still intact."""
    note = f"; the previous {Path(path).name} is unchanged" if kept else ""
    return DiskFullError(f"{path}: {_reason(exc)} while writing it{note}.",
                         fix="free some space (or write elsewhere) and run the same command again: it resumes.")


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # never hide the error being reported behind one from the clean-up
        pass


@contextmanager
def raising_disk_full(path: str | Path, *, cleanup: Path | None = None, kept: bool = False) -> Iterator[None]:
    """Run a write of `path` that is not atomic itself (e.g. an HDF5 file): a full disk becomes a
    DiskFullError; on any failure `cleanup` (the temporary file) is removed."""
    try:
        yield
    except BaseException as exc:
        if cleanup is not None:
            _remove(Path(cleanup))
        if isinstance(exc, DiskFullError) or not is_disk_full(exc):
            raise
        raise disk_full_error(path, exc, kept) from None


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None], *, fsync: bool = True) -> Path:
    """Call `write(handle)` on `path + ".tmp"` opened for binary writing, make it durable (`fsync`) and
    rename it over `path`. On failure the temporary file is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with raising_disk_full(path, cleanup=tmp, kept=path.exists()):
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    return path


def write_bytes_atomic(path: str | Path, data: bytes, *, fsync: bool = True) -> Path:
    return write_atomic(path, lambda handle: handle.write(data), fsync=fsync)


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def append_text(path: str | Path, text: str) -> None:
    """Append `text` (whole lines) to `path`; on failure the file is cut back to its former length, so a
    full disk never leaves a torn line."""
    path = Path(path)
    with open(path, "ab") as handle:
        size = handle.tell()
        try:
            handle.write(text.encode("utf-8"))
            handle.flush()
        except BaseException as exc:
            try:
                handle.truncate(size)
            except OSError:
                pass
            if is_disk_full(exc):
                raise disk_full_error(path, exc, kept=True) from None
            raise
