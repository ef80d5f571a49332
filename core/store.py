"""The feature store: the HDF5 contract between extraction (writer) and training (reader).

The layout is documented in docs/FORMAT.md; `FORMAT_VERSION` changes whenever it does.

Writing is crash-safe by construction: a `ShardWriter` appends finished videos to small *part*
files, each written under a `.tmp` name and renamed when closed, so a SIGKILL loses at most the
part in flight. `finalize()` consolidates the parts into one contiguous shard (again via a `.tmp`
name + rename) and drops a `.done` marker. Readers only ever see renamed, complete files, and they
refuse anything without `complete=True`.
"""
from __future__ import annotations

import errno
import fcntl
import glob
import json
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import h5py
import numpy as np

from .errors import FeatureFileError

FORMAT_VERSION = 1

# Provenance attributes that must agree between shards before they may be read or merged together.
COMPATIBILITY_KEYS = (
    "format_version", "model_name", "pretrained", "weights_sha256", "image_size", "preprocess",
    "sampler", "frames", "patch_grid", "embed_dim", "precision", "dataset",
)

STR = h5py.string_dtype("utf-8")

# Per-video datasets under /videos: name -> (dtype, trailing shape builder from dims).
# dims keys: F frames, D embed dim, C classes, S steps, P patches per frame (G*G).
VIDEO_FIELDS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "video_id": (STR, ()),
    "split": (STR, ()),
    "path": (STR, ()),
    "label": (np.int32, ()),
    "labels": (np.uint8, ("C",)),
    "steps": (np.uint8, ("S",)),
    "fps": (np.float32, ()),
    "duration": (np.float32, ()),
    "num_frames": (np.int64, ()),
    "frame_index": (np.int64, ("F",)),
    "timestamps_ms": (np.float64, ("F",)),
    "frame_mask": (np.bool_, ("F",)),
    "partial": (np.bool_, ()),
    "features": (np.float16, ("F", "D")),
    "patches": (np.float16, ("F", "P", "D")),  # only when patch_grid > 0
}
FAILURE_FIELDS = ("video_id", "path", "stage", "error")
NOTE_FIELDS = ("video_id", "path", "kind", "note")
# /segments/table columns: every annotated step instance of every video, in /videos row order.
SEGMENT_COLUMNS = ("step", "start_s", "end_s")


def segment_table(segments: Any) -> np.ndarray:
    """(k, 3) float32 rows [step, start_s, end_s] from an array or a list of (step, start_s, end_s) tuples."""
    table = np.asarray([] if segments is None else segments, dtype=np.float32)
    if table.size == 0:
        return np.zeros((0, len(SEGMENT_COLUMNS)), np.float32)
    if table.ndim != 2 or table.shape[1] != len(SEGMENT_COLUMNS):
        raise ValueError(f"step segments must be (k, 3) rows [step, start_s, end_s], got shape {table.shape}")
    return table


@dataclass
class VideoRecord:
    """One extracted video, as the writer receives it and the reader returns it."""

    video_id: str
    split: str
    path: str
    label: int  # class index, -1 when multi-label or unlabelled
    labels: np.ndarray  # (C,) multi-hot uint8
    steps: np.ndarray  # (S,) multi-hot uint8 atomic-action presence (zeros when unannotated)
    fps: float
    duration: float  # seconds
    num_frames: int  # total frames in the video, as the decoder reports them
    frame_index: np.ndarray  # (F,) int64 indices of the sampled frames (repeated last for padding)
    timestamps_ms: np.ndarray  # (F,) float64 presentation time of each sampled frame
    frame_mask: np.ndarray  # (F,) bool, False for padded frames
    features: np.ndarray  # (F, D) float16, L2-normalised CLIP image embeddings
    patches: np.ndarray | None = None  # (F, G*G, D) float16 pooled patch tokens, projected
    partial: bool = False  # True when only a decodable prefix/subset of the video was recovered
    # (k, 3) float32 [step, start_s, end_s], one row per annotated step instance (empty when unannotated)
    segments: np.ndarray = field(default_factory=lambda: segment_table(None))


