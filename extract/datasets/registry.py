"""`load_dataset`: the one entry point over all adapters, and `DATASET_OPTIONS`: the one home of the
adapters' options and of their `cmdcl extract` flags (the CLI builds its dataset flags from it).

Adapters are imported lazily: the synthetic world may pull in video-writing libraries that `cmdcl --help`
must not load. They share `make_index` and the other helpers of `base`.
"""
from __future__ import annotations

import inspect
from importlib import import_module
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cmdcl.core.errors import CmdclError, DatasetError
from cmdcl.extract.datasets.base import SPLIT_SCHEMES, DatasetIndex, SplitSpec

DATASETS = ("breakfast", "coin", "charades", "manifest", "synthetic")

LAYOUTS = {
    "breakfast": "BreakfastII_15fps_qvga_sync/<P>/<camera>/<P>_<activity>.avi and segmentation_coarse/ "
                 "(or the ms-tcn groundTruth/ + mapping.txt)",
    "coin": "COIN.json and videos/<recipe_type>/<youtube_id>.mp4",
    "charades": "Charades_v1_classes.txt, Charades_v1_train.csv, Charades_v1_test.csv and Charades_v1_480/<id>.mp4",
    "manifest": "manifest.csv (or manifest.jsonl) and classes.txt, or the manifest file itself",
    "synthetic": "a folder where the synthetic dataset is (or will be) generated",
}


@dataclass(frozen=True)
class DatasetOption:
    """One adapter keyword argument and the `cmdcl extract` flag that sets it."""
    keyword: str  # the adapter's keyword argument, e.g. "split"
    flag: str  # the CLI flag, e.g. "--split-scheme"
    metavar: str  # what the value looks like; "" for an on/off switch
    help: dict[str, str]  # dataset -> what the option does there (one option may serve several datasets)

    @property
    def is_switch(self) -> bool:
        return not self.metavar

    @property
    def parameter(self) -> str:
        """The Python name typer gives the flag's value (`--split-scheme` -> split_scheme)."""
        return self.flag.lstrip("-").replace("-", "_")


DATASET_OPTIONS = (
    DatasetOption("split", "--split-scheme", "|".join(SPLIT_SCHEMES["breakfast"]), {
        "breakfast": "which participants are test: ltar (default; P47-P54, the long-term recognition split) or "
                     "the official s1..s4 (P03-P15, P16-P28, P29-P41, P42-P54)."}),
    DatasetOption("stereo_channel", "--stereo-channel", "ch0|ch1|both", {
        "breakfast": "stereo camera file(s) to use: ch0 (default, the 1,712-video benchmark), ch1 or both."}),
    DatasetOption("background", "--background", "", {
        "breakfast": "keep SIL as the step 'background' (the published 48 steps) instead of dropping it (47)."}),
    DatasetOption("annotations", "--annotations", "FOLDER", {
        "breakfast": "folder holding segmentation_coarse/ or groundTruth/ + mapping.txt (default: ROOT, then "
                     "next to the video folder).",
        "charades": "folder holding Charades_v1_classes.txt and the train/test CSVs (default: ROOT, then "
                    "ROOT/Charades, then ROOT/..)."}),
    DatasetOption("annotation", "--annotation", "FILE", {
        "coin": "the COIN.json file (default: ROOT/COIN.json)."}),
    DatasetOption("taxonomy", "--taxonomy", "FILE", {
        "coin": "COIN's taxonomy.xlsx as published (needs openpyxl: pip install 'cmdcl[coin]') or its "
                "target_action_mapping sheet as CSV (default: a taxonomy*.xlsx, else taxonomy*.csv, in ROOT)."}),
    DatasetOption("video_dir", "--video-dir", "FOLDER", {
        "breakfast": "the BreakfastII_15fps_qvga_sync folder (default: ROOT or ROOT/BreakfastII_15fps_qvga_sync).",
        "coin": "the videos folder (default: ROOT/videos).",
        "charades": "the videos folder (default: Charades_v1_480/ or Charades_v1/ in ROOT or its parent)."}),
    DatasetOption("classes", "--classes", "FILE", {"manifest": "the class list (default: classes.txt)."}),
    DatasetOption("steps", "--steps", "FILE", {"manifest": "the step list (default: steps.txt, else the manifest's "
                                                            "step names)."}),
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
