"""Writing a shard crash-safely: `ShardWriter` appends finished videos to renamed part files and
consolidates them at `finalize`; `reopen_shard` makes a finished shard resumable again."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import h5py
import numpy as np

from ..atomic import DiskFullError, write_text_atomic
from ..errors import FeatureFileError
from ..locks import FolderLock

from . import files
from .context import ContextVocab
from .files import _read_failures, _read_notes, _read_rows, _records_to_block
from .layout import FORMAT_VERSION, FailureRecord, NoteRecord, TextBank, VideoRecord, _strings, _video_fields


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}.h5"


def shard_is_done(path: Path) -> bool:
    """A shard counts as finished only when both the renamed file and its `.done` marker exist."""
    path = Path(path)
    return path.exists() and path.with_name(path.name + ".done").exists()


class ShardLockedError(FeatureFileError):
    pass


class ShardWriter:
    """Appends extracted videos to one shard, resumably; one writer process per shard.

    Usage: open (claims an exclusive lock), `done_ids()` to skip finished videos, `add()` /
    `add_failure()` per video, `finalize()` once every video is handled.
    """

    def __init__(self, path: str | Path, attrs: dict[str, Any], text: TextBank, flush_every: int = 16,
                 context: Mapping[str, ContextVocab] | None = None):
        self.path = Path(path)
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.attrs = {**attrs, "format_version": FORMAT_VERSION}
        for key in ("frames", "embed_dim", "num_classes", "num_steps"):
            if key not in self.attrs:
                raise ValueError(f"ShardWriter needs attribute {key!r}")
        self.attrs.setdefault("patch_grid", 0)
        self.text = text
        self.context = dict(context or {})  # the optional /context vocabularies, written with every file
        self.flush_every = flush_every
        self._buffer: list[VideoRecord] = []
        self._failures: list[FailureRecord] = []
        self._notes: list[NoteRecord] = []
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self._claim()
        self._next_part = 1 + max((int(p.stem.split("-")[1]) for p in self.parts_dir.glob("part-*.h5")), default=-1)

    # Two processes handed the same shard by mistake must not interleave parts: the second one stops.
    def _claim(self) -> None:
        def busy(holder: str) -> ShardLockedError:
            return ShardLockedError(f"{self.path}: shard is being written by {holder}.",
                                    fix="give each process its own --shard k/N (or wait for that process to finish).")

        self._lock = FolderLock(self.parts_dir / "lock", busy)
        self.lock_note = self._lock.take()  # a stale lock taken over: the runner says so

    def _parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.h5"))

    def done_ids(self, include_failed: bool = True) -> set[str]:
        """Ids of videos already stored (and, unless `include_failed` is False, recorded as failed) in
        finished parts of this shard. A failed video redone later supersedes its failure at `finalize`."""
        done: set[str] = set()
        for part in self._parts():
            try:
                with h5py.File(part, "r") as f:
                    done.update(_strings(f["videos/video_id"]))
                    if include_failed:
                        done.update(_strings(f["failures/video_id"]))
            except (OSError, KeyError):
                # A renamed part is complete by construction; an unreadable one means disk trouble.
                # Redo its videos rather than trust it.
                part.rename(part.with_suffix(".corrupt"))
        return done

    def add(self, record: VideoRecord) -> None:
        self._buffer.append(record)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def add_failure(self, failure: FailureRecord) -> None:
        self._failures.append(failure)

    def add_note(self, note: NoteRecord) -> None:
        """A remark on a video added (or about to be added) with `add`; written with the next part."""
        self._notes.append(note)

    def flush(self) -> None:
        if not self._buffer and not self._failures and not self._notes:
            return
        part = self.parts_dir / f"part-{self._next_part:06d}.h5"
        tmp = part.with_name(part.name + ".tmp")
        block = [_records_to_block(self._buffer, self.attrs)] if self._buffer else []
        files._write_file(tmp, self.attrs, self.text, block, self._failures, len(self._buffer), contiguous=False,
                          notes=self._notes, context=self.context)
        tmp.rename(part)
        self._next_part += 1
        self._buffer, self._failures, self._notes = [], [], []

    def finalize(self) -> dict[str, int]:
        """Consolidate parts into the final contiguous shard, mark it done, remove the parts."""
        self.flush()
        parts = self._parts()
        total, failures, notes, seen = 0, {}, {}, set()
        for part in parts:
            with h5py.File(part, "r") as f:
                ids = _strings(f["videos/video_id"])
                total += len(ids)
                failures.update((x.video_id, x) for x in _read_failures(f))  # a retried video: its latest failure
                notes.update(((x.video_id, x.kind, x.note), x) for x in _read_notes(f))
                duplicated = seen.intersection(ids)
                if duplicated:
                    shown = ", ".join(repr(v) for v in sorted(duplicated)[:3])
                    raise FeatureFileError(f"{part}: video(s) {shown} stored twice in one shard.")
                seen.update(ids)
        failures = [x for x in failures.values() if x.video_id not in seen]  # failed once, stored on a retry
        notes = [x for x in notes.values() if x.video_id in seen]

        def blocks() -> Iterator[dict[str, np.ndarray]]:
            for part in parts:
                with h5py.File(part, "r") as f:
                    yield _read_rows(f, _video_fields(self.attrs))

        attrs = {**self.attrs, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tmp = self.path.with_name(self.path.name + ".tmp")
        _check_room(tmp, sum(part.stat().st_size for part in parts))
        files._write_file(tmp, attrs, self.text, blocks(), failures, total, contiguous=True, notes=notes,
                          context=self.context)
        tmp.rename(self.path)
        summary = {"videos": total, "failures": len(failures)}
        write_text_atomic(self.path.with_name(self.path.name + ".done"), json.dumps(summary) + "\n")
        self.close()
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return summary

    @property
    def held(self) -> bool:
        """This writer still holds the shard's lock (not closed)."""
        return self._lock.held

    def close(self) -> None:
        self._lock.release()


def _check_room(path: Path, needed: int) -> None:
    """Refuse to consolidate a shard that cannot fit: the final file is written in place by HDF5, which does
    not survive a full disk cleanly (part files are built in memory instead: core/store/files.py). The parts
    stay; the same command finalizes them once there is room."""
    needed += 1 << 20  # the parts' total over-estimates the shard (each part holds the text bank too)
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise DiskFullError(f"{path}: no space left on device for the final shard (needs about "
                            f"{needed / 2**20:.1f} MB, {free / 2**20:.1f} MB free); its finished parts are kept.",
                            fix="free some space and run the same command again: it resumes.")


def reopen_shard(path: str | Path) -> bool:
    """Make a finished shard unfinished again, its file becoming the first part (to retry its failures).

    Crash-safe: the file is renamed into the parts folder before the `.done` marker goes, and a shard
    counts as finished only with both, so an interruption leaves a shard that resumes from its parts.
    Returns False when `path` is not a finished shard.
    """
    path = Path(path)
    if not shard_is_done(path):
        return False
    parts_dir = path.with_name(path.name + ".parts")
    shutil.rmtree(parts_dir, ignore_errors=True)  # leftovers of an interrupted clean-up, all inside the shard
    parts_dir.mkdir()
    path.rename(parts_dir / "part-000000.h5")
    path.with_name(path.name + ".done").unlink()
    return True
