"""Reading feature files: find them, check each one, and read a compatible set as one `FeatureSet`."""
from __future__ import annotations

import glob
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import h5py
import numpy as np

from ..errors import FeatureFileError, shorten
from ..provenance import ADDED_ATTRIBUTES, COMPATIBILITY_KEYS, first_mismatch

from .context import ContextVocab, check_context_group, read_context_group
from .files import _read_block, _read_failures, _read_notes
from .layout import (BOXES_DATASET, CONFOUNDER_NAMES, CONFOUNDER_VALUES, FORMAT_VERSION, PROP_BOXES_DATASET,
                     SEGMENT_COLUMNS, VIDEO_FIELDS, FailureRecord, NoteRecord, TextBank, _decode_attr, _dims, _strings,
                     _video_fields, segment_table)
from .scan import scan_file

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
    return _once(paths)


def _once(paths: list[Path]) -> list[Path]:
    """Each file once, in first-given order: `-f DIR -f DIR/shard.h5` names one shard twice (resolved paths
    compared, so relative, absolute and symlinked spellings count as the same file)."""
    seen: set[Path] = set()
    kept = []
    for path in paths:
        key = path.resolve() if path.exists() else path.absolute()
        if key not in seen:
            seen.add(key)
            kept.append(path)
    return kept


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
            # Attributes added later take the value that describes the older files (patch tokens of the last block).
            attrs = {**ADDED_ATTRIBUTES, **{k: _decode_attr(v) for k, v in f.attrs.items()}}
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
            _check_optional_groups(f, path, int(attrs["num_videos"]), int(attrs["frames"]))
            check_context_group(f, path, int(attrs["embed_dim"]))
    except FeatureFileError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise FeatureFileError(f"{path}: corrupt or truncated HDF5 file ({shorten(str(exc), 160)}).") from None
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


def _check_optional_groups(f: h5py.File, path: Path, num_videos: int, frames: int) -> None:
    """The optional /boxes and /confounders groups, when present, must have one row per video."""
    if "boxes" in f and BOXES_DATASET not in f and PROP_BOXES_DATASET not in f:
        raise FeatureFileError(f"{path}: /boxes holds neither xyxy nor props_xyxy.")
    if BOXES_DATASET in f and f[BOXES_DATASET].shape != (num_videos, frames, 4):
        raise FeatureFileError(f"{path}: /{BOXES_DATASET} has shape {f[BOXES_DATASET].shape}, "
                               f"expected ({num_videos}, {frames}, 4).")
    if PROP_BOXES_DATASET in f:
        shape = f[PROP_BOXES_DATASET].shape
        if len(shape) != 4 or shape[:2] != (num_videos, frames) or shape[3] != 4:
            raise FeatureFileError(f"{path}: /{PROP_BOXES_DATASET} has shape {shape}, "
                                   f"expected ({num_videos}, {frames}, M, 4).")
    if "confounders" in f:
        if CONFOUNDER_NAMES not in f or CONFOUNDER_VALUES not in f:
            raise FeatureFileError(f"{path}: /confounders needs both datasets names and values.")
        k = f[CONFOUNDER_NAMES].shape[0]
        if f[CONFOUNDER_VALUES].shape != (num_videos, k):
            raise FeatureFileError(f"{path}: /{CONFOUNDER_VALUES} has shape {f[CONFOUNDER_VALUES].shape}, "
                                   f"expected ({num_videos}, {k}).")


