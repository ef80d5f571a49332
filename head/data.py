"""Cached features as tensors, batched by indexing: the data path of training and evaluation.

A per-video h5py `Dataset` behind a `DataLoader` spends its time in HDF5 calls and worker IPC. Here the
wanted splits are read once, in contiguous chunks (`FeatureSet.read_array`), into one float16 tensor
(N, F, D); a batch is then one tensor index. COIN at 64 frames x 512 dims is ~0.8 GB in float16, so this
fits in RAM (and on a GPU) on any machine that trains it.

Larger than RAM: `data_mode="memmap"` keeps read-only memory maps of the (contiguous, uncompressed)
feature arrays and gathers each batch from them, sorted by row for locality, letting the page cache
decide what stays resident. `auto` picks memmap when the features would take more than half of the
available memory. Files written with chunked storage cannot be mapped; then each batch is read through
h5py (correct, slower): `cmdcl merge` rewrites them contiguously.

Features holding NaN/inf are refused as they are read (memmap mode: one checking pass at the start),
naming the file, the split and the first videos; `check_finite` makes the same pass over the splits a
training run scores after training, so that it stops before it trains.

Data order is a pure function of (seed, epoch), so a run resumed mid-epoch replays the rest of the
same order, and DDP ranks take interleaved slices of the same permutation (as DistributedSampler
does), padded by wrap-around to equal sizes. With a per-rank batch of B/world, the union of the rank
batches at step k is exactly the single-process batch k of size B.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from cmdcl.core.errors import CmdclError, FeatureFileError
from cmdcl.core.store import VIDEO_FIELDS, FeatureSet, non_finite_rows


def frame_subsample_index(frame_mask: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per video, `frames` slots spread uniformly over its valid frames; returns (index (N, frames), mask).

    A video with fewer valid frames than `frames` keeps all of them, in order, and pads by repeating the
    last one with mask False (the store's own padding convention).
    """
    frame_mask = np.asarray(frame_mask, bool)
    valid_first = np.argsort(~frame_mask, axis=1, kind="stable")  # valid positions first, in time order
    count = frame_mask.sum(axis=1)[:, None]
    slot = np.arange(frames)[None, :]
    uniform = ((slot + 0.5) * count / frames).astype(np.int64)
    prefix = np.minimum(slot, np.maximum(count - 1, 0))
    take = np.where(count >= frames, uniform, prefix)
    index = np.take_along_axis(valid_first, take, axis=1)
    mask = np.broadcast_to(slot < count, index.shape).copy()
    return index, mask


def _names(splits: str | Sequence[str] | None) -> str:
    return "(all)" if splits is None else ", ".join(repr(str(s)) for s in ([splits] if isinstance(splits, str) else splits))


def _available_memory_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


