"""The one interface every dataset adapter returns (items, label and step vocabularies, split sizes) and
the pieces the adapters share.

Every adapter module exposes `load(root, splits=None, **options) -> DatasetIndex` and ends by calling
`make_index`, so split selection, the missing/unannotated lists and sorting work the same everywhere.
Adapters import from here only; `registry` imports the adapters (so there is no import cycle).
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from cmdcl.core.errors import DatasetError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                              ".3gp", ".ogv", ".ts"})

SplitSpec = Sequence[str] | str | None
SPLIT_SCHEMES = {"breakfast": ("ltar", "s1", "s2", "s3", "s4")}  # dataset -> values of its --split-scheme


@dataclass
class VideoItem:
    video_id: str  # unique within the dataset; the key in the feature store
    path: str  # absolute path of the video file (may not exist: see DatasetIndex.missing)
    split: str  # "train", "test", "val", "test_ood", ...
    label: int  # index into class_names; -1 for multi-label datasets or unlabelled videos
    labels: list[int] = field(default_factory=list)  # class indices present (multi-label); [label] otherwise
    steps: list[int] = field(default_factory=list)  # atomic-action (step) indices present in the video
    segments: list[tuple[int, float, float]] = field(default_factory=list)  # (step, start_s, end_s)
    context: str = ""  # free text about the scene (manifest `context` column), for caption-style pre-training
    boxes: str = ""  # absolute path of the video's box file (manifest `boxes` column; extract/boxes.py), or ""
    prop_boxes: str = ""  # the same for its props' box file (manifest `prop_boxes` column), or ""
    confounders: dict[str, int] = field(default_factory=dict)  # context factor -> value id, -1 unknown


@dataclass
class DatasetIndex:
    name: str
    root: Path
    items: list[VideoItem]  # sorted by video_id, only the selected splits, only files present on disk
    class_names: list[str]
    step_names: list[str]
    multilabel: bool = False
    missing: list[str] = field(default_factory=list)  # in the annotations, not on disk
    unannotated: list[str] = field(default_factory=list)  # on disk, not in the annotations
    notes: list[str] = field(default_factory=list)  # what the adapter chose or changed (files used, renamed labels)
    # The dataset's own id of each class / step index, where it has ids that are not the indices (COIN's
    # step ids start at 1); empty: the index is the id. Stored as /text/class_ids, /text/step_ids.
    class_ids: list[int] = field(default_factory=list)
    step_ids: list[int] = field(default_factory=list)
    confounder_names: list[str] = field(default_factory=list)  # the context factors every item's `confounders` has

    def split_sizes(self) -> dict[str, int]:
        return dict(sorted(Counter(item.split for item in self.items).items()))

    def report(self, max_listed: int = 10) -> str:
        """Human-readable summary: split sizes and what is missing on disk (and the reverse)."""
        sizes = ", ".join(f"{k}={v}" for k, v in self.split_sizes().items()) or "no videos"
        lines = [f"{self.name} at {self.root}: {len(self.items)} videos ({sizes}), "
                 f"{len(self.class_names)} classes, {len(self.step_names)} steps"]
        for title, ids in (("missing on disk", self.missing), ("on disk but not annotated", self.unannotated)):
            if ids:
                shown = ", ".join(ids[:max_listed]) + (" ..." if len(ids) > max_listed else "")
                lines.append(f"  {len(ids)} {title}: {shown}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def make_index(name: str, root: Path, annotated: list[VideoItem], unannotated: Iterable[str],
               class_names: list[str], step_names: list[str], splits: SplitSpec = None,
               multilabel: bool = False, notes: Iterable[str] = (), class_ids: Sequence[int] = (),
               step_ids: Sequence[int] = (), confounder_names: Sequence[str] = ()) -> DatasetIndex:
    """Assemble the index from every annotated video (present or not) and the video ids on disk but not annotated."""
    wanted = select_splits(splits, {item.split for item in annotated}, name)
    selected = [item for item in annotated if wanted is None or item.split in wanted]
    on_disk = {item.video_id: os.path.isfile(item.path) for item in selected}
    return DatasetIndex(
        name=name, root=Path(root),
        items=sorted((item for item in selected if on_disk[item.video_id]), key=lambda item: item.video_id),
        class_names=list(class_names), step_names=list(step_names), multilabel=multilabel,
        missing=sorted(video_id for video_id, present in on_disk.items() if not present),
        unannotated=sorted(set(unannotated)), notes=list(notes), class_ids=list(class_ids), step_ids=list(step_ids),
        confounder_names=list(confounder_names),
    )


def select_splits(splits: SplitSpec, present: set[str], name: str) -> set[str] | None:
    """Parse "train,test" or ["train", "test"]; None (or empty) means all splits."""
    if splits is None:
        return None
    names = {s.strip() for s in (splits.split(",") if isinstance(splits, str) else splits) if s.strip()}
    unknown = sorted(names - present)
    if unknown:
        # Breakfast's s1..s4 are split *schemes* (which participants are test), not split names.
        schemes = [s for s in unknown if s in SPLIT_SCHEMES.get(name, ())]
        fix = (f"pass --split-scheme {schemes[0]} and --splits train,test" if schemes
               else f"pass --splits with names of {', '.join(sorted(present))}" if present else "leave out --splits")
        raise DatasetError(f"{name}: unknown split {', '.join(unknown)}; "
                           f"splits present: {', '.join(sorted(present)) or 'none'}", fix=fix)
    return names or None


def find_videos(folder: Path) -> list[Path]:
    """Every video file under `folder` (recursively), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())


def readable(name: str) -> str:
    """`take_bowl` -> "take bowl", `AssembleBed` -> "assemble bed", `put_toppingOnTop` -> "put topping on top"."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name.replace("_", " "))
    return " ".join(text.lower().split())


def absolute(path: str | Path, base: Path) -> str:
    """Absolute path of `path` relative to `base`, normalised but without resolving symlinks."""
    path = Path(path).expanduser()
    return os.path.abspath(path if path.is_absolute() else base / path)
