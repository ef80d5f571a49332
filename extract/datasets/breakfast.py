"""Breakfast (Kuehne et al., 2014) in its published layout.

Videos: `BreakfastII_15fps_qvga_sync/<P>/<camera>/<P>_<activity>.avi`; ROOT is that folder or the one holding
it (or `video_dir=` / `--video-dir`). The stereo camera has two files per recording, `<P>_<activity>_ch0.avi`
and `_ch1.avi`; option `stereo_channel` (`--stereo-channel`) picks "ch0" (default, as the 1,712-video
benchmark), "ch1" or "both".

Annotations are looked for in ROOT and next to the video folder (or in `annotations=` / `--annotations`):
`segmentation_coarse/<activity>/<P>_<cam>_<P>_<activity>.txt` with lines `start-end label` (1-based, inclusive
frame ranges at 15 fps), or, when that folder is absent, the ms-tcn layout `groundTruth/<video>.txt` (one
label per frame) + `mapping.txt`. Frames a..b become seconds ((a-1)/15, b/15) in both layouts.

Choices:
- video_id is the annotation name `<P>_<cam>_<P>_<activity>` (e.g. `P03_cam01_P03_cereals`). The stereo
  folder is `stereo` on disk and `stereo01` in annotation names; its ids always carry the channel,
  `P03_stereo01_P03_cereals_ch0`, whatever `stereo_channel` is, so ids never change meaning.
- Classes are the 10 activities in the order of their raw ids (`RAW_ACTIVITIES`), with readable names.
- Steps are the coarse actions, named readably (`take_bowl` -> "take bowl", `put_egg2plate` -> "put egg to
  plate") and sorted, so both annotation layouts give the same vocabulary. `SIL` (background) is excluded
  by default (47 steps): it occurs in every video, names no action, and would only add a constant text anchor.
  Option `background=True` (`--background`) keeps it as step 0, "background" (the published 48).
- An edited ms-tcn mapping.txt (e.g. 1-based, with SOS/EOS markers added) would silently add steps: entries
  that no groundTruth file uses and that are not action labels (lower-case words joined by `_`) are refused,
  naming the line.
- Items are the annotated videos; other video files on disk are listed as unannotated.
- Option `split` (`--split-scheme`): "ltar" (default; P03-P46 train, P47-P54 test, as in Timeception/ViS4mer/CMDCL)
  or the official "s1".."s4" (test participants P03-P15, P16-P28, P29-P41, P42-P54; the rest train).
"""
from __future__ import annotations

import re
from pathlib import Path

from cmdcl.core.errors import DatasetError
from .base import (SPLIT_SCHEMES, DatasetIndex, SplitSpec, VideoItem, find_videos,
                   make_index, readable)

FPS = 15.0
VIDEO_FOLDER = "BreakfastII_15fps_qvga_sync"
ACTIVITIES = {"cereals": "cereals", "coffee": "coffee", "friedegg": "fried egg", "juice": "juice", "milk": "milk",
              "pancake": "pancake", "salat": "salad", "sandwich": "sandwich", "scrambledegg": "scrambled egg",
              "tea": "tea"}
RAW_ACTIVITIES = sorted(ACTIVITIES)
BACKGROUND = "SIL"
# Split scheme (ltar, s1..s4) -> test participants.
TEST_PARTICIPANTS = dict(zip(SPLIT_SCHEMES["breakfast"], (range(47, 55), range(3, 16), range(16, 29), range(29, 42),
                                                          range(42, 55))))
STEREO_CHANNELS = {"ch0": ("ch0",), "ch1": ("ch1",), "both": ("ch0", "ch1")}
BACKGROUND_STEP = "background"
ACTION_LABEL = re.compile(r"[a-z][a-z0-9]*(?:_[a-zA-Z0-9]+)*")  # take_bowl, put_egg2plate, put_toppingOnTop
SEQUENCE_MARKERS = {"sos", "eos", "bos", "pad", "start", "end", "unk"}  # tokens seq2seq code adds to mappings
ANNOTATION_NAME = re.compile(r"(P\d+)_([a-z]+\d*)_(P\d+)_([a-z]+)")
VIDEO_NAME = re.compile(r"(P\d+)_([a-z]+)(?:_(ch[01]))?")

Segment = tuple[str, float, float]  # (raw step label, start_s, end_s)