class FeatureSet:
    """One logical dataset over one or more complete shard files with identical provenance."""

    def __init__(self, spec: str | Path | Sequence[str | Path]):
        self.paths = resolve_feature_paths(spec)
        self.attrs_per_file = [check_feature_file(p) for p in self.paths]
        first = self.attrs_per_file[0]
        for path, attrs in zip(self.paths[1:], self.attrs_per_file[1:]):
            mismatch = first_mismatch(attrs, first, COMPATIBILITY_KEYS)
            if mismatch:
                key = mismatch.key
                raise FeatureFileError(
                    f"{path}: attribute {key}={attrs.get(key)!r} differs from {self.paths[0]} "
                    f"({first.get(key)!r}); shards made with different settings cannot be combined.")
        self.attrs = first
        with h5py.File(self.paths[0], "r") as f:
            self.text = TextBank.read(f["text"])
        for path in self.paths[1:]:
            with h5py.File(path, "r") as f:
                other = TextBank.read(f["text"])
            if not other.same_vocabulary(self.text):
                raise FeatureFileError(f"{path}: label vocabulary differs from {self.paths[0]}.")
        self.dims = _dims(first)
        self.confounder_names = self._read_confounder_names()
        self._segment_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.index = self._read_index()
        duplicates = _duplicates(self.index["video_id"])
        if duplicates:
            raise FeatureFileError(self._duplicates_message(duplicates),
                                   fix="pass each shard once, and no shards of two extractions of one dataset.")

    def _duplicates_message(self, duplicates: list[str]) -> str:
        """Where the first duplicated video id is stored, in plain paths: two files, or twice in one."""
        where = sorted(set(self.index["file"][self.index["video_id"] == duplicates[0]].tolist()))
        files = " and ".join(str(self.paths[i]) for i in where)
        ids = ", ".join(repr(v) for v in duplicates[:3]) + (f" and {len(duplicates) - 3} more" if len(duplicates) > 3 else "")
        return f"{files}: video id(s) {ids} stored more than once."

    @property
    def has_patches(self) -> bool:
        return self.dims["P"] > 0

    def _per_file(self, read: Callable[[h5py.File], Any]) -> list[Any]:
        """`read(file)` of every file, in order."""
        out = []
        for path in self.paths:
            with h5py.File(path, "r") as f:
                out.append(read(f))
        return out

    def _read_confounder_names(self) -> list[str]:
        """The context factors of the optional /confounders group (the same in every file that has it)."""
        per_file = self._per_file(lambda f: _strings(f[CONFOUNDER_NAMES]) if CONFOUNDER_NAMES in f else None)
        found = [(p, n) for p, n in zip(self.paths, per_file) if n is not None]
        for path, names in found[1:]:
            if names != found[0][1]:
                raise FeatureFileError(f"{path}: confounder names {', '.join(names)} differ from {found[0][0]} "
                                       f"({', '.join(found[0][1])}).")
        return found[0][1] if found else []

    @cached_property
    def context(self) -> dict[str, ContextVocab]:
        """The optional /context vocabularies (zero-shot pseudo labels), which every file must hold alike;
        read when first asked for, so that a set whose files differ here still trains and evaluates."""
        per_file = self._per_file(read_context_group)
        for path, context in zip(self.paths[1:], per_file[1:]):
            first = per_file[0]
            if context.keys() != first.keys() or any(not v.same_as(first[k]) for k, v in context.items()):
                raise FeatureFileError(f"{path}: context vocabularies {sorted(context)} differ from {self.paths[0]} "
                                       f"({sorted(first)}).", fix="run `cmdcl context-labels --replace` with the "
                                       "same --vocab on the whole set (pass their folder).")
        return per_file[0]

    @property
    def has_boxes(self) -> bool:
        """True when some file stores object boxes (/boxes/xyxy)."""
        return any(self._per_file(lambda f: BOXES_DATASET in f))

    def read_boxes(self, positions: np.ndarray) -> np.ndarray | None:
        """(n, F, 4) float32 boxes [x0, y0, x1, y1] in [0, 1] of the model's input image of the videos at
        `positions` (NaN: no box in that frame, or a file without /boxes); None when no file has boxes."""
        return self._read_optional(positions, BOXES_DATASET, (self.dims["F"], 4), np.float32, np.nan)

    @property
    def has_prop_boxes(self) -> bool:
        """True when some file stores the boxes of props (/boxes/props_xyxy)."""
        return any(self._per_file(lambda f: PROP_BOXES_DATASET in f))

    def read_prop_boxes(self, positions: np.ndarray) -> np.ndarray | None:
        """(n, F, M, 4) float32 boxes of the props (objects with no part in the action) of the videos at
        `positions`, as `read_boxes`; M is the most props any file stores (NaN: that prop is not in view, the
        video has fewer, or a file without them); None when no file has them."""
        objects = max(self._per_file(lambda f: f[PROP_BOXES_DATASET].shape[2] if PROP_BOXES_DATASET in f else 0))
        if not objects:
            return None
        return self._read_optional(positions, PROP_BOXES_DATASET, (self.dims["F"], objects, 4), np.float32, np.nan)

    def read_confounders(self, positions: np.ndarray) -> np.ndarray | None:
        """(n, K) int32 context-factor values (-1 unknown), columns as `confounder_names`; None when no file
        has /confounders."""
        if not self.confounder_names:
            return None
        return self._read_optional(positions, CONFOUNDER_VALUES, (len(self.confounder_names),), np.int32, -1)

    def _read_optional(self, positions: np.ndarray, name: str, trailing: tuple[int, ...], dtype: Any,
                       fill: Any) -> np.ndarray | None:
        positions = np.asarray(positions, dtype=np.int64)
        files, rows = self.index["file"][positions], self.index["row"][positions]
        out = np.full((len(positions), *trailing), fill, dtype)
        found = False
        for i, path in enumerate(self.paths):
            with h5py.File(path, "r") as f:
                if name not in f:
                    continue
                found = True
                sel = np.flatnonzero(files == i)
                if len(sel):
                    data = f[name][()][rows[sel]]
                    out[(sel, *(slice(0, n) for n in data.shape[1:]))] = data  # a file may store fewer props
        return out if found else None

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
        """The lists `read(file)` of every file, concatenated."""
        return [item for items in self._per_file(read) for item in items]

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
            "boxes": self.has_boxes,
            "prop_boxes": self.has_prop_boxes,
            "confounders": list(self.confounder_names),
            "context": self._context_summary(),
            "provenance": self.provenance(),
            "shards": [{"file": str(p), "shard_index": a.get("shard_index"), "num_shards": a.get("num_shards"),
                        "videos": int(a["num_videos"]), "failures": int(a["num_failures"])}
                       for p, a in zip(self.paths, self.attrs_per_file)],
        }

    def _context_summary(self) -> dict[str, int] | str:
        """factor -> number of values; the problem in words when the files' vocabularies differ."""
        try:
            return {k: len(v.names) for k, v in self.context.items()}
        except FeatureFileError as exc:
            return exc.one_line()

    def verify(self, chunk: int = 256) -> list[str]:
        """Problems found by a full scan (non-finite features, bad masks, bad labels, bad step segments);
        empty when clean."""
        return [problem for path in self.paths for problem in scan_file(path, self.dims, chunk)]


def _duplicates(ids: np.ndarray) -> list[str]:
    values, counts = np.unique(ids, return_counts=True)
    return [str(v) for v in values[counts > 1]]
