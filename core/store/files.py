"""One store file in and out: write a complete file from column blocks, read row blocks, failures and notes.

Shared by the writer (part files, final shards), `merge` and the reader. `_write_file` is looked up on this
module at call time (`files._write_file`) so that the crash tests can interpose on every file write.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import h5py
import numpy as np

from ..atomic import raising_disk_full
from ..errors import FeatureFileError

from .context import ContextVocab, write_context_group
from .layout import (BOXES_DATASET, CONFOUNDER_NAMES, CONFOUNDER_VALUES, FAILURE_FIELDS, NOTE_FIELDS,
                     PROP_BOXES_DATASET, STR, VIDEO_FIELDS, FailureRecord, NoteRecord, TextBank, VideoRecord,
                     _attr_value, _dims, _strings, _video_fields, segment_table)


def _write_file(path: Path, attrs: dict[str, Any], text: TextBank, video_sources: Iterable[dict[str, np.ndarray]],
                failures: Sequence[FailureRecord], total: int, contiguous: bool,
                notes: Sequence[NoteRecord] = (), context: Mapping[str, ContextVocab] | None = None) -> None:
    """Write a complete store file at `path` from column blocks; the caller renames it into place.

    `contiguous=True` (final shards, merged files) lays /videos/features out uncompressed and
    contiguous so that readers can memory-map it. `context`: the optional /context vocabularies.
    """
    dims = _dims(attrs)
    names = _video_fields(attrs)
    image = b""
    if not contiguous:
        # Part files are small (--flush-every videos): built in memory, then written by plain file writes.
        # HDF5 writing in place and hitting a full disk corrupts its own state (a segfault at exit), so
        # the common case never lets it see one.
        f = h5py.File(path.name, "w", driver="core", backing_store=False)
        try:
            _fill(f, path, attrs, text, video_sources, failures, total, contiguous, notes, dims, names, context)
            image = f.id.get_file_image()
        finally:
            f.close()
    with raising_disk_full(path, cleanup=path):
        if contiguous:
            with h5py.File(path, "w") as f:
                _fill(f, path, attrs, text, video_sources, failures, total, contiguous, notes, dims, names, context)
        with open(path, "rb+" if contiguous else "wb") as handle:  # durable before the rename publishes it
            if not contiguous:
                handle.write(image)
                handle.flush()
            os.fsync(handle.fileno())


def _fill(f: h5py.File, path: Path, attrs: dict[str, Any], text: TextBank,
          video_sources: Iterable[dict[str, np.ndarray]], failures: Sequence[FailureRecord], total: int,
          contiguous: bool, notes: Sequence[NoteRecord], dims: dict[str, int], names: list[str],
          context: Mapping[str, ContextVocab] | None = None) -> None:
    """The content of a store file, into the open file `f`."""
    for key, value in attrs.items():
        f.attrs[key] = _attr_value(value)
    f.attrs["complete"] = False
    text.write(f.create_group("text"))
    write_context_group(f, context or {})
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
        _write_optional(f, path, block, row, total, dims["F"])
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


def _write_optional(f: h5py.File, path: Path, block: dict[str, Any], row: int, total: int, frames: int) -> None:
    """The block's rows of the optional /boxes (xyxy, props_xyxy) and /confounders groups, each created with its
    first block that has data: rows of blocks without it keep the fill value (NaN box, -1 factor value)."""
    boxes = block.get("boxes")
    if boxes is not None:
        if BOXES_DATASET not in f:
            f.create_dataset(BOXES_DATASET, shape=(total, frames, 4), dtype=np.float32, fillvalue=np.nan)
        f[BOXES_DATASET][row:row + len(boxes)] = boxes
    _write_prop_boxes(f, block.get("prop_boxes"), row, total, frames)
    names = list(block.get("confounder_names") or [])
    if not names:
        return
    if CONFOUNDER_NAMES not in f:
        f.create_dataset(CONFOUNDER_NAMES, data=np.array(names, dtype=object), dtype=STR)
        f.create_dataset(CONFOUNDER_VALUES, shape=(total, len(names)), dtype=np.int32, fillvalue=-1)
    elif _strings(f[CONFOUNDER_NAMES]) != names:
        raise FeatureFileError(f"{path}: videos with different confounder names "
                               f"({_strings(f[CONFOUNDER_NAMES])} and {names}) cannot share a file.")
    values = block["confounders"]
    f[CONFOUNDER_VALUES][row:row + len(values)] = values


def _write_prop_boxes(f: h5py.File, boxes: np.ndarray | None, row: int, total: int, frames: int) -> None:
    """The block's rows (n, F, M, 4) of /boxes/props_xyxy. M may differ between blocks (videos with more
    props): the dataset grows along M to the largest, and the smaller blocks' missing props stay NaN."""
    if boxes is None or boxes.shape[2] == 0:
        return
    objects = boxes.shape[2]
    if PROP_BOXES_DATASET not in f:
        f.create_dataset(PROP_BOXES_DATASET, shape=(total, frames, objects, 4), dtype=np.float32,
                         fillvalue=np.nan, maxshape=(total, frames, None, 4),
                         chunks=(max(1, min(total, 16)), frames, objects, 4))
    dataset = f[PROP_BOXES_DATASET]
    if dataset.shape[2] < objects:
        dataset.resize(objects, axis=2)
    dataset[row:row + len(boxes), :, :objects] = boxes


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
    if any(r.boxes is not None for r in records):
        frames = next(len(r.boxes) for r in records if r.boxes is not None)
        block["boxes"] = np.stack([np.full((frames, 4), np.nan, np.float32) if r.boxes is None
                                   else np.asarray(r.boxes, np.float32) for r in records])
    objects = max((r.prop_boxes.shape[1] for r in records if r.prop_boxes is not None), default=0)
    if objects:
        frames = next(len(r.prop_boxes) for r in records if r.prop_boxes is not None)
        block["prop_boxes"] = np.full((len(records), frames, objects, 4), np.nan, np.float32)
        for i, r in enumerate(records):
            if r.prop_boxes is not None:
                block["prop_boxes"][i, :, :r.prop_boxes.shape[1]] = r.prop_boxes
    names = next((list(r.confounders) for r in records if r.confounders), [])
    if names:
        block["confounder_names"] = names
        block["confounders"] = np.array([[r.confounders.get(n, -1) for n in names] for r in records], np.int32)
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
    stop = start + len(block["video_id"])
    block["segments"] = _read_segment_rows(f, start, stop)
    if BOXES_DATASET in f:
        block["boxes"] = f[BOXES_DATASET][start:stop]
    if PROP_BOXES_DATASET in f:
        block["prop_boxes"] = f[PROP_BOXES_DATASET][start:stop]
    if CONFOUNDER_NAMES in f:
        block["confounder_names"] = _strings(f[CONFOUNDER_NAMES])
        block["confounders"] = f[CONFOUNDER_VALUES][start:stop]
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
