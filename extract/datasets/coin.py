"""COIN (Tang et al., 2019): `COIN.json` plus videos at `videos/<recipe_type>/<youtube_id>.<ext>` (or flat
`videos/<youtube_id>.<ext>`; any container extension).

Classes are the tasks ordered by `recipe_type` id, named readably ("AssembleBed" -> "assemble bed"); steps are
the step labels ordered by step id (already readable text). Subsets training/testing become train/test.
`annotation=` overrides the path of COIN.json.
"""
from __future__ import annotations

import json
from pathlib import Path

from cmdcl.core.errors import DatasetError
from cmdcl.extract.datasets.base import DatasetIndex, SplitSpec, VideoItem, find_videos, make_index, readable

SUBSETS = {"training": "train", "testing": "test"}


def load(root: Path, splits: SplitSpec = None, *, annotation: str | Path | None = None) -> DatasetIndex:
    root = Path(root).expanduser().absolute()
    file = Path(annotation) if annotation else root / "COIN.json"
    video_dir = root / "videos"
    if not file.is_file():
        raise DatasetError(f"COIN annotation {file} not found; expected COIN.json "
                           f"({{\"database\": {{id: {{recipe_type, class, subset, annotation}}}}}}) in {root}")
    if not video_dir.is_dir():
        raise DatasetError(f"COIN videos folder {video_dir} not found; expected videos/<recipe_type>/<id>.mp4")
    try:
        database = json.loads(file.read_text(encoding="utf-8"))["database"]
        if not isinstance(database, dict):
            raise TypeError
    except json.JSONDecodeError as e:
        raise DatasetError(f"{file}:{e.lineno}: not valid JSON ({e.msg})") from None
    except (KeyError, TypeError):
        raise DatasetError(f"{file}: expected an object {{\"database\": {{<youtube_id>: {{...}}}}}}") from None

    tasks: dict[int, str] = {}  # recipe_type -> task name
    step_labels: dict[int, str] = {}  # step id -> label
    videos = []  # (youtube_id, recipe_type, split, [(step id, start, end)])
    for video_id, entry in database.items():
        try:
            recipe = int(entry["recipe_type"])
            segments = [(int(a["id"]), float(a["segment"][0]), float(a["segment"][1])) for a in entry["annotation"]]
            for a in entry["annotation"]:
                claim(step_labels, int(a["id"]), str(a["label"]).strip(), f"{file}: video {video_id}: step id")
            claim(tasks, recipe, str(entry["class"]), f"{file}: video {video_id}: recipe_type")
            videos.append((video_id, recipe, SUBSETS.get(entry["subset"], entry["subset"]), segments))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise DatasetError(f"{file}: video {video_id}: missing or malformed field ({type(e).__name__}: {e}); "
                               f"expected recipe_type, class, subset, annotation [{{id, segment, label}}]") from None

    class_index = {recipe: i for i, recipe in enumerate(sorted(tasks))}
    step_index = {step: i for i, step in enumerate(sorted(step_labels))}
    on_disk = {path.stem: path for path in find_videos(video_dir)}
    items = []
    for video_id, recipe, split, segments in videos:
        path = on_disk.get(video_id, video_dir / str(recipe) / f"{video_id}.mp4")
        segments = [(step_index[step], start, end) for step, start, end in segments]
        items.append(VideoItem(video_id=video_id, path=str(path), split=split, label=class_index[recipe],
                               labels=[class_index[recipe]], steps=sorted({s for s, _, _ in segments}),
                               segments=segments))
    return make_index("coin", root, items, sorted(set(on_disk) - set(database)),
                      [readable(tasks[r]) for r in sorted(tasks)], [step_labels[s] for s in sorted(step_labels)],
                      splits)


def claim(names: dict[int, str], key: int, name: str, where: str) -> None:
    """Record that id `key` is called `name`; the same id with two names means a corrupt annotation file."""
    if names.setdefault(key, name) != name:
        raise DatasetError(f"{where} {key} is called both '{names[key]}' and '{name}'")