class FeatureData:
    """The videos of the wanted split(s) of a FeatureSet, ready to batch by row index.

    Attributes (row i is the i-th selected video in video_id order, whatever order the file stores them in):
      video_id, split: numpy string arrays; label (N,) int64; labels (N, C) uint8; steps (N, S) uint8;
      frame_mask (N, F') bool; features (N, F', D) float16 and patches (N, F', P, D) float16 when in memory.
    """

    def __init__(self, source: FeatureSet | str | Path | Sequence[str | Path], splits: str | Sequence[str] | None = None,
                 *, frames: int = 0, use_patches: bool | None = False, mode: str = "auto", chunk: int = 512,
                 log: Callable[[str], None] = print):
        fs = source if isinstance(source, FeatureSet) else FeatureSet(source)
        self.feature_set = fs
        selected = fs.select(splits)
        # Rows in video_id order, not stored order: extraction stores videos as they finish, which differs
        # between runs with several workers, and batches, the carved validation and probes follow rows.
        self.positions = selected[np.argsort(fs.index["video_id"][selected], kind="stable")]
        if not len(self.positions):
            available = ", ".join(sorted(set(fs.index["split"].tolist()))) or "none"
            raise FeatureFileError(f"{fs.paths[0]}: no videos in split {_names(splits)}; splits in the file: {available}.")
        index = fs.index
        pos = self.positions
        self.video_id = index["video_id"][pos]
        self.split = index["split"][pos]
        self.label = torch.from_numpy(index["label"][pos].astype(np.int64))
        self.labels = torch.from_numpy(np.ascontiguousarray(index["labels"][pos]))
        self.steps = torch.from_numpy(np.ascontiguousarray(index["steps"][pos]))

        stored_frames = fs.dims["F"]
        if frames > stored_frames:
            raise CmdclError(f"--frames {frames} but {fs.paths[0]} holds only {stored_frames} frames per video.",
                             fix=f"use --frames <= {stored_frames}, or re-extract with more frames.")
        self.frames = frames if 0 < frames < stored_frames else stored_frames
        mask = index["frame_mask"][pos]
        self._frame_index = None
        if self.frames < stored_frames:
            self._frame_index, mask = frame_subsample_index(mask, self.frames)
        self.frame_mask = torch.from_numpy(np.ascontiguousarray(mask))
        if use_patches is None:  # auto: the patch tokens when the file holds them
            use_patches = bool(fs.has_patches)
        if use_patches and not fs.has_patches:
            raise FeatureFileError(f"{fs.paths[0]}: --use-patches but the features hold no patch tokens (patch_grid=0).",
                                   fix="re-extract with a patch grid, or drop --use-patches.")
        self.use_patches = use_patches
        self.dim = fs.dims["D"]
        self.patches_per_frame = fs.dims["P"] if use_patches else 0

        names = ["features"] + (["patches"] if use_patches else [])
        wanted_bytes = sum(self._row_bytes(n) for n in names) * len(pos)
        if mode == "auto":
            mode = "memmap" if wanted_bytes > _available_memory_bytes() // 2 else "memory"
            if mode == "memmap":
                log(f"features need {wanted_bytes / 2**30:.1f} GiB, more than half the free memory: "
                    "gathering batches from a memory map (data_mode=memmap).")
        if mode not in ("memory", "memmap"):
            raise CmdclError(f"data mode {mode!r} is not one of auto, memory, memmap.")
        self.mode = mode
        self.features: torch.Tensor | None = None
        self.patches: torch.Tensor | None = None
        self._maps: dict[str, list[np.ndarray] | None] = {}
        if mode == "memory":
            self.features = self._load("features", chunk)
            self.patches = self._load("patches", chunk) if use_patches else None
        else:
            for name in names:
                self._scan_non_finite(name, chunk)
            self._maps = {n: fs.memmap(n) for n in names}
            if any(m is None for m in self._maps.values()):
                log(f"{fs.paths[0]}: chunked storage cannot be memory-mapped; reading each batch through h5py "
                    "(slower). `cmdcl merge` writes a contiguous file.")

    # ------------------------------------------------------------------------------------------ loading

    def _row_bytes(self, name: str) -> int:
        dims = {**self.feature_set.dims, "F": self.frames}
        return int(np.prod([dims[t] for t in VIDEO_FIELDS[name][1]])) * np.dtype(VIDEO_FIELDS[name][0]).itemsize

    def _subsample(self, block: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if self._frame_index is None:
            return block
        index = self._frame_index[rows]
        index = index.reshape(index.shape + (1,) * (block.ndim - 2))
        return np.take_along_axis(block, index, axis=1)

    def _blocks(self, name: str, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, their values of `name` after frame subsampling) over every selected row, in file order."""
        # Contiguous files (every finished shard) are read with plain file reads: no h5py call per chunk,
        # about 2x faster than read_array on a COIN-sized file, and no page cache mapped into our RSS.
        layout = self.feature_set.contiguous_layout(name)
        stored_order = np.argsort(self.positions, kind="stable")  # read in file order: short contiguous spans
        for start in range(0, len(self.positions), chunk):
            rows = stored_order[start:start + chunk]
            block = None
            if layout is not None:
                block = self.feature_set.read_rows_direct(name, self.positions[rows], layout)
            if block is None:
                block = self.feature_set.read_array(name, self.positions[rows], chunk=chunk)
            yield rows, self._subsample(block, rows)

    def _load(self, name: str, chunk: int) -> torch.Tensor:
        """All selected rows of `name`, read in contiguous chunks straight into one preallocated tensor;
        NaN/inf refused (`_refuse_non_finite`) before anything trains or scores on them."""
        dims = {**self.feature_set.dims, "F": self.frames}
        out = torch.empty((len(self.positions), *[dims[t] for t in VIDEO_FIELDS[name][1]]), dtype=torch.float16)
        bad = []
        for rows, block in self._blocks(name, chunk):
            bad.append(rows[non_finite_rows(block)])
            out[torch.from_numpy(rows)] = torch.from_numpy(block)
        self._refuse_non_finite(name, np.concatenate(bad) if bad else np.zeros(0, np.int64))
        return out

    def _scan_non_finite(self, name: str, chunk: int) -> None:
        """Memory-map mode: one read of the selected rows, checking them as `_load` does."""
        bad = [rows[non_finite_rows(block)] for rows, block in self._blocks(name, chunk)]
        self._refuse_non_finite(name, np.concatenate(bad) if bad else np.zeros(0, np.int64))

    def _refuse_non_finite(self, name: str, rows: np.ndarray) -> None:
        """A one-line error naming the file, the dataset and the first videos whose `name` holds NaN/inf (the
        rule of `cmdcl verify`, core/store/scan.py); a model would turn them into a traceback or NaN scores."""
        if not len(rows):
            return
        rows = np.sort(rows)
        fs = self.feature_set
        path = fs.paths[int(fs.index["file"][self.positions[rows[0]]])]
        first = ", ".join(repr(str(v)) for v in self.video_id[rows[:3]])
        more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
        splits = ", ".join(repr(str(v)) for v in sorted(set(self.split[rows].tolist())))
        root = fs.attrs.get("dataset_root")
        dataset = f"dataset {fs.attrs.get('dataset') or '?'}" + (f" at {root}" if root else "")
        raise FeatureFileError(f"{path}: NaN/inf in /videos/{name} of split {splits}, video(s) {first}{more} "
                               f"({dataset}); no head can train on or score them.",
                               fix=f"`cmdcl verify {path}` lists them; re-extract those videos.")

    def _gather_from(self, maps: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """Rows (positions into this selection) from per-file memory maps, in `rows` order."""
        fs = self.feature_set
        files = fs.index["file"][self.positions[rows]]
        file_rows = fs.index["row"][self.positions[rows]]
        block = None
        for i, mm in enumerate(maps):
            sel = np.flatnonzero(files == i)
            if not len(sel):
                continue
            order = sel[np.argsort(file_rows[sel])]
            part = mm[file_rows[order]]
            if block is None:
                block = np.empty((len(rows), *part.shape[1:]), dtype=part.dtype)
            block[order] = part
        return block

    def _gather(self, name: str, rows: np.ndarray) -> torch.Tensor:
        """Rows of `name` in memmap mode: one sorted fancy-index read per file, then back in batch order."""
        maps = self._maps.get(name)
        if maps is None:
            block = self.feature_set.read_array(name, self.positions[rows])
        else:
            block = self._gather_from(maps, rows)
        return torch.from_numpy(np.ascontiguousarray(self._subsample(block, rows)))

    # ------------------------------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self.positions)

    def to(self, device: torch.device | str) -> "FeatureData":
        """Move the in-memory arrays to `device` (e.g. the whole set onto a GPU that has room)."""
        for name in ("features", "patches", "frame_mask", "label", "labels", "steps"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.features, self.patches) if t is not None)

    def batch(self, rows: torch.Tensor | np.ndarray, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The videos at `rows` as float32/bool/long tensors on `device` (float16 travels, then is cast)."""
        rows_t = torch.as_tensor(rows, dtype=torch.long)
        if self.mode == "memory":
            on = self.features.device
            idx = rows_t.to(on)
            features = self.features[idx]
            patches = self.patches[idx] if self.patches is not None else None
        else:
            rows_np = rows_t.numpy()
            features = self._gather("features", rows_np)
            patches = self._gather("patches", rows_np) if self.use_patches else None
            idx = rows_t
        small = idx.to(self.frame_mask.device)
        out = {
            "features": features.to(device, non_blocking=True).float(),
            "frame_mask": self.frame_mask[small].to(device, non_blocking=True),
            "label": self.label[small].to(device, non_blocking=True),
            "labels": self.labels[small].to(device, non_blocking=True).float(),
            "steps": self.steps[small].to(device, non_blocking=True).float(),
        }
        if patches is not None:
            out["patches"] = patches.to(device, non_blocking=True).float()
        return out

    def numpy_features(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features float16 (n, F', D), frame_mask (n, F')) of `rows`, e.g. for fitting dictionaries."""
        if self.mode == "memory":
            feats = self.features[torch.as_tensor(rows).to(self.features.device)].cpu().numpy()
        else:
            feats = self._gather("features", np.asarray(rows)).numpy()
        return feats, self.frame_mask[torch.as_tensor(rows).to(self.frame_mask.device)].cpu().numpy()

    def is_multilabel(self, rows: np.ndarray | None = None) -> bool:
        """Multi-label when the file says so, or when no video has a single class label but some have labels."""
        flag = self.feature_set.attrs.get("multilabel")
        if flag not in (None, ""):
            return bool(flag) and str(flag).lower() not in ("false", "0")
        rows = np.arange(len(self)) if rows is None else rows
        labels = self.labels[torch.as_tensor(rows)].cpu().numpy()
        label = self.label[torch.as_tensor(rows)].cpu().numpy()
        return bool((labels.sum(axis=1) > 1).any() or ((label < 0).all() and labels.any()))

    def steps_annotated(self, rows: np.ndarray) -> bool:
        """Atomic-action presence is annotated when any video of `rows` has a step marked."""
        return bool(self.steps[torch.as_tensor(rows).to(self.steps.device)].any())


def check_finite(source: FeatureSet | str | Path | Sequence[str | Path], splits: Sequence[str], *, frames: int = 0,
                 use_patches: bool | None = False, chunk: int = 512) -> None:
    """Refuse NaN/inf in the videos of `splits` exactly as a run reading them would (frames subsampled, patches
    when it reads them), in one chunked pass that keeps nothing: for the splits a run scores only after training."""
    FeatureData(source, list(splits), frames=frames, use_patches=use_patches, mode="memmap", chunk=chunk,
                log=lambda message: None)


# ---------------------------------------------------------------------------------------------- order

def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle of epoch `epoch`: a function of (seed, epoch) only, independent of the global RNG."""
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=generator)


