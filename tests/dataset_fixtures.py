"""Write small dataset trees in the published layouts: one `write_<name>` per entry of the dataset table
(extract/datasets/registry.py: DATASETS), which the contract tests (tests/test_dataset_contract.py) find by name.

Each builder returns the ROOT to pass to `load_dataset` (or `(ROOT, load options)`, when the tree needs
options to load) and creates every video with `write_video(path)`
(default: an empty file, enough for the adapters, which only check existence; end-to-end tests pass a
function that writes a real tiny video). Each tree has one annotated video missing on disk and one video
file on disk that no annotation names (the synthetic world, generated on load, has neither).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

VideoWriter = Callable[[Path], None]

# Breakfast: annotation name -> coarse segments (1-based inclusive frames at 15 fps, raw labels).
BREAKFAST_SEGMENTS = {
    "P03_cam01_P03_cereals": [(1, 30, "SIL"), (31, 150, "take_bowl"), (151, 300, "pour_cereals"),
                              (301, 420, "pour_milk"), (421, 450, "SIL")],
    "P03_stereo01_P03_cereals": [(1, 45, "SIL"), (46, 200, "take_bowl"), (201, 330, "pour_cereals"),
                                 (331, 360, "SIL")],
    "P16_webcam01_P16_friedegg": [(1, 15, "SIL"), (16, 240, "crack_egg"), (241, 400, "fry_egg"),
                                  (401, 435, "add_saltnpepper"), (436, 500, "put_egg2plate")],
    "P47_cam02_P47_tea": [(1, 100, "take_cup"), (101, 250, "add_teabag"), (251, 400, "pour_water")],
    "P47_cam01_P47_tea": [(1, 90, "take_cup"), (91, 240, "add_teabag"), (241, 390, "pour_water")],  # no video
    "P54_cam01_P54_salat": [(1, 60, "SIL"), (61, 300, "cut_fruit"), (301, 420, "put_fruit2bowl"),
                            (421, 510, "stir_fruit"), (511, 540, "SIL")],
}
BREAKFAST_VIDEOS = ["P03/cam01/P03_cereals.avi", "P03/stereo/P03_cereals_ch0.avi", "P03/stereo/P03_cereals_ch1.avi",
                    "P16/webcam01/P16_friedegg.avi", "P47/cam02/P47_tea.avi", "P54/cam01/P54_salat.avi",
                    "P16/cam02/P16_milk.avi"]  # the last one has no annotation

COIN_DATABASE = {
    "vidA01": {"recipe_type": 12, "class": "AssembleBed", "subset": "training", "annotation": [
        {"id": "45", "segment": [2.0, 10.5], "label": "put the bed frame together"},
        {"id": "46", "segment": [11.0, 20.0], "label": "install the bed board"}]},
    "vidA02": {"recipe_type": 12, "class": "AssembleBed", "subset": "training", "annotation": [
        {"id": "46", "segment": [0.5, 8.0], "label": "install the bed board"}]},
    "vidB01": {"recipe_type": 5, "class": "MakeCoffee", "subset": "training", "annotation": [
        {"id": "10", "segment": [1.0, 5.0], "label": "grind the coffee beans"},
        {"id": "11", "segment": [5.0, 9.0], "label": "pour water"}]},
    "vidB02": {"recipe_type": 5, "class": "MakeCoffee", "subset": "testing", "annotation": [
        {"id": "11", "segment": [3.0, 7.5], "label": "pour water"}]},
    "vidC01": {"recipe_type": 103, "class": "ChangeGuitarStrings", "subset": "testing", "annotation": [
        {"id": "300", "segment": [0.0, 12.0], "label": "remove the old strings"}]},
    "vidC02": {"recipe_type": 103, "class": "ChangeGuitarStrings", "subset": "training", "annotation": []},  # no video
}
COIN_VIDEOS = ["videos/12/vidA01.mp4", "videos/12/vidA02.mkv", "videos/5/vidB01.mp4", "videos/vidB02.webm",
               "videos/103/vidC01.mp4", "videos/12/zzUnknown.mp4"]  # flat vidB02; zzUnknown is not annotated

# Quirks of the real COIN files: "remove the tire" is the text of two step ids in two tasks, one text has a
# double space, and a partial COIN.json (these entries only) must keep recipe_type 131 as label 131 and step id
# 600 as step index 599 (step ids start at 1).
COIN_QUIRKS = {
    "tireA01": {"recipe_type": 131, "class": "ChangeCarTire", "subset": "training", "annotation": [
        {"id": "600", "segment": [0.0, 5.0], "label": "remove the tire"},
        {"id": "601", "segment": [5.0, 9.0], "label": "install  the new tire"}]},
    "bikeB01": {"recipe_type": 60, "class": "PatchBikeInnerTube", "subset": "testing", "annotation": [
        {"id": "270", "segment": [1.0, 4.0], "label": "remove the tire"}]},
}
COIN_QUIRK_VIDEOS = ["videos/131/tireA01.mp4", "videos/60/bikeB01.mp4"]
# The taxonomy CSV (target_action_mapping sheet of COIN's taxonomy.xlsx): it names ids no video of the partial
# COIN.json uses (task 7, step 30) and has the shared text of the real one.
COIN_TAXONOMY = [("Vehicle", 131, "ChangeCarTire", 600, "remove the tire"),
                 ("Vehicle", 131, "ChangeCarTire", 601, "install  the new tire"),
                 ("Vehicle", 60, "PatchBikeInnerTube", 270, "remove the tire"),
                 ("Vehicle", 60, "PatchBikeInnerTube", 271, "glue the patch"),
                 ("Dish", 7, "MakeSalad", 30, "cut the lettuce")]

# The shape of COIN's published taxonomy.xlsx (sheet target_action_mapping): 180 tasks with ids 0..179, 778 steps
# with ids 1..778, and texts repeated within one task (250/252, 251/253, 225/228 as in the real file).
COIN_TAXONOMY_QUIRKS = {250: (170, "ResizeWatchBand", "aim at the pin"),
                        251: (170, "ResizeWatchBand", "push the pin out"),
                        252: (170, "ResizeWatchBand", "aim at the pin"),
                        253: (170, "ResizeWatchBand", "push the pin out"),
                        225: (171, "CutAndRestoreRopeTrick", "show the whole rope again"),
                        228: (171, "CutAndRestoreRopeTrick", "show the whole  rope again")}


def coin_published_taxonomy() -> list[tuple]:
    """778 rows (domain, task id, task, step id, step) agreeing with COIN_DATABASE, COIN_QUIRKS and COIN_TAXONOMY."""
    named = {step: (task, label, text) for _, task, label, step, text in COIN_TAXONOMY}
    for entries in (COIN_DATABASE, COIN_QUIRKS):
        for entry in entries.values():
            for a in entry["annotation"]:
                named[int(a["id"])] = (entry["recipe_type"], entry["class"], a["label"])
    named.update(COIN_TAXONOMY_QUIRKS)
    task_names = {task: label for task, label, _ in named.values()}
    rows = []
    for step in range(1, 779):
        default_task = (step - 1) * 180 // 778
        task, _, text = named.get(step, (default_task, None, f"action {step} of task {default_task}"))
        rows.append(("Domain", task, task_names.get(task, f"Task{task}"), step, text))
    assert {row[1] for row in rows} >= set(range(180)) - set(task_names)
    return rows


def write_coin_taxonomy(path: Path, rows: list[tuple]) -> Path:
    """The taxonomy as COIN publishes it (.xlsx, sheet target_action_mapping after a first sheet) or as CSV."""
    header = ["Domains", "Target Id", "Target Label", "Action Id", "Action Label"]
    if path.suffix == ".xlsx":
        import openpyxl

        book = openpyxl.Workbook()
        book.active.title = "domain_target_mapping"  # the published file has other sheets first
        sheet = book.create_sheet("target_action_mapping")
        for row in [header, *rows]:
            sheet.append(list(row))
        book.save(path)
    else:
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    return path


CHARADES_CLASSES = ["c000 Holding some clothes", "c001 Putting clothes somewhere",
                    "c002 Taking some clothes from somewhere", "c003 Throwing clothes somewhere",
                    "c004 Tidying some clothes", "c005 Washing some clothes"]
CHARADES_COLUMNS = ["id", "subject", "scene", "quality", "relevance", "verified", "script", "objects",
                    "descriptions", "actions", "length"]
CHARADES_ROWS = {  # id -> (actions, length); ZZMIS has no video
    "train": {"46GP8": ("c002 12.60 18.40;c000 0.00 30.00;c004 11.90 21.20", "24.83"), "N11GT": ("", "17.00"),
              "0A8CF": ("c003 3.00 7.10", "32.50"), "ZZMIS": ("c001 1.00 4.00", "20.00")},
    "test": {"YSKX3": ("c001 0.00 8.20;c005 5.10 9.90", "29.00"), "5UA8E": ("c004 2.00 31.00", "30.04")},
}

MANIFEST_CLASSES = ["make pancake", "fry egg", "brew tea"]
MANIFEST_STEPS = ["crack egg", "stir pot", "pour water", "flip pancake"]


def touch(path: Path) -> None:
    path.touch()


def _videos(folder: Path, relative_paths: list[str], write_video: VideoWriter | None) -> None:
    for relative in relative_paths:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        (write_video or touch)(path)


def write_breakfast(root: Path, *, layout: str = "coarse", write_video: VideoWriter | None = None) -> Path:
    """Breakfast with `segmentation_coarse/` (layout="coarse"), ms-tcn `groundTruth/` + `mapping.txt` ("ms-tcn",
    0-based as published) or ms-tcn with the mapping edited for seq2seq code ("ms-tcn-edited": 1-based, with
    SOS and EOS added)."""
    root = Path(root)
    _videos(root / "BreakfastII_15fps_qvga_sync", BREAKFAST_VIDEOS, write_video)
    if layout == "coarse":
        for name, segments in BREAKFAST_SEGMENTS.items():
            file = root / "segmentation_coarse" / name.rsplit("_", 1)[1] / f"{name}.txt"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text("".join(f"{a}-{b} {label}  \n" for a, b, label in segments))
    elif layout in ("ms-tcn", "ms-tcn-edited"):
        labels = sorted({label for segments in BREAKFAST_SEGMENTS.values() for _, _, label in segments}, reverse=True)
        first = 0
        if layout == "ms-tcn-edited":
            labels, first = labels + ["SOS", "EOS"], 1
        (root / "mapping.txt").write_text("".join(f"{i} {label}\n" for i, label in enumerate(labels, first)))
        (root / "groundTruth").mkdir(parents=True, exist_ok=True)
        for name, segments in BREAKFAST_SEGMENTS.items():
            frames = [label for a, b, label in segments for _ in range(a, b + 1)]
            (root / "groundTruth" / f"{name}.txt").write_text("\n".join(frames) + "\n")
    else:
        raise ValueError(layout)
    return root


def write_coin(root: Path, *, write_video: VideoWriter | None = None, quirks: bool = False,
               taxonomy: bool | str = False) -> Path:
    """COIN.json + videos; `quirks`: only the COIN_QUIRKS entries (a partial file); `taxonomy`: also taxonomy.csv
    (True: the few COIN_TAXONOMY rows; "taxonomy.xlsx" / "taxonomy.csv": the published shape in that file)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries = COIN_QUIRKS if quirks else COIN_DATABASE
    database = {vid: {**entry, "url": f"https://www.youtube.com/watch?v={vid}", "duration": 60.0}
                for vid, entry in entries.items()}
    (root / "COIN.json").write_text(json.dumps({"database": database}, indent=1))
    if isinstance(taxonomy, str):
        write_coin_taxonomy(root / taxonomy, coin_published_taxonomy())
    elif taxonomy:
        with open(root / "taxonomy.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["Domains", "Target Id", "Target Label", "Action Id", "Action Label"])
            writer.writerows(COIN_TAXONOMY)
    _videos(root, COIN_QUIRK_VIDEOS if quirks else COIN_VIDEOS, write_video)
    return root


def write_charades(root: Path, *, write_video: VideoWriter | None = None, subfolder: bool = False) -> Path:
    """Charades; `subfolder`: as commonly unpacked, the annotation files in Charades/ beside Charades_v1_480/."""
    root = Path(root)
    videos = root / "Charades_v1_480"
    if subfolder:
        root = root / "Charades"
    root.mkdir(parents=True, exist_ok=True)
    (root / "Charades_v1_classes.txt").write_text("\n".join(CHARADES_CLASSES) + "\n")
    for split, rows in CHARADES_ROWS.items():
        with open(root / f"Charades_v1_{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CHARADES_COLUMNS)
            for video_id, (actions, length) in rows.items():
                writer.writerow([video_id, "HR43", "Kitchen", "6", "7", "Yes", "A person walks in, then \"sits\".",
                                 "clothes;door", "The person holds clothes,\nthen leaves.", actions, length])
    present = [vid for rows in CHARADES_ROWS.values() for vid in rows if vid != "ZZMIS"]
    _videos(videos, [f"{vid}.mp4" for vid in present] + ["EXTRA.mp4"], write_video)
    return videos.parent


def manifest_rows(root: Path) -> list[dict]:
    """The fixture manifest as JSONL-style rows (labels lists, step objects)."""
    return [
        {"video_id": "v000", "path": "videos/v000.mp4", "split": "train", "label": "make pancake",
         "steps": [{"step": "crack egg", "start": 0.0, "end": 3.5},
                   {"step": "flip pancake", "start": 3.5, "end": 9.25}]},
        {"video_id": "v001", "path": "videos/v001.mp4", "split": "train", "label": 1,
         "steps": ["stir pot", "crack egg"]},
        {"video_id": "v002", "path": str(Path(root).absolute() / "videos" / "v002.mp4"), "split": "test",
         "label": "brew tea", "steps": [{"step": "pour water", "start": 1.0, "end": 4.0}]},
        {"video_id": "v003", "path": "videos/v003.mp4", "split": "test_ood", "label": 0, "steps": []},
        {"video_id": "v004", "path": "videos/missing.mp4", "split": "train", "label": "brew tea"},  # no video
    ]


def write_manifest(root: Path, *, fmt: str = "csv", write_video: VideoWriter | None = None) -> Path:
    """A manifest dataset in CSV or JSONL (the same content), with classes.txt and steps.txt."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(MANIFEST_CLASSES) + "\n")
    (root / "steps.txt").write_text("\n".join(MANIFEST_STEPS) + "\n")
    rows = manifest_rows(root)
    if fmt == "jsonl":
        (root / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif fmt == "csv":
        with open(root / "manifest.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["video_id", "path", "split", "label", "labels", "steps"])
            for row in rows:
                steps = ";".join(s if isinstance(s, str) else f"{s['step']}@{s['start']:.2f}-{s['end']:.2f}"
                                 for s in row.get("steps", []))
                writer.writerow([row["video_id"], row["path"], row["split"], row["label"], "", steps])
    else:
        raise ValueError(fmt)
    _videos(root, ["videos/v000.mp4", "videos/v001.mp4", "videos/v002.mp4", "videos/v003.mp4", "videos/extra.mp4"],
            write_video)
    return root


# A synthetic world small enough for unit tests (15 videos of 3-4 s at 48 x 32, 4 fps).
SYNTHETIC_TINY = dict(num_activities=3, num_steps=6, min_script_steps=3, max_script_steps=4, train_per_class=2,
                      test_per_class=1, ood_per_class=1, pretrain_per_class=1, width=48, height=32, fps=4,
                      min_seconds=3.0, max_seconds=4.0)


def write_synthetic(root: Path, *, write_video: VideoWriter | None = None) -> tuple[Path, dict]:
    """The synthetic adapter generates its own tree (and real videos) on load: ROOT, and the load options that
    keep it tiny."""
    return Path(root), {**SYNTHETIC_TINY, "progress": False}
