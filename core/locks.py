"""One writer per folder: an exclusive lock file naming its holder (`pid N on HOST`).

Used by a shard being extracted (core/store/writer.py) and a run folder being trained (head/training).
The lock is `flock` on the file, which the kernel releases when its holder dies, even by SIGKILL: a
refusal always means a live process. The holder's name is written into the file, which is removed when it
lets go, so a file found with a name in it on taking the lock was left by a holder that died: the lock is
taken over and `take` says so.

File systems without locks (Lustre without `-o flock`, some NFS setups): the name in the file is the lock.
A holder on this host whose pid is gone is stale and taken over; one on another host cannot be checked, so
cmdcl warns and goes on rather than refuse forever (one process per shard or run is the usual layout).
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import warnings
from pathlib import Path
from typing import Callable, TextIO

from .errors import CmdclError

_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)
_BUSY = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


def holder_name() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _same_host_pid(name: str) -> int | None:
    """The pid of a holder named `pid N on HOST` when HOST is this host, else None."""
    parts = name.split()
    if len(parts) == 4 and parts[0] == "pid" and parts[2] == "on" and parts[1].isdigit() \
            and parts[3] == socket.gethostname():
        return int(parts[1])
    return None


def _same_file(handle: TextIO, path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


class FolderLock:
    """An exclusive lock on `path` (a file inside the folder it guards); `busy(holder)` builds the error
    raised when a live process holds it."""

    def __init__(self, path: str | Path, busy: Callable[[str], CmdclError]):
        self.path = Path(path)
        self.busy = busy
        self._handle: TextIO | None = None
        self._made_folder = False

    def take(self) -> str | None:
        """Take the lock or raise `busy(holder)`; returns a note when a stale lock was taken over."""
        self._made_folder = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            handle = open(self.path, "a+")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except OSError as exc:
                if exc.errno not in _NO_LOCKS + _BUSY:
                    handle.close()
                    raise
                if exc.errno in _BUSY:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    handle.close()
                    raise self.busy(holder) from None
                locked = False
                warnings.warn(f"{self.path}: the file system does not support locks ({os.strerror(exc.errno)}); "
                              "the holder's name in this file is the only guard.", RuntimeWarning, stacklevel=2)
            if not locked or _same_file(handle, self.path):
                break
            handle.close()  # locked a file its holder removed on release: lock the one now at the path
        handle.seek(0)
        previous = handle.read().strip()
        note = None
        if previous and previous != holder_name():
            note = self._stale(previous, locked, handle)
        handle.seek(0)
        handle.truncate()
        handle.write(holder_name())
        handle.flush()
        self._handle = handle
        return note

    def _stale(self, previous: str, locked: bool, handle: TextIO) -> str:
        """A name left in the file: its holder died (flock), or, without locks, may still be running."""
        if locked:
            return f"{self.path}: took over the lock left by {previous}, which ended without releasing it."
        pid = _same_host_pid(previous)
        if pid is not None and _pid_alive(pid):
            handle.close()
            raise self.busy(previous)
        if pid is None:
            warnings.warn(f"{self.path}: the file system does not support locks and names {previous} as the "
                          "holder, which cannot be checked from here; make sure it is not running.",
                          RuntimeWarning, stacklevel=4)
        return f"{self.path}: took over the stale lock of {previous} (no such process)."

    def release(self) -> None:
        """Let go: the file is removed while still locked (a holder that dies leaves it, with its name, for
        the next one to find), and so is the folder when taking the lock made it and nothing else came."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            self.path.unlink()
            if self._made_folder:
                self.path.parent.rmdir()
        except OSError:
            pass
        finally:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            except OSError:
                pass
            handle.close()

    @property
    def held(self) -> bool:
        return self._handle is not None

    def __enter__(self) -> "FolderLock":
        self.take()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
