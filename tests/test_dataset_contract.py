"""The contract every entry of the dataset table (extract/datasets/registry.py: DATASETS) meets.

Parametrized over the table itself, so a dataset is tested the moment it is registered: its fixture
(`write_<name>` in dataset_fixtures.py) loads, it and its flags appear in `cmdcl extract --help`, a missing
root is a one-line error naming the layout, and its videos extract end to end.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

import dataset_fixtures
from cmdcl.core.errors import CmdclError, DatasetError
from cmdcl.extract.datasets.registry import DATASET_OPTIONS, DATASETS, load_dataset
from help_text import help_text
from video_fixtures import tiny_video

NEEDS_ROOT = [name for name, entry in DATASETS.items() if not entry.creates_root]


def written(name: str, root: Path, write_video=None) -> tuple[Path, dict]:
    """Write dataset `name`'s fixture tree: (ROOT, load options)."""
    writer = getattr(dataset_fixtures, f"write_{name}", None)
    assert writer is not None, f"dataset {name}: add write_{name}(root, *, write_video=None) to dataset_fixtures.py"
    out = writer(root, write_video=write_video)
    return out if isinstance(out, tuple) else (out, {})


@pytest.mark.parametrize("name", DATASETS)
def test_fixture_loads_into_a_consistent_index(name, tmp_path):
    root, options = written(name, tmp_path / name)
    index = load_dataset(name, root, **options)
    assert index.items and index.class_names, name
    assert [item.video_id for item in index.items] == sorted({item.video_id for item in index.items})
    for item in index.items:
        assert Path(item.path).is_absolute() and Path(item.path).is_file(), item.path
        assert all(0 <= c < len(index.class_names) for c in item.labels), item
        assert item.label == -1 or item.label in item.labels, item
        assert all(0 <= s < len(index.step_names) for s in item.steps), item
    split = index.items[0].split
    only = load_dataset(name, root, [split], **options)
    assert {item.split for item in only.items} == {split}


@pytest.mark.parametrize("name", DATASETS)
def test_appears_in_extract_help_with_its_flags(name):
    text = help_text("extract")
    assert name in text
    for option in DATASET_OPTIONS:
        if name in option.help:
            assert option.flag in text and f"{name}: " in text


@pytest.mark.parametrize("name", DATASETS)
def test_each_table_option_is_a_flag_and_an_adapter_keyword(name):
    entry = DATASETS[name]
    flags = {option.keyword for option in DATASET_OPTIONS}
    keywords = inspect.signature(entry.load_function()).parameters
    for keyword in entry.options:
        assert keyword in flags, f"{name}: option {keyword} has no DatasetOption (flag) in DATASET_OPTIONS"
        assert keyword in keywords, f"{name}: {entry.adapter} takes no keyword {keyword}"


@pytest.mark.parametrize("name", NEEDS_ROOT)
def test_missing_root_is_one_line_naming_root_and_layout(name, tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset(name, tmp_path / "nowhere")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message and DATASETS[name].layout in message


def test_unknown_dataset_lists_every_registered_name(tmp_path):
    with pytest.raises(CmdclError, match="unknown dataset 'kinetics'") as info:
        load_dataset("kinetics", tmp_path)
    assert all(name in str(info.value) for name in DATASETS)


@pytest.mark.parametrize("name", DATASETS)
def test_extracts_end_to_end(name, encoder, tmp_path):
    from cmdcl.core.store import FeatureSet
    from cmdcl.extract.config import ExtractConfig
    from cmdcl.extract.runner import run_extraction

    root, options = written(name, tmp_path / name, write_video=tiny_video)
    index = load_dataset(name, root, **options)
    cfg = ExtractConfig(dataset=name, root=str(root), out_dir=str(tmp_path / "out"), model="cmdcl-tiny",
                        pretrained="random", patch_grid=0, frames=4,
                        batch_size=16, workers=0, device="cpu", precision="fp32", progress=False,
                        dataset_options=options)
    summary = run_extraction(cfg, encoder=encoder)
    assert (summary.extracted, summary.failed) == (len(index.items), 0)
    features = FeatureSet(tmp_path / "out")
    assert features.summary()["splits"] == index.split_sizes()
    assert features.dims["C"] == len(index.class_names) and features.dims["S"] == len(index.step_names)
    labels = dict(zip(features.index["video_id"].tolist(), features.index["labels"]))
    for item in index.items:
        assert np.flatnonzero(labels[item.video_id]).tolist() == sorted(item.labels)
    assert features.verify() == []