@dataclass
class FailureRecord:
    video_id: str
    path: str
    stage: str  # "open", "decode", "timeout", "encode", ...
    error: str


@dataclass
class NoteRecord:
    """A remark on a stored video: kind "partial" (only part decoded), "rotation" (display rotation not
    applied), "fallback" (decoded by PyAV after decord failed)."""

    video_id: str
    path: str
    kind: str
    note: str


@dataclass
class TextBank:
    """Label texts and their frozen CLIP text embeddings (L2-normalised, float32)."""

    class_names: list[str]
    class_embeddings: np.ndarray  # (C, D)
    step_names: list[str]
    step_embeddings: np.ndarray  # (S, D)
    templates: list[str]
    truncated: list[str] = field(default_factory=list)  # names whose prompts hit the 77-token limit

    def write(self, group: h5py.Group) -> None:
        group.create_dataset("class_names", data=np.array(self.class_names, dtype=object), dtype=STR)
        group.create_dataset("class_embeddings", data=np.asarray(self.class_embeddings, np.float32))
        group.create_dataset("step_names", data=np.array(self.step_names, dtype=object), dtype=STR)
        group.create_dataset("step_embeddings", data=np.asarray(self.step_embeddings, np.float32))
        group.create_dataset("templates", data=np.array(self.templates, dtype=object), dtype=STR)
        group.create_dataset("truncated", data=np.array(self.truncated, dtype=object), dtype=STR)

    @classmethod
    def read(cls, group: h5py.Group) -> "TextBank":
        return cls(
            class_names=_strings(group["class_names"]),
            class_embeddings=group["class_embeddings"][()],
            step_names=_strings(group["step_names"]),
            step_embeddings=group["step_embeddings"][()],
            templates=_strings(group["templates"]),
            truncated=_strings(group["truncated"]) if "truncated" in group else [],
        )


def _strings(dataset: h5py.Dataset) -> list[str]:
    return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in dataset[()]]


