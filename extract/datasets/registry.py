"""`load_dataset`: the one entry point over all adapters, plus the pieces the adapters share.

Every adapter module exposes `load(root, splits=None, **options) -> DatasetIndex` and ends by calling
`make_index`, so split selection, the missing/unannotated lists and sorting work the same everywhere.
Adapters are imported lazily (they import `make_index` from here, and the synthetic world may pull in
video-writing libraries that `cmdcl --help` must not load).
"""
from __future__ import annotations

import inspect
import os
import re
from importlib import import_module
from pathlib import Path
from typing import Callable, Iterable, Sequence

from cmdcl.core.errors import CmdclError, DatasetError
from cmdcl.extract.datasets.base import DatasetIndex, VideoItem

DATASETS = ("breakfast", "coin", "charades", "manifest", "synthetic")

LAYOUTS = {
    "breakfast": "BreakfastII_15fps_qvga_sync/<P>/<camera>/<P>_<activity>.avi and segmentation_coarse/ "
                 "(or the ms-tcn groundTruth/ + mapping.txt)",
    "coin": "COIN.json and videos/<recipe_type>/<youtube_id>.mp4",
    "charades": "Charades_v1_classes.txt, Charades_v1_train.csv, Charades_v1_test.csv and Charades_v1_480/<id>.mp4",
    "manifest": "manifest.csv (or manifest.jsonl) and classes.txt, or the manifest file itself",
    "synthetic": "a folder where the synthetic dataset is (or will be) generated",
}

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                              ".3gp", ".ogv", ".ts"})

SplitSpec = Sequence[str] | str | None


def load_dataset(name: str, root: str | Path, splits: SplitSpec = None, **options) -> DatasetIndex:
    """Read dataset `name` from `root` in its published layout; keep only `splits` ("train,test" or a list)."""
    if name not in DATASETS:
        raise CmdclError(f"unknown dataset '{name}'; valid names: {', '.join(DATASETS)}")
    root = Path(root).expanduser().absolute()
    if name == "synthetic":
        from cmdcl.extract.datasets.manifest import load as load_manifest
        from cmdcl.extract.datasets.synthetic import ensure_synthetic

        check_options(name, ensure_synthetic, options)
        index = load_manifest(ensure_synthetic(root, **options), splits)
        if splits is None:  # its "pretrain" split is for `cmdcl pretrain-clip` only: used when named
            from cmdcl.extract.datasets.synthetic import HEAD_SPLITS

            index.items = [item for item in index.items if item.split in HEAD_SPLITS]
        index.name = "synthetic"
        return index
    if not root.exists():
        raise DatasetError(f"{name} root {root} does not exist; expected {LAYOUTS[name]} there",
                           fix="pass the folder that holds the dataset")
    load = import_module(f"cmdcl.extract.datasets.{name}").load
    check_options(name, load, options)
    return load(root, splits, **options)


def check_options(name: str, function: Callable, options: dict) -> None:
    """Turn a misspelt adapter option into a one-line error instead of a TypeError."""
    params = inspect.signature(function).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p, spec in params.items() if spec.kind is spec.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise CmdclError(f"dataset {name} has no option {', '.join(unknown)}; "
                         f"its options are: {', '.join(accepted) or 'none'}")


def make_index(name: str, root: Path, annotated: list[VideoItem], unannotated: Iterable[str],
               class_names: list[str], step_names: list[str], splits: SplitSpec = None,
               multilabel: bool = False) -> DatasetIndex:
    """Assemble the index from every annotated video (present or not) and the video ids on disk but not annotated."""
    wanted = select_splits(splits, {item.split for item in annotated}, name)
    selected = [item for item in annotated if wanted is None or item.split in wanted]
    on_disk = {item.video_id: os.path.isfile(item.path) for item in selected}
    return DatasetIndex(
        name=name, root=Path(root),
        items=sorted((item for item in selected if on_disk[item.video_id]), key=lambda item: item.video_id),
        class_names=list(class_names), step_names=list(step_names), multilabel=multilabel,
        missing=sorted(video_id for video_id, present in on_disk.items() if not present),
        unannotated=sorted(set(unannotated)),
    )


def select_splits(splits: SplitSpec, present: set[str], name: str) -> set[str] | None:
    """Parse "train,test" or ["train", "test"]; None (or empty) means all splits."""
    if splits is None:
        return None
    names = {s.strip() for s in (splits.split(",") if isinstance(splits, str) else splits) if s.strip()}
    unknown = sorted(names - present)
    if unknown:
        raise DatasetError(f"{name}: unknown split {', '.join(unknown)}; "
                           f"splits present: {', '.join(sorted(present)) or 'none'}")
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
