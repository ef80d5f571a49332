"""COIN (Tang et al., 2019): `COIN.json` plus videos at `videos/<recipe_type>/<youtube_id>.<ext>` (or flat
`videos/<youtube_id>.<ext>`; any container extension).

Vocabulary: exactly COIN's published ids, in order. Task ids run 0..179 and step ids 1..778 (COIN's
taxonomy.xlsx); class i is the i-th task id and step j the j-th step id (so step id 1 is index 0), and the
real ids are kept beside the indices (`DatasetIndex.class_ids` / `step_ids`, stored as /text/class_ids and
/text/step_ids). A taxonomy that lists at least 180 task ids and 778 step ids defines the ids itself, whatever
its numbering; a smaller one (or none) leaves the published ranges. Whatever subset of COIN.json is present, a
label never shifts; an id outside the ranges is an error. Names come from the taxonomy (`taxonomy=` /
`--taxonomy`, or a `taxonomy*.xlsx` / `taxonomy*.csv` in ROOT: extract/datasets/coin_taxonomy.py), else from the
entries of COIN.json; ids that neither names get a placeholder ("coin step 17") and the notes say so.

Names: tasks readable ("AssembleBed" -> "assemble bed"); whitespace normalised ("remove  the tire" has a double
space in the real taxonomy). Every step text is made unique (case and whitespace ignored) with the smallest
change: a text shared by steps of several tasks gets the task appended, "remove the tire (change car tire)";
a text repeated within one task keeps it on its first step id and marks the later ones, "aim at the pin
(resize watch band, second time)". The notes list every changed text. Subsets training/testing become
train/test. `annotation=` / `--annotation` overrides the path of COIN.json, `video_dir=` / `--video-dir` the
videos folder.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from cmdcl.core.errors import DatasetError
from .base import DatasetIndex, SplitSpec, VideoItem, find_videos, make_index, readable
from .coin_taxonomy import find_taxonomy, read_taxonomy

SUBSETS = {"training": "train", "testing": "test"}
TASK_IDS, STEP_IDS = range(0, 180), range(1, 779)  # the published ids: tasks 0..179, steps 1..778
ORDINALS = ("second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")


def text_key(text: str) -> str:
    """What must differ between two step texts for the text encoder: case and whitespace do not count."""
    return " ".join(text.split()).casefold()


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


class CoinVocabulary:
    """The ids in index order and their names: what the feature store's vocabulary is made of."""

    def __init__(self, vocabulary: Vocabulary, taxonomy: Vocabulary | None, source: Path | None) -> None:
        self.task_ids = id_order(taxonomy.tasks if taxonomy else {}, TASK_IDS)
        self.step_ids = id_order(taxonomy.steps if taxonomy else {}, STEP_IDS)
        self.task_index = {task: i for i, task in enumerate(self.task_ids)}
        self.step_index = {step: j for j, step in enumerate(self.step_ids)}
        self.ids_from = {kind: "COIN's published ids" if ids == list(published) else f"the ids of taxonomy {source}"
                         for kind, ids, published in (("task", self.task_ids, TASK_IDS),
                                                      ("step", self.step_ids, STEP_IDS))}
        self.vocabulary = vocabulary

    def check(self, named: Vocabulary, file: Path) -> None:
        """Every id `file` names is one of the ids: an id outside them is a one-line error naming it."""
        for names, index, ids, kind in ((named.tasks, self.task_index, self.task_ids, "task"),
                                        (named.steps, self.step_index, self.step_ids, "step")):
            unknown = sorted(set(names) - set(index))
            if unknown:
                raise DatasetError(f"{file}: {kind} id {unknown[0]} ('{names[unknown[0]]}') is not one of "
                                   f"{self.ids_from[kind]} ({ids[0]}..{ids[-1]}, {len(ids)} ids)",
                                   fix="pass --taxonomy FILE: COIN's taxonomy.xlsx, which lists every id")

    def names(self) -> tuple[list[str], list[str], list[str]]:
        """Class names, step names (made unique) and the notes saying what was filled or changed."""
        v = self.vocabulary
        tasks = {key: readable(name) for key, name in v.tasks.items()}
        class_names = [tasks.get(i, f"coin task {i}") for i in self.task_ids]
        texts, renamed = unique_step_texts(v.steps, v.step_task, tasks)
        step_names = [texts.get(j, f"coin step {j}") for j in self.step_ids]
        notes = []
        unnamed = (len(self.task_ids) - len(set(tasks) & set(self.task_ids)),
                   len(self.step_ids) - len(set(v.steps) & set(self.step_ids)))
        if any(unnamed):
            notes.append(f"{unnamed[0]} task ids and {unnamed[1]} step ids are named neither by a taxonomy nor by "
                         f"COIN.json: placeholders 'coin task <id>' / 'coin step <id>' keep every id at its index "
                         f"(pass --taxonomy taxonomy.xlsx, COIN's published file, for the real names)")
        if renamed:
            notes.append(f"{len(renamed)} step texts were made unique: " + ", ".join(renamed))
        if v.changed:
            notes.append(f"whitespace normalised in {len(v.changed)} names: {', '.join(v.changed)}")
        return class_names, step_names, notes


