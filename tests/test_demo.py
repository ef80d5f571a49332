"""The demo end to end on a tiny synthetic world (the README's first command at toy size)."""
import json
import math

from pathlib import Path

import numpy as np
import pytest

from cmdcl.core.store import FeatureSet
from cmdcl.extract.models import file_sha256
from cmdcl.pipelines.cli import main
from cmdcl.head.metrics.predictions import Predictions, predictions_path, save_predictions
from cmdcl.head.training.seed_runs import seed_dir, write_seeds
from cmdcl.pipelines.demo import DEMO_RUNS, DemoConfig, residual_confounding
from cmdcl.pipelines.demo_table import compare_splits, format_demo_table


def test_demo_end_to_end_prints_table_and_writes_report(tmp_path, capsys):
    sizes = ["--epochs", "3", "--videos-per-class", "8", "--test-per-class", "3", "--pretrain-per-class", "3",
             "--pretrain-epochs", "2", "--seeds", "0,1", "--oracle"]
    main(["demo", "--root", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--frames", "8", *sizes])
    printed = capsys.readouterr().out
    for run in DEMO_RUNS:
        assert any(line.startswith(run + " ") for line in printed.splitlines()), run
    assert "pre-training cmdcl-tiny" in printed and "pre-trained here" in printed and "context only" in printed
    assert "t-grnd" in printed.splitlines()[printed.splitlines().index(next(
        line for line in printed.splitlines() if line.startswith("method ")))]
    results = json.loads((tmp_path / "runs" / "results.json").read_text())
    oracles = ["transformer-unconfounded", "cmdcl-unconfounded"]  # --oracle: trained on train_unconfounded
    assert [r["method"] for r in results["results"]] == list(DEMO_RUNS) + oracles
    assert "residual confounding = OOD top-1" in printed and set(results["residual_confounding"]) == {"transformer",
                                                                                                      "cmdcl"}
    assert results["residual_confounding"]["cmdcl"]["oracle"] == "cmdcl-unconfounded"
    weights = tmp_path / "runs" / "pretrain" / "weights.pt"
    assert results["encoder"]["pretrained"] == str(weights) and weights.is_file()
    # the features were extracted with the pre-trained weights, and without the pretrain split
    fs = FeatureSet(results["features"])
    assert fs.provenance()["weights_sha256"] == file_sha256(weights)
    assert set(fs.index["split"]) == {"train", "test", "test_ood", "train_unconfounded"}
    assert results["seeds"] == [0, 1] and "mean over 2 seeds" in printed
    for r in results["results"]:
        assert 0.0 <= r["iid_top1"] <= 1.0 and 0.0 <= r["ood_top1"] <= 1.0
        assert [s["seed"] for s in r["per_seed"]] == [0, 1]
        assert abs(r["iid_top1"] - sum(s["iid_top1"] for s in r["per_seed"]) / 2) < 1e-9
        for seed in (0, 1):
            assert (tmp_path / "runs" / r["method"] / f"seed-{seed}" / "best.pt").exists()
    assert (tmp_path / "runs" / "cmdcl" / "seed-0" / "report" / "report.html").exists()
    # A second run reuses every finished stage (the pre-trained weights too) and prints the same table.
    main(["demo", "--root", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--frames", "8", *sizes])
    assert "pre-trained cmdcl-tiny reused" in capsys.readouterr().out
    again = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert [(r["iid_top1"], r["ood_top1"]) for r in again["results"]] == \
           [(r["iid_top1"], r["ood_top1"]) for r in results["results"]]


def _fake_run(out: Path, name: str, correct: dict[str, list[int]], metrics: dict[str, dict]) -> None:
    """A two-seed run whose seed K is right on the videos correct[split][K] of 10 (2 classes)."""
    write_seeds(out / name, [0, 1], "cmdcl")
    for seed in (0, 1):
        folder = seed_dir(out / name, seed)
        for split, counts in correct.items():
            label = np.arange(10) % 2
            pred = np.where(np.arange(10) < counts[seed], label, 1 - label)
            scores = np.eye(2, dtype=np.float32)[pred]
            save_predictions(predictions_path(folder, split), Predictions(
                video_id=np.array([f"v{i}" for i in range(10)]), scores=scores, label=label,
                labels=np.eye(2, dtype=np.uint8)[label], multilabel=False))
            (folder / f"metrics_{split}.json").write_text(json.dumps(metrics.get(split, {})))


def test_demo_table_has_intervals_paired_differences_grounding_and_leakage(tmp_path):
    leak = {"leakage": {"background": {"accuracy": 0.5, "chance": 0.2}, "lighting": {"accuracy": 0.3, "chance": 0.25}}}
    _fake_run(tmp_path, "transformer", {"test": [8, 8], "test_ood": [4, 6]}, {"test_ood": leak})
    _fake_run(tmp_path, "cmdcl", {"test": [9, 9], "test_ood": [7, 9]},
              {"test": {"grounding_mass_ratio": 2.0, "spatial_mass_ratio": 3.5, "spatial_prop_mass_ratio": 0.25},
               "test_ood": {**leak, "spatial_mass_ratio": 2.5}})
    rows = ["transformer", "cmdcl"]
    table = format_demo_table(tmp_path, rows, compare_splits(tmp_path, rows), {"cmdcl": 1.0}, chance=0.5)
    lines = table.splitlines()
    assert "OOD - transformer [95% CI]" in lines[0] and "s-grnd" in lines[0] and "leak back/ligh" in lines[0]
    cmdcl = next(line for line in lines if line.startswith("cmdcl "))
    # OOD means 0.5 and 0.8: a +0.300 paired difference; t interval over two seeds 0.7 and 0.9 for cmdcl
    assert "0.800 [" in cmdcl and "+0.300 [" in cmdcl and " 2.000 " in cmdcl and " 3.500 " in cmdcl
    assert " 3.500  2.500  0.250 " in cmdcl and "p-mass" in lines[0]  # s-grnd, s-ood, p-mass side by side
    assert ".50/.30" in cmdcl and "over seeds" in lines[0]
    assert "(reference)" in next(line for line in lines if line.startswith("transformer "))
    assert "mean over 2 seeds" in table and "background chance 0.200" in table
    assert (tmp_path / "compare-test_ood" / "compare.json").is_file()
    # OOD ECE: one-hot scores give every video the confidence c = e / (1 + e) = 0.731 (one bin), so a seed's
    # ECE is |top-1 - c|: transformer |0.4 - c|, |0.6 - c| (mean 0.231), cmdcl |0.7 - c|, |0.9 - c| (mean 0.100).
    c = math.e / (1 + math.e)
    assert "OOD ECE" in lines[0] and " 0.100 " in cmdcl
    assert " 0.231 " in next(line for line in lines if line.startswith("transformer "))
    ece = json.loads((tmp_path / "compare-test_ood-ece" / "compare.json").read_text())
    assert ece["metric"] == "ece" and ece["reference"] == "transformer"
    assert next(r for r in ece["rows"] if r["run"] == "cmdcl")["diff"] == pytest.approx(
        (abs(0.7 - c) + abs(0.9 - c)) / 2 - (abs(0.4 - c) + abs(0.6 - c)) / 2)


def _features(tmp_path, name, seed):
    from cmdcl.core.store import FeatureSet
    from cmdcl.extract.datasets.synthetic import SyntheticConfig, generate_synthetic
    from cmdcl.extract.runner import ExtractConfig, run_extraction

    config = SyntheticConfig(seed=seed, num_activities=3, num_steps=6, min_script_steps=3, max_script_steps=4,
                             train_per_class=2, test_per_class=1, ood_per_class=1, width=48, height=32, fps=4,
                             min_seconds=3.0, max_seconds=4.0)
    root = generate_synthetic(tmp_path / name, config, progress=False)
    summary = run_extraction(ExtractConfig(dataset="manifest", root=str(root), out_dir=str(tmp_path / f"{name}-f"),
                                           model="cmdcl-tiny",
                                           pretrained="random", patch_grid=0, frames=8, workers=0, progress=False),
                             log=lambda m: None)
    fs = FeatureSet(summary.shard_path)
    return (root / "manifest.csv").read_bytes(), fs.read_array("features", np.arange(len(fs)))


def test_same_seed_same_manifest_and_features_different_seed_differs(tmp_path):
    manifest_a, feats_a = _features(tmp_path, "a", seed=5)
    manifest_b, feats_b = _features(tmp_path, "b", seed=5)
    manifest_c, feats_c = _features(tmp_path, "c", seed=6)
    assert manifest_a == manifest_b
    np.testing.assert_array_equal(feats_a, feats_b)
    assert manifest_a != manifest_c
    assert feats_a.shape != feats_c.shape or not np.array_equal(feats_a, feats_c)


def test_oracle_rows_and_the_residual_confounding_table(tmp_path):
    """--oracle adds <row>-unconfounded for transformer and cmdcl when they are rows; the residual is the oracle's
    OOD top-1 minus the row's, paired over the same videos and seeds."""
    assert DemoConfig(oracle=True).trained_rows() == (*DEMO_RUNS, "transformer-unconfounded", "cmdcl-unconfounded")
    assert DemoConfig(oracle=True, methods=("linear", "cmdcl")).trained_rows() == ("linear", "cmdcl",
                                                                                   "cmdcl-unconfounded")
    assert DemoConfig().trained_rows() == tuple(DEMO_RUNS)  # off by default (the demo's time budget)
    _fake_run(tmp_path, "cmdcl", {"test": [9, 9], "test_ood": [4, 6]}, {})
    _fake_run(tmp_path, "cmdcl-unconfounded", {"test": [8, 8], "test_ood": [7, 8]}, {})
    _fake_run(tmp_path, "linear", {"test": [8, 8], "test_ood": [5, 5]}, {})
    residual = residual_confounding(tmp_path, ["linear", "cmdcl", "cmdcl-unconfounded"])
    numbers = residual["rows"]["cmdcl"]
    assert set(residual["rows"]) == {"cmdcl"}  # linear has no oracle row
    assert numbers["ood_top1"] == 0.5 and numbers["oracle_ood_top1"] == 0.75
    assert abs(numbers["residual"] - 0.25) < 1e-9 and numbers["seeds"] == 2 and numbers["videos"] == 10
    assert numbers["ci"][0] <= 0.25 <= numbers["ci"][1] and numbers["pairing"] == "video and seed"
    line = next(x for x in residual["table"].splitlines() if x.startswith("cmdcl "))
    assert " 0.500 " in line and " 0.750 " in line and "+0.250 [" in line
    assert (tmp_path / "compare-residual-cmdcl" / "compare.json").is_file()
