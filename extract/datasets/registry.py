"""`DATASETS`: the one table of datasets (name -> adapter, layout, options), `DATASET_OPTIONS`: the one home of
the adapters' `cmdcl extract` flags, and `load_dataset`: the one entry point over all adapters.

Everything else is derived from these two tables: `cmdcl extract --help` (the dataset names and the flags per
dataset), the validation of `--dataset` and of the dataset flags, `pretrain-clip`'s datasets, and the contract
tests (tests/test_dataset_contract.py), which run for every entry. Adding a dataset: docs/EXTRACT.md,
"Adding a dataset".

Adapters are imported lazily, by the module path their entry names: the synthetic world may pull in
video-writing libraries that `cmdcl --help` must not load. They share `make_index` and the other helpers of
`base`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Callable

from cmdcl.core.errors import CmdclError, DatasetError
from .base import SPLIT_SCHEMES, DatasetIndex, SplitSpec


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset: what the loader, the CLI and the contract tests need to know about it."""
    adapter: str  # "module:function", `function(root: Path, splits, **options) -> DatasetIndex`, imported on use
    layout: str  # what ROOT holds, for the one-line error when ROOT does not exist
    options: dict[str, str] = field(default_factory=dict)  # keyword -> what it does here; its flag: DATASET_OPTIONS
    creates_root: bool = False  # the adapter makes ROOT itself (synthetic): no missing-root check
    pretrain: bool = False  # `cmdcl pretrain-clip` reads it (its frames can be captioned with timed steps)
    about: str = ""  # what it is and its quirks, a markdown phrase for docs/COMMANDS.md's "Datasets" ("": its layout)


    def load_function(self) -> Callable[..., DatasetIndex]:
        module, _, function = self.adapter.partition(":")
        return getattr(import_module(module), function or "load")


DATASETS: dict[str, DatasetEntry] = {
    "breakfast": DatasetEntry(
        "cmdcl.extract.datasets.breakfast:load",
        "BreakfastII_15fps_qvga_sync/<P>/<camera>/<P>_<activity>.avi and segmentation_coarse/ "
        "(or the ms-tcn groundTruth/ + mapping.txt)", {
            "split": "which participants are test: ltar (default; P47-P54, the long-term recognition split) or "
                     "the official s1..s4 (P03-P15, P16-P28, P29-P41, P42-P54).",
            "stereo_channel": "stereo camera file(s) to use: ch0 (default, the 1,712-video benchmark), ch1 or both.",
            "background": "keep SIL as the step 'background' (the published 48 steps) instead of dropping it (47).",
            "annotations": "folder holding segmentation_coarse/ or groundTruth/ + mapping.txt (default: ROOT, then "
                           "next to the video folder).",
            "video_dir": "the BreakfastII_15fps_qvga_sync folder (default: ROOT or "
                         "ROOT/BreakfastII_15fps_qvga_sync)."},
        about="LTAR split P03–P46 / P47–P54 by default, `--split-scheme s1`–`s4` for the official splits; 10 "
              "activities; 47 coarse actions as steps, `--background` keeps SIL as the published 48th; an ms-tcn "
              "`mapping.txt` edited with SOS/EOS is refused with its line numbers"),
    "coin": DatasetEntry(
        "cmdcl.extract.datasets.coin:load", "COIN.json and videos/<recipe_type>/<youtube_id>.mp4", {
            "annotation": "the COIN.json file (default: ROOT/COIN.json).",
            "taxonomy": "COIN's taxonomy.xlsx as published (needs openpyxl: pip install 'cmdcl[coin]') or its "
                        "target_action_mapping sheet as CSV (default: a taxonomy*.xlsx, else taxonomy*.csv, in ROOT).",
            "video_dir": "the videos folder (default: ROOT/videos)."},
        about="COIN's published ids: tasks 0..179, steps 1..778 at indices 0..777 with the real ids stored as "
              "`/text/step_ids`, whatever subset of `COIN.json` is present; names from `taxonomy.xlsx` as published "
              "(`pip install 'cmdcl[coin]'`) or its CSV export, found in ROOT; every step text unique: a text shared "
              "across tasks gets its task appended, a text repeated within a task gets \"(second time)\""),
    "charades": DatasetEntry(
        "cmdcl.extract.datasets.charades:load",
        "Charades_v1_classes.txt, Charades_v1_train.csv, Charades_v1_test.csv and Charades_v1_480/<id>.mp4", {
            "annotations": "folder holding Charades_v1_classes.txt and the train/test CSVs (default: ROOT, then "
                           "ROOT/Charades, then ROOT/..).",
            "video_dir": "the videos folder (default: Charades_v1_480/ or Charades_v1/ in ROOT or its parent)."},
        about="157 actions, multi-label; the root may be the folder holding `Charades/` and `Charades_v1_480/`"),
    "manifest": DatasetEntry(
        "cmdcl.extract.datasets.manifest:load",
        "manifest.csv (or manifest.jsonl) and classes.txt, or the manifest file itself", {
            "classes": "the class list (default: classes.txt).",
            "steps": "the step list (default: steps.txt, else the manifest's step names)."}, pretrain=True,
        about="your own videos: `manifest.csv|jsonl` with `video_id,path,split,label,labels,steps[,context,boxes,"
              "prop_boxes,confounder:NAME]`, plus `classes.txt` and optional `steps.txt`; object boxes and context factors give "
              "the spatial-grounding and leakage metrics on your data"),
    "synthetic": DatasetEntry(
        "cmdcl.extract.datasets.synthetic:load", "a folder where the synthetic dataset is (or will be) generated",
        creates_root=True, pretrain=True,
        about="the built-in confounded world of `cmdcl synth` and `cmdcl demo` (the moving world by default, or "
              "the static one: `cmdcl synth`), generated into ROOT when absent"),
}