def _attr_value(value: Any) -> Any:
    """HDF5 attributes hold scalars and strings; nested values are stored as JSON text."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return ""
    return value


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _dims(attrs: dict[str, Any]) -> dict[str, int]:
    g = int(attrs.get("patch_grid", 0))
    return {"F": int(attrs["frames"]), "D": int(attrs["embed_dim"]), "C": int(attrs["num_classes"]),
            "S": int(attrs["num_steps"]), "P": g * g}


def _video_fields(attrs: dict[str, Any]) -> list[str]:
    names = [n for n in VIDEO_FIELDS if n != "patches"]
    if int(attrs.get("patch_grid", 0)) > 0:
        names.append("patches")
    return names


def _write_file(path: Path, attrs: dict[str, Any], text: TextBank, video_sources: Iterable[dict[str, np.ndarray]],
                failures: Sequence[FailureRecord], total: int, contiguous: bool,
                notes: Sequence[NoteRecord] = ()) -> None:
    """Write a complete store file at `path` from column blocks; the caller renames it into place.

    `contiguous=True` (final shards, merged files) lays /videos/features out uncompressed and
    contiguous so that readers can memory-map it.
    """
    dims = _dims(attrs)
    names = _video_fields(attrs)
    with h5py.File(path, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = _attr_value(value)
        f.attrs["complete"] = False
        text.write(f.create_group("text"))
        videos = f.create_group("videos")
        for name in names:
            dtype, trailing = VIDEO_FIELDS[name]
            shape = (total, *[dims[t] for t in trailing])
            if contiguous:
                videos.create_dataset(name, shape=shape, dtype=dtype)
            else:
                # HDF5 chunks need positive sizes: no chunking when a vocabulary is empty (S or C = 0).
                chunk = (max(1, min(total, 16)), *shape[1:]) if total and all(shape[1:]) else None
                videos.create_dataset(name, shape=shape, dtype=dtype, chunks=chunk)
        row, segments = 0, []
        for block in video_sources:
            n = len(block["video_id"])
            for name in names:
                videos[name][row:row + n] = block[name]
            segments.extend(block.get("segments") or [segment_table(None)] * n)
            row += n
        if row != total:
            raise RuntimeError(f"internal error: wrote {row} videos, expected {total}")
        _write_segments(f, segments)
        for name, fields, rows in (("failures", FAILURE_FIELDS, failures), ("notes", NOTE_FIELDS, notes)):
            group = f.create_group(name)
            for key in fields:
                group.create_dataset(key, data=np.array([getattr(x, key) for x in rows], dtype=object), dtype=STR)
        f.attrs["num_videos"] = total
        f.attrs["num_failures"] = len(failures)
        f.attrs["complete"] = True
        f.flush()
    with open(path, "rb+") as handle:  # make the bytes durable before the rename publishes them
        os.fsync(handle.fileno())


def _write_segments(f: h5py.File, tables: Sequence[np.ndarray]) -> None:
    """/segments: the videos' step segments as one flat table, video i's rows at offsets[i]:offsets[i + 1]."""
    offsets = np.zeros(len(tables) + 1, np.int64)
    np.cumsum([len(t) for t in tables], out=offsets[1:])
    table = np.concatenate(tables) if tables else segment_table(None)
    group = f.create_group("segments")
    group.create_dataset("offsets", data=offsets)
    group.create_dataset("table", data=table.astype(np.float32, copy=False))


def _read_segment_rows(f: h5py.File, start: int, stop: int) -> list[np.ndarray]:
    """Step segments of /videos rows start..stop-1; empty for each video of a file written before /segments."""
    if "segments" not in f:
        return [segment_table(None) for _ in range(start, stop)]
    offsets = f["segments/offsets"][start:stop + 1]
    table = f["segments/table"][int(offsets[0]):int(offsets[-1])]
    return [table[a - offsets[0]:b - offsets[0]] for a, b in zip(offsets[:-1], offsets[1:])]


def _records_to_block(records: Sequence[VideoRecord], attrs: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {}
    for name in _video_fields(attrs):
        dtype = VIDEO_FIELDS[name][0]
        values = [getattr(r, name) for r in records]
        block[name] = np.array(values, dtype=object) if dtype is STR else np.asarray(values, dtype=dtype)
    block["segments"] = [segment_table(r.segments) for r in records]
    return block


def _read_block(videos: h5py.Group, names: Sequence[str], start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        data = videos[name][start:stop]
        out[name] = np.array(_decode_strs(data), dtype=object) if videos[name].dtype.kind == "O" else data
    return out


def _read_rows(f: h5py.File, names: Sequence[str], start: int = 0, stop: int | None = None) -> dict[str, Any]:
    """Rows start..stop-1 of the /videos columns `names`, plus their step segments (to copy them elsewhere)."""
    block: dict[str, Any] = _read_block(f["videos"], names, start, stop)
    block["segments"] = _read_segment_rows(f, start, start + len(block["video_id"]))
    return block


def _decode_strs(values: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _read_failures(f: h5py.File) -> list[FailureRecord]:
    group = f["failures"]
    columns = {k: _strings(group[k]) for k in FAILURE_FIELDS}
    return [FailureRecord(*row) for row in zip(*(columns[k] for k in FAILURE_FIELDS))]


def _read_notes(f: h5py.File) -> list[NoteRecord]:
    """The /notes rows; files written before notes existed have none."""
    if "notes" not in f:
        return []
    group = f["notes"]
    columns = {k: _strings(group[k]) for k in NOTE_FIELDS}
    return [NoteRecord(*row) for row in zip(*(columns[k] for k in NOTE_FIELDS))]


# --------------------------------------------------------------------------------------------- writer

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

    def __init__(self, path: str | Path, attrs: dict[str, Any], text: TextBank, flush_every: int = 16):
        self.path = Path(path)
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.attrs = {**attrs, "format_version": FORMAT_VERSION}
        for key in ("frames", "embed_dim", "num_classes", "num_steps"):
            if key not in self.attrs:
                raise ValueError(f"ShardWriter needs attribute {key!r}")
        self.attrs.setdefault("patch_grid", 0)
        self.text = text
        self.flush_every = flush_every
        self._buffer: list[VideoRecord] = []
        self._failures: list[FailureRecord] = []
        self._notes: list[NoteRecord] = []
        self._lock_handle = None
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self._claim()
        self._next_part = 1 + max((int(p.stem.split("-")[1]) for p in self.parts_dir.glob("part-*.h5")), default=-1)

    # Two processes handed the same shard by mistake must not interleave parts: the second one stops.
    def _claim(self) -> None:
        lock_path = self.parts_dir / "lock"
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
                # Lustre without -o flock, some NFS setups: no locks at all. Go on unguarded rather than fail:
                # with one shard per process (SLURM arrays, torchrun) there is a single writer anyway.
                warnings.warn(f"{lock_path}: the file system does not support locks ({os.strerror(exc.errno)}); "
                              "make sure no other process writes this shard.", RuntimeWarning, stacklevel=3)
                handle.close()
                return
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                handle.close()
                raise
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise ShardLockedError(
                f"{self.path}: shard is being written by {owner}.",
                # flock is released by the kernel when its holder dies (even by SIGKILL): a refusal
                # always means a live process, never a stale file to delete.
                fix="give each process its own --shard k/N (or wait for that process to finish).",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self._lock_handle = handle

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
        _write_file(tmp, self.attrs, self.text, block, self._failures, len(self._buffer), contiguous=False,
                    notes=self._notes)
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
                    raise FeatureFileError(f"{part}: videos {sorted(duplicated)[:3]} stored twice in one shard.")
                seen.update(ids)
        failures = [x for x in failures.values() if x.video_id not in seen]  # failed once, stored on a retry
        notes = [x for x in notes.values() if x.video_id in seen]

        def blocks() -> Iterator[dict[str, np.ndarray]]:
            for part in parts:
                with h5py.File(part, "r") as f:
                    yield _read_rows(f, _video_fields(self.attrs))

        attrs = {**self.attrs, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tmp = self.path.with_name(self.path.name + ".tmp")
        _write_file(tmp, attrs, self.text, blocks(), failures, total, contiguous=True, notes=notes)
        tmp.rename(self.path)
        summary = {"videos": total, "failures": len(failures)}
        self.path.with_name(self.path.name + ".done").write_text(json.dumps(summary) + "\n")
        self.close()
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return summary

    def close(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None


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


# --------------------------------------------------------------------------------------------- reader

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def resolve_feature_paths(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """A file, a folder (all `*.h5` inside, sorted), a glob, or a list of those."""
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    paths: list[Path] = []
    for item in items:
        text = str(item)
        p = Path(text)
        if p.is_dir():
            found = sorted(p.glob("*.h5"))
            if not found:
                raise FeatureFileError(f"{p}: folder holds no .h5 feature files.")
            paths.extend(found)
        elif any(ch in text for ch in "*?["):
            found = sorted(Path(x) for x in glob.glob(text) if x.endswith(".h5"))
            if not found:
                raise FeatureFileError(f"{text}: glob matches no .h5 feature files.")
            paths.extend(found)
        else:
            paths.append(p)
    return paths


def check_feature_file(path: Path) -> dict[str, Any]:
    """Open one file and return its attributes, or raise a one-line FeatureFileError naming it."""
    if not path.exists():
        raise FeatureFileError(f"{path}: feature file does not exist.")
    if path.is_dir():
        raise FeatureFileError(f"{path}: is a directory, expected an HDF5 feature file.")
    with open(path, "rb") as handle:
        if handle.read(8) != HDF5_SIGNATURE:
            raise FeatureFileError(f"{path}: not an HDF5 file.", fix="pass a file written by `cmdcl extract`.")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
            if "format_version" not in attrs:
                raise FeatureFileError(f"{path}: HDF5 file has no format_version attribute; not a cmdcl feature file.")
            if int(attrs["format_version"]) != FORMAT_VERSION:
                raise FeatureFileError(
                    f"{path}: format_version {attrs['format_version']} but this cmdcl reads {FORMAT_VERSION}.",
                    fix="re-extract, or use the cmdcl version that wrote it.")
            if not attrs.get("complete", False):
                raise FeatureFileError(f"{path}: file is incomplete (written by an interrupted run).",
                                       fix="re-run the same `cmdcl extract` command to resume it.")
            for name in _video_fields(attrs):
                if f"videos/{name}" not in f:
                    raise FeatureFileError(f"{path}: missing dataset /videos/{name}.")
                if f[f"videos/{name}"].shape[0] != int(attrs["num_videos"]):
                    raise FeatureFileError(f"{path}: /videos/{name} has {f[f'videos/{name}'].shape[0]} rows, "
                                           f"expected num_videos={attrs['num_videos']}.")
            for name in ("text/class_names", "text/step_names", "failures/video_id"):
                if name not in f:
                    raise FeatureFileError(f"{path}: missing dataset /{name}.")
            _check_segments(f, path, int(attrs["num_videos"]))
    except FeatureFileError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise FeatureFileError(f"{path}: corrupt or truncated HDF5 file ({' '.join(str(exc).split())[:160]}).") from None
    return attrs


def _check_segments(f: h5py.File, path: Path, num_videos: int) -> None:
    """The optional /segments group, when present, must index every video's rows of its table."""
    if "segments" not in f:
        return
    if "segments/offsets" not in f or "segments/table" not in f:
        raise FeatureFileError(f"{path}: /segments needs both datasets offsets and table.")
    offsets, table = f["segments/offsets"], f["segments/table"]
    if offsets.shape != (num_videos + 1,):
        raise FeatureFileError(f"{path}: /segments/offsets has shape {offsets.shape}, expected ({num_videos + 1},).")
    if table.ndim != 2 or table.shape[1] != len(SEGMENT_COLUMNS):
        raise FeatureFileError(f"{path}: /segments/table has shape {table.shape}, expected (K, 3).")
    values = offsets[()]
    if values[0] != 0 or values[-1] != table.shape[0] or (np.diff(values) < 0).any():
        raise FeatureFileError(f"{path}: /segments/offsets do not run from 0 to {table.shape[0]} in order.")


