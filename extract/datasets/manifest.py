"""The `manifest` format: users' own videos, and the format the synthetic dataset is written in.

ROOT holds `manifest.csv` (or `manifest.jsonl`), `classes.txt` and optionally `steps.txt`; ROOT may also be
the manifest file itself. CSV columns: `video_id,path,split,label,labels,steps[,context]` where `labels` is
`;`-separated and `steps` is `;`-separated `name@start-end` (seconds) or bare `name` entries. JSONL rows use
the same keys with `labels` a list and `steps` a list of `{"step", "start", "end"}` objects or plain names.
The optional `context` is free text about the scene, used only to caption frames for `cmdcl pretrain-clip`.
The optional `boxes` names a box file (relative to ROOT): the annotated object's box per frame, `frame,x0,y0,x1,y1`
in pixels (extract/boxes.py); the optional `prop_boxes` one of objects with no part in the action (props),
`frame,object,x0,y0,x1,y1`. Optional `confounder:NAME` columns (JSONL: a `confounders` object) give each
video's value id (an integer >= 0; empty: unknown) of a context factor NAME, for `evaluate`'s leakage probe.
Labels and steps may be given by name or by index. Without `steps.txt` the step vocabulary is the sorted set
of step names used in the manifest. Video files under ROOT that no row names are reported as unannotated.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from cmdcl.core.errors import DatasetError
from .base import DatasetIndex, SplitSpec, VideoItem, absolute, find_videos, make_index

REQUIRED_COLUMNS = ("video_id", "path", "split")
CONFOUNDER_PREFIX = "confounder:"  # CSV columns confounder:NAME
Step = tuple[object, float | None, float | None]  # (name or index, start_s, end_s)


def load(root: Path, splits: SplitSpec = None, *, classes: str | Path | None = None,
         steps: str | Path | None = None) -> DatasetIndex:
    manifest_file = find_manifest(Path(root).expanduser().absolute())
    folder = manifest_file.parent
    classes_file = Path(classes) if classes else folder / "classes.txt"
    class_names = read_names(classes_file, "--classes")
    rows = read_jsonl(manifest_file) if manifest_file.suffix == ".jsonl" else read_csv(manifest_file)
    factors = list(dict.fromkeys(name for _, row in rows for name in row["confounders"]))

    steps_file = Path(steps) if steps else folder / "steps.txt"
    if steps or steps_file.is_file():
        step_names, steps_source = read_names(steps_file, "--steps"), steps_file
    else:  # no steps.txt: the vocabulary is the step names the manifest uses
        step_names, steps_source = sorted({str(s) for _, row in rows for s, _, _ in row["steps"]}), "the manifest"

    class_index = {n: i for i, n in enumerate(class_names)}
    step_index = {n: i for i, n in enumerate(step_names)}
    items, seen, multilabel = [], {}, False
    for line, row in rows:
        where = f"{manifest_file}:{line}"
        video_id = row["video_id"]
        if video_id in seen:
            raise DatasetError(f"{where}: duplicate video_id '{video_id}' (first on line {seen[video_id]})")
        seen[video_id] = line
        label = -1 if row["label"] is None else resolve(row["label"], class_index, "class", where, classes_file)
        labels = sorted({resolve(v, class_index, "class", where, classes_file) for v in row["labels"]})
        multilabel |= bool(labels) and row["label"] is None
        steps_present, segments = set(), []
        for step, start, end in row["steps"]:
            index = resolve(step, step_index, "step", where, steps_source)
            steps_present.add(index)
            if start is not None:
                if not 0 <= start <= end:
                    raise DatasetError(f"{where}: step '{step}' has times {start}-{end}; expected 0 <= start <= end")
                segments.append((index, start, end))
        boxes = box_file(row, "boxes", folder, where)
        items.append(VideoItem(
            video_id=video_id, path=absolute(row["path"], folder), split=row["split"], label=label,
            labels=labels or ([label] if label >= 0 else []), steps=sorted(steps_present),
            segments=sorted(segments, key=lambda s: (s[1], s[2], s[0])), context=row["context"],
            boxes=boxes, prop_boxes=box_file(row, "prop_boxes", folder, where),
            confounders={name: row["confounders"].get(name, -1) for name in factors},
        ))

    listed = {item.path for item in items}
    unannotated = [str(p.relative_to(folder)) for p in find_videos(folder) if os.path.abspath(p) not in listed]
    return make_index("manifest", folder, items, unannotated, class_names, step_names, splits, multilabel,
                      confounder_names=factors)


BOX_COLUMNS = {"boxes": "frame,x0,y0,x1,y1", "prop_boxes": "frame,object,x0,y0,x1,y1"}  # column -> file header


def box_file(row: dict, column: str, folder: Path, where: str) -> str:
    """The absolute path of the box file a row's `column` names, "" when empty; a DatasetError when missing."""
    if not row[column]:
        return ""
    path = absolute(row[column], folder)
    if not os.path.isfile(path):
        raise DatasetError(f"{where}: box file {path} not found; the {column} column names a CSV file "
                           f"({BOX_COLUMNS[column]}) relative to {folder}")
    return path


def find_manifest(root: Path) -> Path:
    if root.is_file():
        if root.suffix not in (".csv", ".jsonl"):
            raise DatasetError(f"manifest {root} must be a .csv or .jsonl file")
        return root
    found = [root / n for n in ("manifest.csv", "manifest.jsonl") if (root / n).is_file()]
    if not found:
        raise DatasetError(f"no manifest.csv or manifest.jsonl in {root}",
                           fix="write one (columns video_id,path,split,label,labels,steps) or pass the file itself")
    if len(found) > 1:
        raise DatasetError(f"both manifest.csv and manifest.jsonl in {root}; pass the one to use as the root")
    return found[0]