def dataset_entry(name: str) -> DatasetEntry:
    """The table entry of dataset `name`; an unknown name is a one-line error listing the known ones."""
    if name not in DATASETS:
        raise CmdclError(f"unknown dataset '{name}'; valid names: {', '.join(DATASETS)}",
                         fix="pass one of them to --dataset (docs/EXTRACT.md, \"Adding a dataset\", adds another)")
    return DATASETS[name]


@dataclass(frozen=True)
class DatasetOption:
    """One adapter keyword argument and the `cmdcl extract` flag that sets it."""
    keyword: str  # the adapter's keyword argument, e.g. "split"
    flag: str  # the CLI flag, e.g. "--split-scheme"
    metavar: str  # what the value looks like; "" for an on/off switch

    @property
    def help(self) -> dict[str, str]:
        """Dataset -> what the option does there, from the `DATASETS` entries that take it."""
        return {name: entry.options[self.keyword] for name, entry in DATASETS.items() if self.keyword in entry.options}

    @property
    def is_switch(self) -> bool:
        return not self.metavar

    @property
    def parameter(self) -> str:
        """The Python name typer gives the flag's value (`--split-scheme` -> split_scheme)."""
        return self.flag.lstrip("-").replace("-", "_")


# The flags, in `--help` order; which datasets take each one (and what it does there) is in their DATASETS entry.
DATASET_OPTIONS = (
    DatasetOption("split", "--split-scheme", "|".join(SPLIT_SCHEMES["breakfast"])),
    DatasetOption("stereo_channel", "--stereo-channel", "ch0|ch1|both"),
    DatasetOption("background", "--background", ""),
    DatasetOption("annotations", "--annotations", "FOLDER"),
    DatasetOption("annotation", "--annotation", "FILE"),
    DatasetOption("taxonomy", "--taxonomy", "FILE"),
    DatasetOption("video_dir", "--video-dir", "FOLDER"),
    DatasetOption("classes", "--classes", "FILE"),
    DatasetOption("steps", "--steps", "FILE"),
)


def options_of(dataset: str) -> list[DatasetOption]:
    return [option for option in DATASET_OPTIONS if dataset in option.help]


def options_help() -> str:
    """The dataset options per dataset, for `cmdcl extract --help`."""
    return "; ".join(f"{name}: {' '.join(o.flag for o in options_of(name))}"
                     for name in DATASETS if options_of(name))


def options_from_flags(dataset: str, values: dict[str, Any]) -> dict[str, Any]:
    """The adapter keyword arguments from the CLI's dataset flags (parameter name -> value, None = not given);
    a flag the dataset does not take is a one-line error naming the ones it does."""
    chosen = {}
    for option in DATASET_OPTIONS:
        value = values.get(option.parameter)
        if value is None or value is False:
            continue
        if dataset not in option.help:
            own = " ".join(o.flag for o in options_of(dataset)) or "none"
            raise CmdclError(f"{option.flag} is an option of {', '.join(option.help)}, not of {dataset}",
                             fix=f"drop it; {dataset}'s dataset options are: {own}")
        chosen[option.keyword] = value
    return chosen


def load_dataset(name: str, root: str | Path, splits: SplitSpec = None, **options: Any) -> DatasetIndex:
    """Read dataset `name` from `root` in its published layout; keep only `splits` ("train,test" or a list)."""
    entry = dataset_entry(name)
    root = Path(root).expanduser().absolute()
    if not entry.creates_root and not root.exists():
        raise DatasetError(f"{name} root {root} does not exist; expected {entry.layout} there",
                           fix="pass the folder that holds the dataset")
    load = entry.load_function()
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
