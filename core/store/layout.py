"""The store's layout in code: format version, per-video columns, the records the writer takes and the reader
gives back, the text bank, and the attribute conventions (docs/FORMAT.md describes the same layout)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

FORMAT_VERSION = 1

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
# Optional groups (docs/FORMAT.md), absent from files whose dataset has no such annotation:
BOXES_DATASET = "boxes/xyxy"  # (N, F, 4) float32 [x0, y0, x1, y1] in [0, 1] of the model's input image, NaN: no box
PROP_BOXES_DATASET = "boxes/props_xyxy"  # (N, F, M, 4) float32: the same for M objects with no part in the action
CONFOUNDER_NAMES = "confounders/names"  # (K,) str: the context factors
CONFOUNDER_VALUES = "confounders/values"  # (N, K) int32: each video's value of each factor, -1 unknown


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
    # (F, 4) float32 box of the annotated object in each sampled frame (BOXES_DATASET), None: no box annotation
    boxes: np.ndarray | None = None
    # (F, M, 4) float32 boxes of M props (objects with no part in the action; PROP_BOXES_DATASET), None: none
    prop_boxes: np.ndarray | None = None
    confounders: dict[str, int] = field(default_factory=dict)  # context factor -> value id (-1 unknown)


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
    # The dataset's own id of each class / step (COIN: step ids 1..778 at indices 0..777); None where the
    # index is the id (every file written before these existed, every dataset but COIN).
    class_ids: list[int] | None = None
    step_ids: list[int] | None = None

    def write(self, group: h5py.Group) -> None:
        group.create_dataset("class_names", data=np.array(self.class_names, dtype=object), dtype=STR)
        group.create_dataset("class_embeddings", data=np.asarray(self.class_embeddings, np.float32))
        group.create_dataset("step_names", data=np.array(self.step_names, dtype=object), dtype=STR)
        group.create_dataset("step_embeddings", data=np.asarray(self.step_embeddings, np.float32))
        group.create_dataset("templates", data=np.array(self.templates, dtype=object), dtype=STR)
        group.create_dataset("truncated", data=np.array(self.truncated, dtype=object), dtype=STR)
        for name, ids in (("class_ids", self.class_ids), ("step_ids", self.step_ids)):
            if ids is not None:
                group.create_dataset(name, data=np.asarray(ids, np.int64).reshape(-1))

    @classmethod
    def read(cls, group: h5py.Group) -> "TextBank":
        return cls(
            class_names=_strings(group["class_names"]),
            class_embeddings=group["class_embeddings"][()],
            step_names=_strings(group["step_names"]),
            step_embeddings=group["step_embeddings"][()],
            templates=_strings(group["templates"]),
            truncated=_strings(group["truncated"]) if "truncated" in group else [],
            class_ids=[int(i) for i in group["class_ids"][()]] if "class_ids" in group else None,
            step_ids=[int(i) for i in group["step_ids"][()]] if "step_ids" in group else None,
        )

    def same_vocabulary(self, other: "TextBank") -> bool:
        """The same label texts for the same ids (files to be read or merged together must agree)."""
        return (self.class_names, self.step_names, self.class_ids, self.step_ids) == \
            (other.class_names, other.step_names, other.class_ids, other.step_ids)


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

