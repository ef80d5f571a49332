"""The full content scan of one feature file (`FeatureSet.verify`, `cmdcl verify`): what a reader would take
in silently. Reads the file with h5py only, so that `reader` and `verify` both build on it without importing
each other."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .files import _read_segment_rows
from .layout import BOXES_DATASET, CONFOUNDER_VALUES, PROP_BOXES_DATASET, _strings


def scan_file(path: Path, dims: dict[str, int], chunk: int = 256) -> list[str]:
    """Problems in one file's contents: NaN/inf embeddings, no valid frame, labels and step segments outside
    the vocabulary. `dims` as `FeatureSet.dims`."""
    with h5py.File(path, "r") as f:
        videos = f["videos"]
        ids = _strings(videos["video_id"])
        problems = _non_finite(path, videos, ids, chunk)
        mask = videos["frame_mask"][()]
        for j in np.flatnonzero(~mask.any(axis=1)):
            problems.append(f"{path}: video {ids[j]!r} has no valid frame (frame_mask all False).")
        label = videos["label"][()]
        bad_label = (label < -1) | (label >= dims["C"])
        for j in np.flatnonzero(bad_label):
            problems.append(f"{path}: video {ids[j]!r} has label {label[j]} outside [-1, {dims['C']}).")
        problems.extend(_segment_problems(f, path, ids, dims["S"]))
        for name, size in (("class_ids", dims["C"]), ("step_ids", dims["S"])):
            if f"text/{name}" in f and f[f"text/{name}"].shape != (size,):
                problems.append(f"{path}: /text/{name} has shape {f[f'text/{name}'].shape}, expected ({size},).")
        problems.extend(_optional_group_problems(f, path, ids))
    return problems


def _optional_group_problems(f: h5py.File, path: Path, ids: list[str]) -> list[str]:
    """Boxes (the action's object's and the props') that are partly NaN, outside [0, 1] or empty; factor values
    below -1."""
    problems = []
    for name in (BOXES_DATASET, PROP_BOXES_DATASET):
        if name not in f:
            continue
        boxes = f[name][()]
        missing = np.isnan(boxes)
        with np.errstate(invalid="ignore"):
            bad = (missing.any(-1) & ~missing.all(-1)) | (~missing.all(-1) & (
                (boxes < 0).any(-1) | (boxes > 1).any(-1) | (boxes[..., 2] <= boxes[..., 0])
                | (boxes[..., 3] <= boxes[..., 1])))
        for j in np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[:10]:
            problems.append(f"{path}: video {ids[j]!r} has a box outside 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1 "
                            f"(or partly NaN) in /{name}.")
    if CONFOUNDER_VALUES in f:
        for j in np.flatnonzero((f[CONFOUNDER_VALUES][()] < -1).any(axis=1))[:10]:
            problems.append(f"{path}: video {ids[j]!r} has a confounder value below -1 (-1 means unknown).")
    return problems


def non_finite_rows(block: np.ndarray) -> np.ndarray:
    """Which rows (videos) of a per-video array hold a NaN or an infinity anywhere: the one rule that
    `verify` reports and the head's data path (head/data.py) refuses."""
    block = np.asarray(block)
    return ~np.isfinite(block).reshape(len(block), -1).all(axis=1)


def _non_finite(path: Path, videos: h5py.Group, ids: list[str], chunk: int) -> list[str]:
    problems = []
    for start in range(0, videos["features"].shape[0], chunk):
        for name in ("features", "patches") if "patches" in videos else ("features",):
            bad = non_finite_rows(videos[name][start:start + chunk])
            for j in np.flatnonzero(bad):
                problems.append(f"{path}: video {ids[start + j]!r} has NaN/inf in /videos/{name}.")
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