def read_names(path: Path, flag: str) -> list[str]:
    """One name per line, line i = index i; trailing blank lines are ignored, inner ones are an error. `flag` is
    the option that names the file, for the fix of a missing one."""
    if not path.is_file():
        raise DatasetError(f"vocabulary file {path} not found; expected one name per line (line i = index i)",
                           fix=f"write it beside the manifest or pass {flag} FILE")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while names and not names[-1]:
        names.pop()
    for i, name in enumerate(names):
        if not name:
            raise DatasetError(f"{path}:{i + 1}: blank line; expected one name per line (line i = index i)")
        if name in names[:i]:
            raise DatasetError(f"{path}:{i + 1}: duplicate name '{name}'")
    if not names:
        raise DatasetError(f"{path} is empty; expected one name per line")
    return names


def resolve(value: object, index: dict[str, int], kind: str, where: str, source: object) -> int:
    """A class/step given by name, or by an integer index (as int or digits)."""
    if isinstance(value, str):
        value = value.strip()
        if value in index:
            return index[value]
        if value.isdigit():
            value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(index):
        return value
    raise DatasetError(f"{where}: unknown {kind} {value!r}; expected a name from {source} "
                       f"or an index 0..{len(index) - 1}")


def read_csv(path: Path) -> list[tuple[int, dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        absent = [c for c in REQUIRED_COLUMNS if c not in columns]
        if not {"label", "labels"} & set(columns):
            absent.append("label (or labels)")
        if absent:
            raise DatasetError(f"{path}:1: missing column {', '.join(absent)}; header is {','.join(columns)!r}, "
                               f"expected video_id,path,split,label,labels,steps")
        rows = []
        try:
            for row in reader:
                where = f"{path}:{reader.line_num}"
                steps = [parse_step_text(entry, where) for entry in split_list(row.get("steps"))]
                factors = {c[len(CONFOUNDER_PREFIX):].strip(): row[c] for c in columns
                           if c.startswith(CONFOUNDER_PREFIX)}
                rows.append((reader.line_num, normalise(row, split_list(row.get("labels")), steps, where, factors)))
        except csv.Error as e:
            raise DatasetError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    return rows


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        where = f"{path}:{line}"
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{where}: not valid JSON ({e.msg}); expected one object per line") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected a JSON object with video_id, path, split, label")
        absent = [c for c in REQUIRED_COLUMNS if c not in row]
        if absent:
            raise DatasetError(f"{where}: missing key {', '.join(absent)}")
        labels = row.get("labels") or []
        labels = split_list(labels) if isinstance(labels, str) else list(labels)
        steps = row.get("steps") or []
        steps = [parse_step_text(s, where) for s in split_list(steps)] if isinstance(steps, str) else \
            [parse_step_object(s, where) for s in steps]
        factors = row.get("confounders") or {}
        if not isinstance(factors, dict):
            raise DatasetError(f"{where}: confounders {factors!r}; expected an object {{name: value id}}")
        rows.append((line, normalise(row, labels, steps, where, factors)))
    return rows


def normalise(row: dict, labels: list, steps: list[Step], where: str, factors: dict | None = None) -> dict:
    values = {key: str(row.get(key) or "").strip() for key in REQUIRED_COLUMNS}
    empty = [key for key, value in values.items() if not value]
    if empty:
        raise DatasetError(f"{where}: empty {', '.join(empty)}")
    label = row.get("label")
    label = None if label is None or (isinstance(label, str) and not label.strip()) else label
    return {**values, "label": label, "labels": labels, "steps": steps,
            "context": str(row.get("context") or "").strip(),
            **{column: str(row.get(column) or "").strip() for column in BOX_COLUMNS},
            "confounders": {str(name): factor_value(value, name, where) for name, value in (factors or {}).items()}}


def factor_value(value: object, name: str, where: str) -> int:
    """A context factor's value id: an integer >= 0, or -1 when empty (unknown)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return -1
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise DatasetError(f"{where}: confounder {name!r} value {value!r}; expected an integer id >= 0 or empty")
    return int(text)


def split_list(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(";") if part.strip()]


def parse_step_text(entry: str, where: str) -> Step:
    """`crack egg@0.00-3.50` -> ("crack egg", 0.0, 3.5); a bare `crack egg` has no times."""
    name, at, times = entry.rpartition("@")
    if not at:
        return entry.strip(), None, None
    start, dash, end = times.partition("-")
    try:
        if not dash:
            raise ValueError
        return name.strip(), float(start), float(end)
    except ValueError:
        raise DatasetError(f"{where}: step entry {entry!r}; expected name@start-end in seconds") from None


def parse_step_object(entry: object, where: str) -> Step:
    if isinstance(entry, (str, int)):
        return entry, None, None
    if not isinstance(entry, dict) or "step" not in entry:
        raise DatasetError(f"{where}: step entry {entry!r}; expected a name or {{\"step\", \"start\", \"end\"}}")
    if entry.get("start") is None and entry.get("end") is None:
        return entry["step"], None, None
    try:
        return entry["step"], float(entry["start"]), float(entry["end"])
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{where}: step entry {entry!r}; expected numeric start and end seconds") from None
