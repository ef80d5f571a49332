"""The writer stage: one `VideoRecord` per video (or a `FailureRecord`) into the crash-safe `ShardWriter`,
the notes stored beside them, and the bookkeeping that makes a shard resumable.

`stored_rows` is the one definition of how F rows are stored: valid rows, then padding that repeats
the last valid row, in float16. Prediction (`video_features`) uses it too.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from cmdcl.core.errors import CmdclError
from cmdcl.core.provenance import RESUME_KEYS, first_mismatch
from cmdcl.core.store import FailureRecord, NoteRecord, ShardWriter, VideoRecord
from cmdcl.core.errors import DatasetError
from .batch_encoder import PendingVideo
from .boxes import sampled_boxes, sampled_object_boxes
from .datasets.base import VideoItem


def _multi_hot(indices: Iterable[int], size: int, what: str, video_id: str) -> np.ndarray:
    out = np.zeros(size, np.uint8)
    for i in indices:
        if not 0 <= i < size:
            raise CmdclError(f"video {video_id}: {what} index {i} outside the dataset's {size} {what}s.")
        out[i] = 1
    return out


def _pad_rows(valid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(V, ...) rows of the valid frames -> (F, ...) with padded rows copying the last valid row."""
    out = np.empty((len(mask), *valid.shape[1:]), dtype=valid.dtype)
    count = int(mask.sum())
    out[:count] = valid
    out[count:] = valid[count - 1]
    return out


def stored_rows(valid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(V, ...) float features of the valid frames -> (F, ...) float16, exactly as a shard stores them."""
    return _pad_rows(valid, mask).astype(np.float16)


def build_record(pending: PendingVideo, num_classes: int, num_steps: int,
                 input_image: tuple[int, str] | None = None) -> VideoRecord:
    """The stored record of an encoded video. `input_image` (image size, resize mode) of the model places the
    item's box files (if any) on its input image; without it boxes are not carried."""
    item, clip = pending.item, pending.clip
    mask = clip.sampled.mask
    boxes = prop_boxes = None
    if input_image is not None:
        geometry = (clip.sampled.indices, mask, int(clip.meta.height), int(clip.meta.width), *input_image)
        boxes = sampled_boxes(item.boxes, *geometry) if item.boxes else None
        prop_boxes = sampled_object_boxes(item.prop_boxes, *geometry) if item.prop_boxes else None
    return VideoRecord(
        video_id=item.video_id, split=item.split, path=item.path, label=int(item.label),
        labels=_multi_hot(item.labels, num_classes, "class", item.video_id),
        steps=_multi_hot(item.steps, num_steps, "step", item.video_id),
        fps=float(clip.meta.fps), duration=float(clip.meta.duration), num_frames=int(clip.meta.num_frames),
        frame_index=clip.sampled.indices.astype(np.int64),
        timestamps_ms=_pad_rows(np.asarray(clip.timestamps_ms, np.float64), mask),
        frame_mask=mask.astype(bool),
        features=stored_rows(pending.features, mask),
        patches=stored_rows(pending.patches, mask) if pending.patches is not None else None,
        partial=bool(clip.partial),
        segments=np.asarray(item.segments, np.float32).reshape(-1, 3),
        boxes=boxes, prop_boxes=prop_boxes, confounders=dict(item.confounders),
    )


def check_resumable(writer: ShardWriter, attrs: dict[str, Any]) -> None:
    """Refuse to append to part files that an earlier run wrote with different settings."""
    import h5py

    parts = sorted(writer.parts_dir.glob("part-*.h5"))
    if not parts:
        return
    with h5py.File(parts[0], "r") as f:
        old = dict(f.attrs)
    mismatch = first_mismatch(old, attrs, RESUME_KEYS, skip_missing=True)
    if mismatch:
        raise CmdclError(
            f"{writer.parts_dir}: an interrupted run wrote this shard with {mismatch.key}={mismatch.ours}, "
            f"this run has {mismatch.key}={mismatch.theirs}.",
            fix=f"re-run with the same settings to resume, or delete {writer.parts_dir} to start over.")


def done_marker(path: Path) -> dict[str, Any]:
    """The `.done` marker of a finished shard: {"videos": N, "failures": M} ({} when unreadable)."""
    try:
        return json.loads(path.with_name(path.name + ".done").read_text())
    except (OSError, ValueError):
        return {}


class ShardSink:
    """Writes finished videos and failures of one run, counting them in the run's summary."""

    def __init__(self, writer: ShardWriter, summary, log: Callable[[str], None], num_classes: int, num_steps: int,
                 input_image: tuple[int, str] | None = None):
        self.writer, self.summary, self.log = writer, summary, log
        self.num_classes, self.num_steps = num_classes, num_steps
        self.input_image = input_image  # (image size, resize mode): where box files land on the model's input
        self.on_write: Callable[[], None] = lambda: None  # progress display, called after each video

    def todo(self, mine: Sequence[VideoItem], retry_failed: bool) -> list[VideoItem]:
        """The videos of `mine` that earlier runs of this shard neither stored nor (unless retried) failed."""
        summary, writer = self.summary, self.writer
        done_ids = writer.done_ids(include_failed=not retry_failed)
        todo = [item for item in mine if item.video_id not in done_ids]
        summary.resumed = len(mine) - len(todo)
        if retry_failed:
            summary.retried = len({item.video_id for item in todo} & (writer.done_ids() - done_ids))
        return todo

    def video(self, pending: PendingVideo) -> None:
        """Store an encoded video, its notes first: a part file never holds a video without its notes."""
        start = time.perf_counter()
        try:
            record = build_record(pending, self.num_classes, self.num_steps, self.input_image)
        except DatasetError as exc:  # a malformed box file fails its video, not the run
            self.summary.write_s += time.perf_counter() - start
            self.failure(pending.item, "boxes", exc.one_line())
            return
        for kind, text in pending.clip.notes:
            note = NoteRecord(record.video_id, record.path, kind, text)
            self.writer.add_note(note)
            self.summary.notes.append(note)
            if kind == "partial":
                self.log(f"PARTIAL {record.video_id} {text}")
        self.writer.add(record)
        self.summary.extracted += 1
        self.summary.partial += int(record.partial)
        self.summary.frames += int(record.frame_mask.sum())
        self._done(start)

    def failure(self, item: VideoItem, stage: str, error: str) -> None:
        start = time.perf_counter()
        failure = FailureRecord(item.video_id, item.path, stage, error)
        self.writer.add_failure(failure)
        self.summary.failures.append(failure)
        self.summary.failed += 1
        self.log(f"FAILED {failure.video_id} [{failure.stage}] {failure.error}")
        self._done(start)

    def _done(self, start: float) -> None:
        self.summary.write_s += time.perf_counter() - start
        self.on_write()

    def finalize(self) -> None:
        start = time.perf_counter()
        self.writer.finalize()
        self.summary.write_s += time.perf_counter() - start
