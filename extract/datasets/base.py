"""The one interface every dataset adapter returns: items, label and step vocabularies, split sizes."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


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
        return "\n".join(lines)