def load(root: Path, splits: SplitSpec = None, *, split: str = "ltar", stereo_channel: str = "ch0",
         annotations: str | Path | None = None, video_dir: str | Path | None = None,
         background: bool = False) -> DatasetIndex:
    if split not in TEST_PARTICIPANTS:
        raise DatasetError(f"breakfast split '{split}' unknown; choose one of {', '.join(TEST_PARTICIPANTS)}",
                           fix="pass --split-scheme ltar (or s1..s4)")
    if stereo_channel not in STEREO_CHANNELS:
        raise DatasetError(f"breakfast stereo_channel '{stereo_channel}' unknown; choose ch0, ch1 or both",
                           fix="pass --stereo-channel ch0, ch1 or both")
    root = Path(root).expanduser().absolute()
    if video_dir is not None:
        video_dir = Path(video_dir).expanduser().absolute()
    else:
        video_dir = root if root.name == VIDEO_FOLDER else root / VIDEO_FOLDER
    if not video_dir.is_dir():
        raise DatasetError(f"breakfast videos not found: {video_dir} is not a folder; "
                           f"expected {VIDEO_FOLDER}/<P>/<camera>/<P>_<activity>.avi",
                           fix="pass the folder holding it as --root, or the video folder as --video-dir")
    annotation_dir = find_annotations(root, video_dir, annotations)
    if (annotation_dir / "segmentation_coarse").is_dir():
        annotated = read_coarse(annotation_dir / "segmentation_coarse")
        vocabulary = {label for segments in annotated.values() for label, _, _ in segments}
        source = annotation_dir / "segmentation_coarse"
    else:
        annotated, vocabulary = read_ms_tcn(annotation_dir)
        source = annotation_dir / "groundTruth"

    step_names = sorted({readable_step(label) for label in vocabulary if label != BACKGROUND})
    if background:
        step_names.insert(0, BACKGROUND_STEP)
    step_index = {name: i for i, name in enumerate(step_names)}
    class_index = {raw: i for i, raw in enumerate(RAW_ACTIVITIES)}
    channels = STEREO_CHANNELS[stereo_channel]

    items = []
    for name, segments in annotated.items():
        participant, camera, _, activity = ANNOTATION_NAME.fullmatch(name).groups()
        steps = [(step_index[readable_step(label)], start, end) for label, start, end in segments
                 if background or label != BACKGROUND]
        stereo = camera.startswith("stereo")
        for channel in channels if stereo else (None,):
            suffix = f"_{channel}" if channel else ""
            folder = video_dir / participant / ("stereo" if stereo else camera)
            test = int(participant[1:]) in TEST_PARTICIPANTS[split]
            items.append(VideoItem(
                video_id=name + suffix, path=str(folder / f"{participant}_{activity}{suffix}.avi"),
                split="test" if test else "train", label=class_index[activity], labels=[class_index[activity]],
                steps=sorted({s for s, _, _ in steps}), segments=steps,
            ))

    unannotated = unannotated_videos(video_dir, {item.video_id for item in items}, channels)
    kept = "SIL kept as step 0 'background'" if background else "SIL (background) dropped (--background keeps it)"
    notes = [f"annotations from {source}; {len(step_names)} steps, {kept}"]
    return make_index("breakfast", root, items, unannotated, [ACTIVITIES[a] for a in RAW_ACTIVITIES], step_names,
                      splits, notes=notes)


def unannotated_videos(video_dir: Path, known: set[str], channels: tuple[str, ...]) -> list[str]:
    """Video files no annotation names (as ids; as paths when the name does not fit the layout)."""
    unannotated = []
    for path in find_videos(video_dir):
        video_id = video_id_of(path, video_dir)
        if video_id is None:
            unannotated.append(str(path.relative_to(video_dir)))
        elif video_id not in known and (not video_id.endswith(("_ch0", "_ch1")) or video_id[-3:] in channels):
            unannotated.append(video_id)
    return unannotated


def find_annotations(root: Path, video_dir: Path, annotations: str | Path | None) -> Path:
    candidates = [Path(annotations)] if annotations else [root, video_dir.parent]
    for folder in candidates:
        if (folder / "segmentation_coarse").is_dir() or (folder / "groundTruth").is_dir():
            return folder
    raise DatasetError(f"breakfast annotations not found in {' or '.join(map(str, dict.fromkeys(candidates)))}; "
                       f"expected segmentation_coarse/<activity>/<P>_<cam>_<P>_<activity>.txt "
                       f"or the ms-tcn groundTruth/ + mapping.txt",
                       fix="pass --annotations FOLDER (annotations= in Python)")


def check_name(name: str, file: Path) -> None:
    match = ANNOTATION_NAME.fullmatch(name)
    if not match or match[4] not in ACTIVITIES:
        raise DatasetError(f"{file}: file name '{name}' is not <P>_<cam>_<P>_<activity> "
                           f"with activity one of {', '.join(RAW_ACTIVITIES)}")


