"""The main job end to end on a tiny synthetic world (the README's first command at toy size)."""
import json

from pathlib import Path

import numpy as np

from cmdcl.core.store import FeatureSet
from cmdcl.extract.models import file_sha256
from cmdcl.pipelines.cli import main
from cmdcl.pipelines.demo import DEMO_RUNS, MethodResult, format_table


def test_demo_end_to_end_prints_table_and_writes_report(tmp_path, capsys):
    sizes = ["--epochs", "3", "--videos-per-class", "8", "--test-per-class", "3", "--pretrain-per-class", "3",
             "--pretrain-epochs", "2", "--seeds", "0,1"]
    main(["demo", "--root", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--frames", "8", *sizes])
    printed = capsys.readouterr().out
    for run in DEMO_RUNS:
        assert any(line.startswith(run + " ") for line in printed.splitlines()), run
    assert "pre-training cmdcl-tiny" in printed and "pre-trained here" in printed and "context only" in printed
    assert "grounding" in printed.splitlines()[printed.splitlines().index(next(
        line for line in printed.splitlines() if line.startswith("method ")))]
    results = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert [r["method"] for r in results["results"]] == list(DEMO_RUNS)
    weights = tmp_path / "runs" / "pretrain" / "weights.pt"
    assert results["encoder"]["pretrained"] == str(weights) and weights.is_file()
    # the features were extracted with the pre-trained weights, and without the pretrain split
    fs = FeatureSet(results["features"])
    assert fs.provenance()["weights_sha256"] == file_sha256(weights)
    assert set(fs.index["split"]) == {"train", "test", "test_ood"}
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


def test_table_shows_grounding_when_the_metrics_have_it():
    rows = [MethodResult("cmdcl", Path("r"), 0.9, 0.5, 0.8, 1.7, 10, 1.0),
            MethodResult("linear", Path("r"), 0.9, 0.5, None, None, 10, 1.0)]
    table = format_table(rows, chance=1 / 6).splitlines()
    assert "grounding" in table[0]
    assert table[2].split()[4] == "1.700" and table[3].split()[3:5] == ["-", "-"]


def _features(tmp_path, name, seed):
    from cmdcl.core.store import FeatureSet
    from cmdcl.extract.datasets.synthetic import SyntheticConfig, generate_synthetic
    from cmdcl.extract.runner import ExtractConfig, run_extraction

    config = SyntheticConfig(seed=seed, num_activities=3, num_steps=6, min_script_steps=3, max_script_steps=4,
                             train_per_class=2, test_per_class=1, ood_per_class=1, width=48, height=32, fps=4,
                             min_seconds=3.0, max_seconds=4.0)
    root = generate_synthetic(tmp_path / name, config, progress=False)
    summary = run_extraction(ExtractConfig(dataset="manifest", root=str(root), out_dir=str(tmp_path / f"{name}-f"),
                                           model="cmdcl-tiny", frames=8, workers=0, progress=False),
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
