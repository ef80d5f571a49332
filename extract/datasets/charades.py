"""Charades (Sigurdsson et al., 2016): multi-label, 157 action classes that are also the step vocabulary.

The annotation files are `Charades_v1_classes.txt` (`c000 Holding some clothes`), `Charades_v1_train.csv` and
`Charades_v1_test.csv` (`actions` like `c092 11.90 21.20;c147 0.00 12.60`, possibly empty); the videos are
`Charades_v1_480/<id>.mp4` (or the original-size `Charades_v1/`). As commonly unpacked, the CSVs sit in a
`Charades/` folder beside `Charades_v1_480/`, so ROOT may be the folder holding both, the `Charades/` folder or
the video folder: the annotations are looked for in ROOT, ROOT/Charades, then ROOT's parent (and its
Charades/), the videos in ROOT and its parent (`annotations=` / `--annotations` and `video_dir=` /
`--video-dir` override); the folders used are reported in the index notes. Class names are
lower-cased ("holding some clothes"). Every item has label -1, `labels` = `steps` = the classes present, and
the segments, with end times clipped to the video `length` (some annotations run past it).
"""
from __future__ import annotations

import csv
from pathlib import Path

from cmdcl.core.errors import DatasetError
from .base import DatasetIndex, SplitSpec, VideoItem, find_videos, make_index

SPLIT_FILES = {"train": "Charades_v1_train.csv", "test": "Charades_v1_test.csv"}
VIDEO_FOLDERS = ("Charades_v1_480", "Charades_v1")
REQUIRED_COLUMNS = ("id", "actions", "length")
ANNOTATION_FOLDER = "Charades"  # where the annotation zip unpacks
HEADER = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length"


def load(root: Path, splits: SplitSpec = None, *, annotations: str | Path | None = None,
         video_dir: str | Path | None = None) -> DatasetIndex:
    root = Path(root).expanduser().absolute()
    annotation_dir = find_annotations(root, annotations)
    folder = find_video_folder(root, video_dir)
    codes, class_names = read_classes(annotation_dir / "Charades_v1_classes.txt")
    notes = [f"annotations from {annotation_dir} (Charades_v1_classes.txt, {', '.join(SPLIT_FILES.values())}); "
             f"videos from {folder}"]
    on_disk = {path.stem: path for path in find_videos(folder)}
    items, seen = [], set()
    for split, name in SPLIT_FILES.items():
        for line, video_id, length, segments in read_split(annotation_dir / name, codes):
            if video_id in seen:
                raise DatasetError(f"{annotation_dir / name}:{line}: video {video_id} appears twice in the annotations")
            seen.add(video_id)
            if length is not None:
                segments = [(c, min(start, length), min(end, length)) for c, start, end in segments]
            present = sorted({c for c, _, _ in segments})
            items.append(VideoItem(video_id=video_id, path=str(on_disk.get(video_id, folder / f"{video_id}.mp4")),
                                   split=split, label=-1, labels=present, steps=present, segments=segments))
    return make_index("charades", root, items, sorted(set(on_disk) - seen), class_names, class_names, splits,
                      multilabel=True, notes=notes)


def find_annotations(root: Path, annotations: str | Path | None) -> Path:
    """The first usual place holding Charades_v1_classes.txt: ROOT, ROOT/Charades, ROOT/.., ROOT/../Charades."""
    if annotations is not None:
        candidates = [Path(annotations).expanduser().absolute()]
    else:
        candidates = [root, root / ANNOTATION_FOLDER, root.parent, root.parent / ANNOTATION_FOLDER]
    for folder in candidates:
        if (folder / "Charades_v1_classes.txt").is_file():
            return folder
    raise DatasetError(f"Charades class list Charades_v1_classes.txt not found in "
                       f"{', '.join(map(str, dict.fromkeys(candidates)))}; expected it with Charades_v1_train.csv "
                       f"and Charades_v1_test.csv", fix="pass the folder holding them as --annotations FOLDER")


def find_video_folder(root: Path, video_dir: str | Path | None) -> Path:
    """--video-dir, else ROOT itself when it is a video folder, else Charades_v1_480/ or Charades_v1/ in ROOT or
    its parent (ROOT may be the Charades/ annotation folder beside them)."""
    if video_dir is not None:
        folders = [Path(video_dir).expanduser().absolute()]
    elif root.name in VIDEO_FOLDERS:
        folders = [root]
    else:
        folders = [base / name for base in (root, root.parent) for name in VIDEO_FOLDERS]
    folder = next((f for f in folders if f.is_dir()), None)
    if folder is None:
        raise DatasetError(f"Charades videos not found: no folder {' or '.join(map(str, folders))}; "
                           f"expected Charades_v1_480/<id>.mp4", fix="pass the video folder as --video-dir")
    return folder


def read_classes(file: Path) -> tuple[dict[str, int], list[str]]:
    codes, names = {}, []
    for line, text in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        code, _, name = text.strip().partition(" ")
        if not text.strip():
            continue
        if not (code.startswith("c") and name.strip()) or code in codes:
            raise DatasetError(f"{file}:{line}: expected a new 'cNNN class name', got {text.strip()!r}")
        codes[code] = len(names)
        names.append(name.strip().lower())
    return codes, names


def read_split(file: Path, codes: dict[str, int]) -> list[tuple[int, str, float | None, list]]:
    """Rows of one split file as (line, id, length or None, [(class, start_s, end_s)])."""
    if not file.is_file():
        raise DatasetError(f"Charades annotation {file} not found; expected a CSV with columns {HEADER}")
    rows = []
    with open(file, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        absent = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise DatasetError(f"{file}:1: missing column {', '.join(absent)}; expected {HEADER}")
        try:
            for row in reader:
                where = f"{file}:{reader.line_num}"
                video_id = (row["id"] or "").strip()
                if not video_id:
                    raise DatasetError(f"{where}: empty id")
                rows.append((reader.line_num, video_id, parse_length(row["length"], where),
                             parse_actions(row["actions"] or "", codes, where)))
        except csv.Error as e:
            raise DatasetError(f"{file}:{reader.line_num}: malformed CSV ({e})") from None
    return rows


def parse_length(text: str | None, where: str) -> float | None:
    if not (text or "").strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"{where}: length {text!r} is not a number of seconds") from None


def parse_actions(text: str, codes: dict[str, int], where: str) -> list[tuple[int, float, float]]:
    """`c092 11.90 21.20;c147 0.00 12.60` -> [(92, 11.9, 21.2), (147, 0.0, 12.6)] (indices by class-file order)."""
    segments = []
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        parts = entry.split()
        try:
            if len(parts) != 3:
                raise ValueError
            code, start, end = parts[0], float(parts[1]), float(parts[2])
        except ValueError:
            raise DatasetError(f"{where}: action {entry!r}; expected 'cNNN start end' (seconds)") from None
        if code not in codes:
            raise DatasetError(f"{where}: action class {code} not in Charades_v1_classes.txt")
        segments.append((codes[code], start, end))
    return segments
