"""The main job end to end on a tiny synthetic world (the README's first command at toy size)."""
import json

from cmdcl.pipelines.cli import main
from cmdcl.pipelines.demo import DEMO_RUNS


def test_demo_end_to_end_prints_table_and_writes_report(tmp_path, capsys):
    sizes = ["--epochs", "3", "--videos-per-class", "8", "--test-per-class", "3"]
    main(["demo", "--root", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--frames", "8", *sizes])
    printed = capsys.readouterr().out
    for run in DEMO_RUNS:
        assert any(line.startswith(run + " ") for line in printed.splitlines()), run
    assert "RANDOMLY initialised" in printed and "context only" in printed
    results = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert [r["method"] for r in results["results"]] == list(DEMO_RUNS)
    for r in results["results"]:
        assert 0.0 <= r["iid_top1"] <= 1.0 and 0.0 <= r["ood_top1"] <= 1.0
        assert (tmp_path / "runs" / r["method"] / "best.pt").exists()
    assert (tmp_path / "runs" / "cmdcl" / "report" / "report.html").exists()
    # A second run reuses every finished stage and prints the same table.
    main(["demo", "--root", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--frames", "8", *sizes])
    again = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert [(r["iid_top1"], r["ood_top1"]) for r in again["results"]] == \
           [(r["iid_top1"], r["ood_top1"]) for r in results["results"]]