def epoch_batches(rows: np.ndarray, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1,
                  shuffle: bool = True, passes: int = 1) -> list[torch.Tensor]:
    """This rank's batches (row indices) for one epoch of `passes` passes over `rows`.

    Pass p of epoch e is shuffled by the permutation of (seed, e * passes + p): with one pass per epoch,
    that of (seed, e). Each pass is padded by wrap-around to a multiple of `world` and rank r takes every
    world-th element from r, like torch's DistributedSampler; `batch_size` is the per-rank batch size.
    """
    rows_t = torch.as_tensor(np.asarray(rows), dtype=torch.long)
    batches: list[torch.Tensor] = []
    for p in range(passes):
        order = rows_t[epoch_permutation(len(rows_t), seed, epoch * passes + p)] if shuffle else rows_t
        if world > 1:
            total = math.ceil(len(order) / world) * world
            order = order[torch.arange(total) % len(order)][rank::world]
        batches.extend(order.split(batch_size))
    return batches


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    return math.ceil(math.ceil(n / world) / batch_size)


# ---------------------------------------------------------------------------------------------- splits

def carve_validation(label: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) positions into `label`: `fraction` of each class held out, seeded.

    Every class with at least two videos gives at least one to validation and keeps at least one for
    training; multi-label data (label -1) is one stratum.
    """
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for cls in np.unique(label):
        members = np.flatnonzero(label == cls)
        members = members[rng.permutation(len(members))]
        take = int(round(fraction * len(members)))
        if fraction > 0 and len(members) >= 2:
            take = min(max(take, 1), len(members) - 1)
        val.append(members[:take])
    val_rows = np.sort(np.concatenate(val)) if val else np.empty(0, np.int64)
    train_rows = np.setdiff1d(np.arange(len(label)), val_rows)
    return train_rows, val_rows


def load_train_val(features: str | Path | Sequence[str | Path], frames: int = 0, use_patches: bool | None = False,
                   val_fraction: float = 0.1, seed: int = 0, mode: str = "auto",
                   log: Callable[[str], None] = print, train_split: str = "train"
                   ) -> tuple[FeatureData, np.ndarray, np.ndarray]:
    """The training and validation videos, as one FeatureData plus their row indices.

    Uses the "val" split when the features have one and `train_split` is "train", else carves `val_fraction`
    of `train_split` (stratified by class, seeded) and says so.
    """
    data = load_train_data(features, frames, use_patches, mode, log, train_split)
    train_rows, val_rows = train_val_rows(data, val_fraction, seed, log, train_split)
    return data, train_rows, val_rows


def load_train_data(features: str | Path | Sequence[str | Path], frames: int = 0, use_patches: bool = False,
                    mode: str = "auto", log: Callable[[str], None] = print,
                    train_split: str = "train") -> FeatureData:
    """The `train_split` videos of `features` (with "val", when present and `train_split` is "train"), read
    once: several runs (seeds) can share it, each choosing its rows with `train_val_rows`."""
    fs = FeatureSet(features)
    splits = set(fs.index["split"].tolist())
    if train_split not in splits:
        fix = (" Regenerate the synthetic world with this version (it holds a train_unconfounded split) and "
               "re-extract." if train_split == "train_unconfounded" else "")
        raise FeatureFileError(f"{fs.paths[0]}: no {train_split!r} split to train on (--train-split); splits in "
                               f"the file: {', '.join(sorted(splits)) or 'none'}.{fix}")
    wanted = [train_split, "val"] if train_split == "train" and "val" in splits else [train_split]
    return FeatureData(fs, wanted, frames=frames, use_patches=use_patches, mode=mode, log=log)


def load_run_data(features: str | Path | Sequence[str | Path], frames: int = 0, use_patches: bool | None = False,
                  mode: str = "auto", log: Callable[[str], None] = print,
                  score_after: Sequence[str] = (), train_split: str = "train") -> FeatureData:
    """`load_train_data`, plus the NaN/inf check of the splits the run scores after training (`score_after`,
    e.g. test), so that a run which could not score them refuses before it trains, not after."""
    data = load_train_data(features, frames, use_patches, mode, log, train_split=train_split)
    read = set(data.split.tolist())
    later = [split for split in score_after if split not in read]
    if later:
        check_finite(data.feature_set, later, frames=frames, use_patches=data.use_patches)
    return data


def patches_note(data: FeatureData, method: str, reads_patches: bool) -> str:
    """The start-up line of a run with --use-patches unset: what it reads, and, for a head that reads patch tokens
    (`reads_patches`) given a file without them, that it trains its frame-only head and how to get patches."""
    if reads_patches and not data.use_patches:
        return (f"--use-patches unset: {data.feature_set.paths[0]} holds no patch tokens (patch_grid 0), so "
                f"{method} trains its frame-only head, not its default patch head; re-extract with --patch-grid 4 "
                "to get it.")
    return f"--use-patches unset (auto): patches {'on' if data.use_patches else 'off'}, P={data.patches_per_frame}."


def train_val_rows(data: FeatureData, val_fraction: float = 0.1, seed: int = 0,
                   log: Callable[[str], None] = print, train_split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) of `data`: its `train_split` rows and its "val" split (`train_split`
    "train" only), else `val_fraction` of the `train_split` rows carved with `seed`."""
    fs = data.feature_set
    pool = np.flatnonzero(data.split == train_split)
    if not len(pool):
        raise FeatureFileError(f"{fs.paths[0]}: the features read hold no {train_split!r} videos to train on.")
    if train_split == "train" and (data.split == "val").any():
        train_rows, val_rows = pool, np.flatnonzero(data.split == "val")
        log(f"features {fs.paths[0]}{' (+%d more)' % (len(fs.paths) - 1) if len(fs.paths) > 1 else ''}: "
            f"train {len(train_rows)}, val {len(val_rows)} videos.")
    else:
        labels = data.label.cpu().numpy()[pool]
        train_at, val_at = carve_validation(labels, val_fraction, seed)
        train_rows, val_rows = pool[train_at], pool[val_at]
        # The true share can exceed val_fraction: every class with 2+ videos gives at least one.
        classes = len(np.unique(labels))
        where = "train" if train_split == "train" else f"{train_split!r}"
        log(f"no 'val' split{'' if train_split == 'train' else ' used'} in {fs.paths[0]}: carved {len(val_rows)} of "
            f"{len(pool)} {where} videos as validation ({len(val_rows) / max(1, len(pool)):.0%}: --val-fraction "
            f"{val_fraction:g} of each of {classes} classes, at least 1 per class with 2+ videos; seed {seed}); "
            f"training on {len(train_rows)}.")
    if not len(train_rows):
        raise FeatureFileError(f"{fs.paths[0]}: no training videos left after carving validation.")
    return train_rows, val_rows