def read_coarse(folder: Path) -> dict[str, list[Segment]]:
    annotated = {}
    for file in sorted(folder.glob("*/*.txt")):
        check_name(file.stem, file)
        segments = []
        for line, text in enumerate(file.read_text().splitlines(), 1):
            if not text.strip():
                continue
            match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s+(\S+)\s*", text)
            if not match:
                raise DatasetError(f"{file}:{line}: expected 'start-end label' (1-based frames), got {text.strip()!r}")
            start, end, label = int(match[1]), int(match[2]), match[3]
            segments.append((label, (start - 1) / FPS, end / FPS))
        annotated[file.stem] = segments
    if not annotated:
        raise DatasetError(f"{folder} holds no <activity>/<P>_<cam>_<P>_<activity>.txt segment files")
    return annotated


def read_ms_tcn(folder: Path) -> tuple[dict[str, list[Segment]], set[str]]:
    mapping_file = folder / "mapping.txt"
    if not mapping_file.is_file():
        raise DatasetError(f"{mapping_file} not found; the ms-tcn layout needs mapping.txt ('id name' per line) "
                           f"next to groundTruth/")
    mapping = {}  # name -> line
    for line, text in enumerate(mapping_file.read_text().splitlines(), 1):
        parts = text.split()
        if len(parts) != 2 and text.strip():
            raise DatasetError(f"{mapping_file}:{line}: expected 'id name', got {text.strip()!r}")
        if parts:
            mapping.setdefault(parts[1], line)
    vocabulary = set(mapping)
    annotated = {}
    for file in sorted((folder / "groundTruth").glob("*.txt")):
        check_name(file.stem, file)
        labels = [text.strip() for text in file.read_text().splitlines() if text.strip()]
        unknown = sorted(set(labels) - vocabulary)
        if unknown:
            raise DatasetError(f"{file}: label {', '.join(unknown)} not in {mapping_file}")
        # Runs of equal per-frame labels become segments: frames [first, last] (0-based) -> [first, last + 1) / fps.
        boundaries = [0] + [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]] + [len(labels)]
        annotated[file.stem] = [(labels[a], a / FPS, b / FPS) for a, b in zip(boundaries, boundaries[1:]) if b > a]
    if not annotated:
        raise DatasetError(f"{folder / 'groundTruth'} holds no <P>_<cam>_<P>_<activity>.txt label files")
    check_mapping(mapping_file, mapping, {label for segments in annotated.values() for label, _, _ in segments})
    return annotated, vocabulary


def check_mapping(file: Path, mapping: dict[str, int], used: set[str]) -> None:
    """Refuse entries an edited mapping.txt adds (SOS/EOS markers of seq2seq code): they would become steps.
    The published file is 0-based, `0 SIL` then the 47 actions, every one of them used by groundTruth."""
    added = [(line, name) for name, line in mapping.items() if name not in used and name != BACKGROUND
             and (not ACTION_LABEL.fullmatch(name) or name.lower() in SEQUENCE_MARKERS)]
    if added:
        listed = ", ".join(f"line {line} '{name}'" for line, name in sorted(added))
        raise DatasetError(f"{file}: {listed}: not Breakfast action labels and no groundTruth file uses them "
                           f"(an edited mapping, e.g. with SOS/EOS markers added); they would become steps",
                           fix="remove those lines (the published mapping.txt is 0-based: '0 SIL' then 47 "
                               "actions), or pass --annotations FOLDER holding the published one")


def video_id_of(path: Path, video_dir: Path) -> str | None:
    """`<P>/<camera>/<P>_<activity>[_chN].avi` -> `<P>_<cam>_<P>_<activity>[_chN]`; None if it does not fit."""
    parts = path.relative_to(video_dir).parts
    match = VIDEO_NAME.fullmatch(path.stem)
    if len(parts) != 3 or not match or match[1] != parts[0] or match[2] not in ACTIVITIES:
        return None
    participant, activity, channel = match.groups()
    camera = "stereo01" if parts[1] == "stereo" else parts[1]
    return f"{participant}_{camera}_{participant}_{activity}" + (f"_{channel}" if channel else "")


def readable_step(label: str) -> str:
    """`take_bowl` -> "take bowl", `put_egg2plate` -> "put egg to plate", `add_saltnpepper` -> "add salt and pepper"."""
    if label == BACKGROUND:
        return BACKGROUND_STEP
    label = label.replace("saltnpepper", "salt and pepper").replace("stirfry", "stir fry")
    return readable(re.sub(r"(?<=[a-zA-Z])2(?=[a-zA-Z])", " to ", label))
