"""A throwaway table entry (tests/throwaway_entries.py) is all a new dataset, head or metric needs: it shows up
in `--help` and in the contract tests' parameters, and passes them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from help_text import help_text

TESTS = Path(__file__).parent
CONTRACTS = ["tests/test_dataset_contract.py", "tests/test_head_contract.py", "tests/test_metric_contract.py"]
# An existing entry of each table: every contract test id it has must exist for the throwaway one too.
KNOWN = {"coin": "throwaway", "linear": "throwaway", "frame_step_top1": "throwaway_margin"}


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, env=env,
                          cwd=TESTS.parent)


def test_throwaway_entries_show_in_help():
    probe = ("import throwaway_entries; from help_text import help_text; "
             "print(help_text('extract')); print(help_text('train-head'))")
    result = run("-c", probe)
    assert result.returncode == 0, result.stderr
    extract, train_head = result.stdout.splitlines()[-2:]
    assert "| throwaway." in extract and "throwaway: --classes" in extract
    assert "throwaway: the throwaway class list." in extract
    assert "throwaway: a throwaway GRU baseline" in train_head
    assert "throwaway" not in help_text("extract") + help_text("train-head")  # this process did not register them


def test_throwaway_metric_shows_in_compare_help_and_the_summary_line():
    probe = ("import throwaway_entries; from help_text import help_text; "
             "from cmdcl.pipelines.cmd_head import _headline; "
             "from cmdcl.head.metrics.registry import paired_entry; paired_entry('throwaway_margin'); "
             "print(help_text('compare')); print(_headline({'top1': 0.5, 'throwaway_margin': 1.25, 'num_videos': 4}))")
    result = run("-c", probe)
    assert result.returncode == 0, result.stderr[-2000:]
    compare, summary = result.stdout.splitlines()[-2:]
    assert "| throwaway_margin |" in compare or "| throwaway_margin (" in compare
    assert summary == "top1 0.5000, throwaway_margin 1.2500, num_videos 4"
    assert "throwaway_margin" not in help_text("compare")  # this process did not register it


def test_throwaway_head_joins_the_demo_with_one_row():
    """docs/TRAINING.md, "The demo": a DEMO_RUNS row is all a new head needs to join `cmdcl demo` (its cost, the
    table's default, orders it among the others), and options it does not read are not checked for it."""
    probe = ("import throwaway_entries; from cmdcl.pipelines import demo; "
             "from cmdcl.head.model.config import HeadConfig; "
             "demo.DEMO_RUNS['throwaway'] = {'method': 'throwaway'}; "
             "rows = ('zeroshot', 'throwaway', 'linear', 'cmdcl', 'transformer'); demo.check_rows(rows); "
             "assert 'throwaway' in demo.DemoConfig().methods; "
             "HeadConfig(method='throwaway', width=10, heads=3, mediator='cosine').check(); "
             "print(' '.join(r for r, _ in demo.costliest_first([(r, s) for r in rows for s in (0, 1)])))")
    result = run("-c", probe)
    assert result.returncode == 0, result.stderr[-2000:]
    order = result.stdout.split()
    assert order == ["cmdcl"] * 2 + ["transformer"] * 2 + ["throwaway"] * 2 + ["linear"] * 2 + ["zeroshot"] * 2


@pytest.mark.slow  # two pytest runs in subprocesses (~30 s)
def test_throwaway_entries_join_and_pass_the_contract_tests():
    collected = run("-m", "pytest", "-o", "addopts=", "-p", "throwaway_entries", "--collect-only", "-q", *CONTRACTS)
    assert collected.returncode == 0, collected.stdout[-2000:]
    ids = {line for line in collected.stdout.splitlines() if "::" in line}
    wanted = {test.replace(known, new) for test in ids for known, new in KNOWN.items() if f"{known}" in test}
    assert wanted and wanted <= ids, sorted(wanted - ids)
    result = run("-m", "pytest", "-o", "addopts=", "-p", "throwaway_entries", "-q", "-rA", "-k", "throwaway",
                 *CONTRACTS)
    assert result.returncode == 0, result.stdout[-3000:]
    passed = {line.split(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("PASSED ")}
    assert passed == {test for test in ids if "throwaway" in test} and len(passed) >= 9
    # the throwaway metric: in evaluate's output, paired by compare with evaluate's number, in the demo table
    for test in ("test_evaluate_writes_the_entry", "test_compare_pairs_the_entry_with_evaluates_number",
                 "test_demo_table_shows_the_entry"):
        assert f"tests/test_metric_contract.py::{test}[throwaway_margin]" in passed
