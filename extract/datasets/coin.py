"""COIN (Tang et al., 2019): `COIN.json` plus videos at `videos/<recipe_type>/<youtube_id>.<ext>` (or flat
`videos/<youtube_id>.<ext>`; any container extension).

Vocabulary: COIN's own ids are the indices, whatever subset of COIN.json is present, so a partial file (or
one with gone videos removed) never shifts a label: class i is task `recipe_type` i (180 tasks), step j is
step id j (778 steps). Names come from the taxonomy CSV when there is one (`taxonomy=` / `--taxonomy`, or a
`taxonomy*.csv` in ROOT: the target_action_mapping sheet of COIN's taxonomy.xlsx saved as CSV, with task id,
task name, step id and step name columns), else from the entries of COIN.json; ids that neither names get a
placeholder ("coin task 17") and the index notes say how many.

Names: tasks readable ("AssembleBed" -> "assemble bed"); whitespace normalised ("remove  the tire" has a double
space in the real taxonomy). Some step texts belong to 2-3 step ids ("remove the tire" in several tasks): only
those get their task appended, "remove the tire (change tire)", so the text encoder tells them apart. The
notes list every changed text. Subsets training/testing become train/test. `annotation=` / `--annotation`
overrides the path of COIN.json, `video_dir=` / `--video-dir` the videos folder.
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

from cmdcl.core.errors import DatasetError
from cmdcl.extract.datasets.base import (DatasetIndex, SplitSpec, VideoItem, find_videos, make_index,
                                         readable)

SUBSETS = {"training": "train", "testing": "test"}
NUM_TASKS, NUM_STEPS = 180, 778  # the published vocabulary: ids 0..179 and 0..777
# Accepted header names (lower-cased, spaces and underscores removed) of the taxonomy CSV columns.
TAXONOMY_COLUMNS = {"task_id": ("targetid", "recipetype", "taskid"),
                    "task": ("targetlabel", "target", "task", "class", "taskname"),
                    "step_id": ("actionid", "stepid"),
                    "step": ("actionlabel", "action", "step", "stepname")}


class Vocabulary:
    """id -> name for tasks and steps, and step id -> task id, filled from the taxonomy and/or COIN.json."""

    def __init__(self) -> None:
        self.tasks: dict[int, str] = {}
        self.steps: dict[int, str] = {}
        self.step_task: dict[int, int] = {}
        self.changed: list[str] = []  # texts whose whitespace was normalised

    def claim(self, names: dict[int, str], key: int, name: str, where: str) -> None:
        """Record that id `key` is called `name`; the same id with two names means a corrupt annotation file."""
        clean = " ".join(name.split())
        if not clean:
            raise DatasetError(f"{where} {key} has an empty name")
        if clean != name.strip() and f"'{name}'" not in self.changed:
            self.changed.append(f"'{name}'")
        if names.setdefault(key, clean) != clean:
            raise DatasetError(f"{where} {key} is called both '{names[key]}' and '{clean}'")

    def add_missing(self, other: Vocabulary) -> None:
        for mine, theirs in ((self.tasks, other.tasks), (self.steps, other.steps), (self.step_task, other.step_task)):
            for key, value in theirs.items():
                mine.setdefault(key, value)
        self.changed.extend(c for c in other.changed if c not in self.changed)

    def names(self) -> tuple[list[str], list[str], list[str]]:
        """Class names, step names (shared texts made unique) and the notes saying what was filled or changed."""
        tasks = {key: readable(name) for key, name in self.tasks.items()}
        num_tasks, num_steps = max([NUM_TASKS - 1, *tasks]) + 1, max([NUM_STEPS - 1, *self.steps]) + 1
        class_names = [tasks.get(i, f"coin task {i}") for i in range(num_tasks)]
        step_names = [self.steps.get(j, f"coin step {j}") for j in range(num_steps)]
        notes = []
        unnamed = (num_tasks - len(tasks), num_steps - len(self.steps))
        if any(unnamed):
            notes.append(f"{unnamed[0]} task ids and {unnamed[1]} step ids are named neither by a taxonomy nor by "
                         f"COIN.json: placeholders 'coin task <id>' / 'coin step <id>' keep every id its index "
                         f"(pass --taxonomy FILE for the real names)")
        by_text = defaultdict(list)
        for step, text in self.steps.items():
            by_text[text].append(step)
        renamed = []
        for text, steps in sorted(by_text.items()):
            if len(steps) > 1:
                for step in steps:
                    task = self.step_task.get(step)
                    step_names[step] = f"{text} ({tasks[task]})" if task in tasks else f"{text} (step {step})"
                    renamed.append(f"{step}: '{step_names[step]}'")
        if len(set(step_names)) != len(step_names):  # two ids of one text under one task: number them instead
            for text, steps in by_text.items():
                for step in steps if len(steps) > 1 else ():
                    step_names[step] = f"{text} (step {step})"
        if renamed:
            notes.append(f"{len(renamed)} step ids share a text with another id; their task was appended: "
                         + ", ".join(renamed))
        if self.changed:
            notes.append(f"whitespace normalised in {len(self.changed)} names: {', '.join(self.changed)}")
        return class_names, step_names, notes


def load(root: Path, splits: SplitSpec = None, *, annotation: str | Path | None = None,
         taxonomy: str | Path | None = None, video_dir: str | Path | None = None) -> DatasetIndex:
    root = Path(root).expanduser().absolute()
    file = Path(annotation).expanduser().absolute() if annotation else root / "COIN.json"
    video_dir = Path(video_dir).expanduser().absolute() if video_dir else root / "videos"
    if not file.is_file():
        raise DatasetError(f"COIN annotation {file} not found; expected COIN.json "
                           f"({{\"database\": {{id: {{recipe_type, class, subset, annotation}}}}}}) in {root}",
                           fix="pass --annotation FILE")
    if not video_dir.is_dir():
        raise DatasetError(f"COIN videos folder {video_dir} not found; expected videos/<recipe_type>/<id>.mp4",
                           fix="pass --video-dir FOLDER")
    vocabulary, from_json = Vocabulary(), Vocabulary()
    taxonomy_file = find_taxonomy(root, taxonomy)
    if taxonomy_file is not None:
        read_taxonomy(taxonomy_file, vocabulary)
    videos = read_database(file, from_json)
    vocabulary.add_missing(from_json)  # the taxonomy's names win; COIN.json names what it does not
    class_names, step_names, notes = vocabulary.names()
    notes.insert(0, f"annotations from {file}; names from " + (f"{taxonomy_file} and COIN.json" if taxonomy_file
                                                                  else "COIN.json (no taxonomy CSV)"))
    on_disk = {path.stem: path for path in find_videos(video_dir)}
    items = []
    for video_id, recipe, split, segments in videos:
        path = on_disk.get(video_id, video_dir / str(recipe) / f"{video_id}.mp4")
        items.append(VideoItem(video_id=video_id, path=str(path), split=split, label=recipe, labels=[recipe],
                               steps=sorted({s for s, _, _ in segments}), segments=segments))
    return make_index("coin", root, items, sorted(set(on_disk) - {v[0] for v in videos}), class_names, step_names,
                      splits, notes=notes)


def read_database(file: Path, vocabulary: Vocabulary) -> list[tuple[str, int, str, list]]:
    """COIN.json as (youtube_id, recipe_type, split, [(step id, start, end)]); names go into `vocabulary`."""
    try:
        database = json.loads(file.read_text(encoding="utf-8"))["database"]
        if not isinstance(database, dict):
            raise TypeError
    except json.JSONDecodeError as e:
        raise DatasetError(f"{file}:{e.lineno}: not valid JSON ({e.msg})") from None
    except (KeyError, TypeError):
        raise DatasetError(f"{file}: expected an object {{\"database\": {{<youtube_id>: {{...}}}}}}") from None
    videos = []
    for video_id, entry in database.items():
        try:
            recipe = int(entry["recipe_type"])
            segments = [(int(a["id"]), float(a["segment"][0]), float(a["segment"][1])) for a in entry["annotation"]]
            for a in entry["annotation"]:
                vocabulary.claim(vocabulary.steps, int(a["id"]), str(a["label"]), f"{file}: video {video_id}: step id")
                vocabulary.step_task.setdefault(int(a["id"]), recipe)
            vocabulary.claim(vocabulary.tasks, recipe, str(entry["class"]), f"{file}: video {video_id}: recipe_type")
            videos.append((video_id, recipe, SUBSETS.get(entry["subset"], entry["subset"]), segments))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise DatasetError(f"{file}: video {video_id}: missing or malformed field ({type(e).__name__}: {e}); "
                               f"expected recipe_type, class, subset, annotation [{{id, segment, label}}]") from None
        if recipe < 0 or any(step < 0 for step, _, _ in segments):
            raise DatasetError(f"{file}: video {video_id}: negative recipe_type or step id")
    return videos


def find_taxonomy(root: Path, taxonomy: str | Path | None) -> Path | None:
    if taxonomy is not None:
        path = Path(taxonomy).expanduser().absolute()
        if not path.is_file():
            raise DatasetError(f"COIN taxonomy {path} not found", fix="pass --taxonomy FILE (a CSV) or leave it out")
        return path
    found = sorted(root.glob("taxonomy*.csv"))
    return found[0] if found else None


def read_taxonomy(file: Path, vocabulary: Vocabulary) -> None:
    """Rows of (task id, task name, step id, step name), in any column order, header names as in COIN's sheet."""
    with open(file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        header = {"".join(c.lower().split()).replace("_", ""): c for c in fields}
        columns = {key: next((header[n] for n in names if n in header), None)
                   for key, names in TAXONOMY_COLUMNS.items()}
        absent = [key for key, column in columns.items() if column is None]
        if absent:
            raise DatasetError(f"{file}:1: no column for {', '.join(absent)}; header is {','.join(fields)!r}, "
                               f"expected Target Id, Target Label, Action Id, Action Label")
        for row in reader:
            where = f"{file}:{reader.line_num}:"
            try:
                task, step = int(row[columns["task_id"]]), int(row[columns["step_id"]])
            except (TypeError, ValueError):
                raise DatasetError(f"{where} task and step ids must be integers") from None
            vocabulary.claim(vocabulary.tasks, task, row[columns["task"]] or "", f"{where} task id")
            vocabulary.claim(vocabulary.steps, step, row[columns["step"]] or "", f"{where} step id")
            vocabulary.step_task[step] = task