class FeatureSet:
    """One logical dataset over one or more complete shard files with identical provenance."""

    def __init__(self, spec: str | Path | Sequence[str | Path]):
        self.paths = resolve_feature_paths(spec)
        self.attrs_per_file = [check_feature_file(p) for p in self.paths]
        first = self.attrs_per_file[0]
        for path, attrs in zip(self.paths[1:], self.attrs_per_file[1:]):
            for key in COMPATIBILITY_KEYS:
                if str(attrs.get(key)) != str(first.get(key)):
                    raise FeatureFileError(
                        f"{path}: attribute {key}={attrs.get(key)!r} differs from {self.paths[0]} "
                        f"({first.get(key)!r}); shards made with different settings cannot be combined.")
        self.attrs = first
        with h5py.File(self.paths[0], "r") as f:
            self.text = TextBank.read(f["text"])
        for path in self.paths[1:]:
            with h5py.File(path, "r") as f:
                other = TextBank.read(f["text"])
            if other.class_names != self.text.class_names or other.step_names != self.text.step_names:
                raise FeatureFileError(f"{path}: label vocabulary differs from {self.paths[0]}.")
        self.dims = _dims(first)
        self._segment_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.index = self._read_index()
        duplicates = _duplicates(self.index["video_id"])
        if duplicates:
            raise FeatureFileError(f"{self.paths}: video ids stored more than once: {duplicates[:3]}.")

    @property
    def has_patches(self) -> bool:
        return self.dims["P"] > 0

    def _read_index(self) -> dict[str, np.ndarray]:
        """Small per-video columns for every file, concatenated, plus (file, row) of each video."""
        names = [n for n in _video_fields(self.attrs) if n not in ("features", "patches")]
        columns: dict[str, list[np.ndarray]] = {n: [] for n in names}
        file_of, row_of = [], []
        for i, path in enumerate(self.paths):
            with h5py.File(path, "r") as f:
                block = _read_block(f["videos"], names)
            for n in names:
                columns[n].append(block[n])
            count = len(block["video_id"])
            file_of.append(np.full(count, i, np.int64))
            row_of.append(np.arange(count, dtype=np.int64))
        index = {n: np.concatenate(v) for n, v in columns.items()}
        index["file"] = np.concatenate(file_of)
        index["row"] = np.concatenate(row_of)
        return index

    def __len__(self) -> int:
        return len(self.index["video_id"])

    def _from_every_file(self, read: Callable[[h5py.File], list]) -> list:
        out = []
        for path in self.paths:
            with h5py.File(path, "r") as f:
                out.extend(read(f))
        return out

    def failures(self) -> list[FailureRecord]:
        return self._from_every_file(_read_failures)

    def notes(self) -> list[NoteRecord]:
        """Remarks on stored videos (partial decodes, rotation not applied, decoder fallbacks)."""
        return self._from_every_file(_read_notes)

    def provenance(self) -> dict[str, Any]:
        """The shared attributes (shard-specific ones dropped), as stored in checkpoints."""
        skip = {"shard_index", "num_shards", "created", "num_videos", "num_failures", "complete"}
        return {k: v for k, v in self.attrs.items() if k not in skip}

    def select(self, splits: str | Sequence[str] | None) -> np.ndarray:
        """Positions (into `index`) of the videos in the given split(s), in stored order."""
        if splits is None:
            return np.arange(len(self))
        wanted = {splits} if isinstance(splits, str) else set(splits)
        return np.flatnonzero(np.isin(self.index["split"], list(wanted)))

    def read_array(self, name: str, positions: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """Rows `positions` of a per-video array (e.g. "features"), read file by file in chunks.

        Reads are sorted per file and done in contiguous runs, never one h5py call per video.
        """
        positions = np.asarray(positions, dtype=np.int64)
        dtype, trailing = VIDEO_FIELDS[name]
        out = np.empty((len(positions), *[self.dims[t] for t in trailing]), dtype=dtype)
        files = self.index["file"][positions]
        rows = self.index["row"][positions]
        for i, path in enumerate(self.paths):
            sel = np.flatnonzero(files == i)
            if not len(sel):
                continue
            order = sel[np.argsort(rows[sel])]
            with h5py.File(path, "r") as f:
                dataset = f["videos"][name]
                for start in range(0, len(order), chunk):
                    piece = order[start:start + chunk]
                    r = rows[piece]
                    lo, hi = int(r.min()), int(r.max()) + 1
                    if hi - lo <= 4 * len(r):  # dense: one slab read, then pick
                        out[piece] = dataset[lo:hi][r - lo]
                    else:
                        out[piece] = dataset[np.sort(r)]
        return out

    def read_segments(self, positions: np.ndarray) -> list[np.ndarray]:
        """Step segments of the videos at `positions` (into `index`): one float32 (k, 3) array
        [step, start_s, end_s] per position, (0, 3) when unannotated or stored by a file without /segments."""
        positions = np.asarray(positions, dtype=np.int64)
        files, rows = self.index["file"][positions], self.index["row"][positions]
        out = []
        for i, r in zip(files.tolist(), rows.tolist()):
            offsets, table = self._segments_of_file(i)
            out.append(table[offsets[r]:offsets[r + 1]].copy())
        return out

    def _segments_of_file(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, table) of file i, read once (a few bytes per segment) and kept."""
        cache = self._segment_cache
        if i not in cache:
            with h5py.File(self.paths[i], "r") as f:
                if "segments" in f:
                    cache[i] = (f["segments/offsets"][()], f["segments/table"][()])
                else:
                    rows = f["videos/video_id"].shape[0]
                    cache[i] = (np.zeros(rows + 1, np.int64), segment_table(None))
        return cache[i]

    def contiguous_layout(self, name: str) -> list[tuple[Path, int, np.dtype, tuple[int, ...]]] | None:
        """(path, byte offset, dtype, shape) of a contiguous, uncompressed dataset in every file, else None."""
        layout = []
        for path in self.paths:
            with h5py.File(path, "r") as f:
                dataset = f["videos"][name]
                offset = dataset.id.get_offset()
                if dataset.chunks is not None or offset is None:
                    return None
                layout.append((path, int(offset), dataset.dtype, dataset.shape))
        return layout

    def read_rows_direct(self, name: str, positions: np.ndarray, layout: list | None = None) -> np.ndarray | None:
        """Rows `positions` of a contiguous dataset with plain file reads (no h5py, no memory map).

        One read of the byte range spanning the rows of each file, so keep `positions` to a bounded
        chunk. Plain reads keep the page cache out of this process's RSS, unlike a memory map.
        Returns None when the dataset is not contiguous in every file.
        """
        layout = self.contiguous_layout(name) if layout is None else layout
        if layout is None:
            return None
        positions = np.asarray(positions, dtype=np.int64)
        files, rows = self.index["file"][positions], self.index["row"][positions]
        out = None
        for i, (path, offset, dtype, shape) in enumerate(layout):
            sel = np.flatnonzero(files == i)
            if not len(sel):
                continue
            lo, hi = int(rows[sel].min()), int(rows[sel].max()) + 1
            row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
            span = np.empty((hi - lo, *shape[1:]), dtype=dtype)
            with open(path, "rb") as handle:
                handle.seek(offset + lo * row_bytes)
                if handle.readinto(memoryview(span).cast("B")) != span.nbytes:
                    raise FeatureFileError(f"{path}: /videos/{name} is shorter than its header says (truncated file).")
            if out is None:
                out = np.empty((len(positions), *shape[1:]), dtype=dtype)
            out[sel] = span[rows[sel] - lo]
        return out

    def memmap(self, name: str) -> list[np.ndarray] | None:
        """Read-only memory maps of a contiguous, uncompressed dataset in every file, else None."""
        layout = self.contiguous_layout(name)
        if layout is None:
            return None
        return [np.memmap(path, mode="r", dtype=dtype, shape=shape, offset=offset)
                for path, offset, dtype, shape in layout]

    def summary(self) -> dict[str, Any]:
        splits, counts = np.unique(self.index["split"], return_counts=True)
        failures = self.failures()
        return {
            "files": [str(p) for p in self.paths],
            "format_version": int(self.attrs["format_version"]),
            "videos": len(self),
            "splits": {str(s): int(c) for s, c in zip(splits, counts)},
            "partial_videos": int(self.index["partial"].sum()),
            "padded_videos": int((~self.index["frame_mask"]).any(axis=1).sum()),
            "failures": [vars(x) for x in failures],
            "num_failures": len(failures),
            "notes": [vars(x) for x in self.notes()],
            "segments": sum(len(self._segments_of_file(i)[1]) for i in range(len(self.paths))),
            "num_classes": self.dims["C"],
            "num_steps": self.dims["S"],
            "frames": self.dims["F"],
            "embed_dim": self.dims["D"],
            "patch_grid": int(self.attrs.get("patch_grid", 0)),
            "provenance": self.provenance(),
            "shards": [{"file": str(p), "shard_index": a.get("shard_index"), "num_shards": a.get("num_shards"),
                        "videos": int(a["num_videos"]), "failures": int(a["num_failures"])}
                       for p, a in zip(self.paths, self.attrs_per_file)],
        }

    def verify(self, chunk: int = 256) -> list[str]:
        """Problems found by a full scan (non-finite features, bad masks, bad labels); empty when clean."""
        problems: list[str] = []
        for path in self.paths:
            with h5py.File(path, "r") as f:
                videos = f["videos"]
                n = videos["features"].shape[0]
                ids = _strings(videos["video_id"])
                for start in range(0, n, chunk):
                    for name in ("features", "patches") if "patches" in videos else ("features",):
                        block = videos[name][start:start + chunk].astype(np.float32)
                        bad = ~np.isfinite(block).reshape(len(block), -1).all(axis=1)
                        for j in np.flatnonzero(bad):
                            problems.append(f"{path}: video {ids[start + j]!r} has NaN/inf in /videos/{name}.")
                mask = videos["frame_mask"][()]
                for j in np.flatnonzero(~mask.any(axis=1)):
                    problems.append(f"{path}: video {ids[j]!r} has no valid frame (frame_mask all False).")
                label = videos["label"][()]
                bad_label = (label < -1) | (label >= self.dims["C"])
                for j in np.flatnonzero(bad_label):
                    problems.append(f"{path}: video {ids[j]!r} has label {label[j]} outside [-1, {self.dims['C']}).")
                problems.extend(_segment_problems(f, path, ids, self.dims["S"]))
        return problems


def _segment_problems(f: h5py.File, path: Path, ids: list[str], num_steps: int) -> list[str]:
    """Step segments that are not finite, end before they start, or name a step outside the vocabulary."""
    if "segments" not in f:
        return []
    problems = []
    for j, table in enumerate(_read_segment_rows(f, 0, len(ids))):
        step, start, end = table.T
        bad = ~np.isfinite(table).all(axis=1) | (end < start) | (step < 0) | (step >= num_steps) | (step != np.round(step))
        for row in table[bad][:3]:
            problems.append(f"{path}: video {ids[j]!r} has step segment {row.tolist()} (need 0 <= step < "
                            f"{num_steps}, finite start_s <= end_s).")
    return problems


def _duplicates(ids: np.ndarray) -> list[str]:
    values, counts = np.unique(ids, return_counts=True)
    return [str(v) for v in values[counts > 1]]


def merge_feature_files(inputs: str | Path | Sequence[str | Path], output: str | Path, chunk: int = 512) -> dict[str, int]:
    """Copy compatible shards into one contiguous file (refusing mismatched provenance)."""
    source = FeatureSet(inputs)
    output = Path(output)
    names = _video_fields(source.attrs)

    def blocks() -> Iterator[dict[str, np.ndarray]]:
        for path in source.paths:
            with h5py.File(path, "r") as f:
                n = f["videos/video_id"].shape[0]
                for start in range(0, n, chunk):
                    yield _read_rows(f, names, start, start + chunk)

    attrs = {**source.provenance(), "shard_index": 0, "num_shards": 1,
             "merged_from": [str(p) for p in source.paths],
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = output.with_name(output.name + ".tmp")
    output.parent.mkdir(parents=True, exist_ok=True)
    _write_file(tmp, attrs, source.text, blocks(), source.failures(), len(source), contiguous=True,
                notes=source.notes())
    tmp.rename(output)
    return {"videos": len(source), "failures": len(source.failures()), "inputs": len(source.paths)}
