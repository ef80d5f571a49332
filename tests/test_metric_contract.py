"""The contract every entry of the metric table (head/metrics/registry.py: METRICS) meets.

Parametrized over the table itself, so a metric is tested the moment it is registered: its functions resolve,
`evaluate` writes its key on a small fixture run (a head with every output the table reads: per-frame step logits,
step attention, a representation; a world with step segments and a context factor), `cmdcl compare --metric NAME`
pairs it and gets the very number evaluate wrote, it is among compare's choices, and its demo columns show
that number.
"""
from __future__ import annotations

import json

import pytest

from cmdcl.head.metrics.registry import IID, OOD, METRICS, compare_choices, metric_entry, resolve
from cmdcl.head.metrics.table import resolve_path
from cmdcl.head.model.config import HeadConfig
from cmdcl.head.model.registry import METHODS, MethodEntry
from head_fixtures import order_world
from help_text import help_text

# Entries the fixture cannot exercise, and why: they give no key there (and must not fail).
NOT_ON_THE_FIXTURE = {"mAP": "a single-label world", "spatial_mass_ratio": "no object boxes or patch attention"}
FRAME_HEADS = {"frame-oracle": "throwaway_head:FrameStepHead", "frame-contrary": "throwaway_head:ContraryFrameStepHead"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two scored runs of the throwaway frame-step heads (every frame's best step, and its worst) on test and
    test_ood of an order world with segments and a context factor: {name: run folder}."""
    from cmdcl.head.metrics.evaluate import evaluate_splits
    from cmdcl.head.training.train import train

    root = tmp_path_factory.mktemp("metric-contract")
    world = order_world(root / "w.h5", train_per_class=4, test_per_class=3, noise=0.0, extra_splits=("test_ood",),
                        context=2)
    folders = {}
    with pytest.MonkeyPatch.context() as patch:
        for name, builder in FRAME_HEADS.items():
            patch.setitem(METHODS, name, MethodEntry(builder, "a throwaway frame-step head", cost=0))
            train(world, root / name, HeadConfig(method=name, epochs=1), device="cpu", progress=False,
                  log=lambda m: None)
            evaluate_splits(root / name / "best.pt", world, [IID, OOD], root / name, device="cpu")
            folders[name] = root / name
    return folders


def metrics_of(run, split: str = IID) -> dict:
    return json.loads((run / f"metrics_{split}.json").read_text())


def compare_name(name: str, metrics: dict) -> str:
    """`compare --metric`'s name for an entry: a family's first member."""
    return f"{name}:{sorted(metrics[name])[0]}" if METRICS[name].family else name


def value_of(name: str, metrics: dict) -> float:
    return metrics[name][sorted(metrics[name])[0]]["accuracy"] if METRICS[name].family else metrics[name]


@pytest.mark.parametrize("name", METRICS)
def test_entry_is_well_formed(name):
    entry = METRICS[name]
    assert entry.help and "\n" not in entry.help and callable(resolve(entry.compute))
    assert not entry.collect or callable(resolve_path(entry.collect))
    assert entry.paired is None or not entry.paired.function or callable(resolve(entry.paired.function))
    assert all(column.split in (IID, OOD) and column.header and column.about for column in entry.demo)
    assert metric_entry(name) is entry
    if entry.paired is not None:
        assert (f"{name}:FACTOR" if entry.family else name) in compare_choices()
        assert (f"{name}:FACTOR" if entry.family else name) in help_text("compare")


@pytest.mark.parametrize("name", METRICS)
def test_evaluate_writes_the_entry(name, runs):
    for run in runs.values():
        metrics = metrics_of(run)
        if name in NOT_ON_THE_FIXTURE:
            assert name not in metrics, NOT_ON_THE_FIXTURE[name]
            continue
        assert name in metrics, f"{name}: no key in {sorted(metrics)}"
        assert metrics[name] if METRICS[name].family else isinstance(metrics[name], float)


@pytest.mark.parametrize("name", [n for n, e in METRICS.items() if e.paired and n not in NOT_ON_THE_FIXTURE])
def test_compare_pairs_the_entry_with_evaluates_number(name, runs):
    from cmdcl.head.comparison.compare import compare_runs, format_table

    first, second = runs.values()
    metric = compare_name(name, metrics_of(first))
    comparison = compare_runs([first, second], IID, metric=metric, n_resamples=200)
    for row, run in zip(comparison.rows, (first, second)):
        assert row.mean == pytest.approx(value_of(name, metrics_of(run)), abs=1e-6)
    assert comparison.rows[1].diff == pytest.approx(comparison.rows[1].mean - comparison.rows[0].mean)
    assert ("lower is better" in format_table(comparison)) == (not METRICS[name].higher_is_better)


@pytest.mark.parametrize("name", [n for n, e in METRICS.items() if e.demo and n not in NOT_ON_THE_FIXTURE])
def test_demo_table_shows_the_entry(name, runs):
    from cmdcl.pipelines.demo_table import _short, compare_splits, format_demo_table

    out = next(iter(runs.values())).parent
    rows = list(runs)
    table = format_demo_table(out, rows, compare_splits(out, rows), {}, chance=0.25).splitlines()
    for column in METRICS[name].demo:
        assert column.header in table[0]
        metrics = metrics_of(runs[rows[0]], column.split)
        key = column.key or name
        if METRICS[name].family:
            shown = "/".join(_short(metrics[key][f]["accuracy"]) for f in sorted(metrics[key]))
        else:
            shown = f"{metrics[key]:.3f}"
        assert f" {shown} " in next(line for line in table if line.startswith(rows[0] + " "))