def id_order(named: dict[int, str], published: range) -> list[int]:
    """The ids in index order: a taxonomy's own when it is complete (any numbering), else the published range."""
    return sorted(named) if len(named) >= len(published) else list(published)


def unique_step_texts(steps: dict[int, str], step_task: dict[int, int],
                      tasks: dict[int, str]) -> tuple[dict[int, str], list[str]]:
    """Step id -> a text no other step has (case and whitespace ignored), changing as little as tells them
    apart; and the list of changes ("250: 'aim at the pin (resize watch band, second time)'")."""
    groups: dict[str, list[int]] = defaultdict(list)
    for step in sorted(steps):
        groups[text_key(steps[step])].append(step)
    texts, changed = dict(steps), []
    for ids in groups.values():
        if len(ids) < 2:
            continue
        several_tasks = len({step_task.get(step) for step in ids}) > 1
        seen: dict[int | None, int] = defaultdict(int)
        for step in ids:
            task = step_task.get(step)
            seen[task] += 1
            marks = [tasks.get(task, f"task {task}")] if several_tasks and task is not None else []
            if seen[task] > 1 or (several_tasks and task is None):
                nth = seen[task] - 2
                marks.append(f"{ORDINALS[nth]} time" if 0 <= nth < len(ORDINALS) else f"step {step}")
            if marks:
                texts[step] = f"{steps[step]} ({', '.join(marks)})"
                changed.append(f"{step}: '{texts[step]}'")
    owner: dict[str, int] = {}
    for step in sorted(texts):  # a changed text that meets another step's text: the step id decides
        if text_key(texts[step]) in owner:
            texts[step] = f"{texts[step]} (step {step})"
            changed.append(f"{step}: '{texts[step]}'")
        owner[text_key(texts[step])] = step
    return texts, changed


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
    taxonomy_file = find_taxonomy(root, taxonomy)
    vocabulary, from_json = taxonomy_vocabulary(taxonomy_file), Vocabulary()
    taxonomy_ids = Vocabulary()
    taxonomy_ids.add_missing(vocabulary)  # the ids the taxonomy lists, before COIN.json adds its own
    videos = read_database(file, from_json)
    vocabulary.add_missing(from_json)  # the taxonomy's names win; COIN.json names what it does not
    coin = CoinVocabulary(vocabulary, taxonomy_ids if taxonomy_file else None, taxonomy_file)
    for named, source in ((from_json, file), (taxonomy_ids, taxonomy_file)):
        coin.check(named, source)
    class_names, step_names, notes = coin.names()
    notes.insert(0, f"annotations from {file}; names from " + (f"{taxonomy_file} and COIN.json" if taxonomy_file
                                                                  else "COIN.json (no taxonomy)"))
    on_disk = {path.stem: path for path in find_videos(video_dir)}
    items = []
    for video_id, recipe, split, segments in videos:
        path = on_disk.get(video_id, video_dir / str(recipe) / f"{video_id}.mp4")
        label = coin.task_index[recipe]
        indexed = [(coin.step_index[step], start, end) for step, start, end in segments]
        items.append(VideoItem(video_id=video_id, path=str(path), split=split, label=label, labels=[label],
                               steps=sorted({s for s, _, _ in indexed}), segments=indexed))
    return make_index("coin", root, items, sorted(set(on_disk) - {v[0] for v in videos}), class_names, step_names,
                      splits, notes=notes, class_ids=coin.task_ids, step_ids=coin.step_ids)


def taxonomy_vocabulary(file: Path | None) -> Vocabulary:
    """The taxonomy's names and step -> task mapping (empty without a taxonomy)."""
    vocabulary = Vocabulary()
    for row in read_taxonomy(file) if file is not None else ():
        vocabulary.claim(vocabulary.tasks, row.task_id, row.task, f"{row.where} task id")
        vocabulary.claim(vocabulary.steps, row.step_id, row.step, f"{row.where} step id")
        vocabulary.step_task[row.step_id] = row.task_id
    return vocabulary


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
