"""scripts/test.sh picks what pytest runs: the whole suite, the files given, or the fast subset (--fast), with
every other argument passed on. Run against a stand-in virtual environment whose `python` prints its arguments,
so nothing is installed and no test runs twice."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_test_sh(tmp_path: Path, *args: str) -> list[str]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    python.chmod(0o755)
    constraints = ROOT / "constraints.txt"
    cksum = subprocess.run(["cksum"], stdin=constraints.open("rb"), capture_output=True, text=True).stdout
    (venv / ".cmdcl-installed").write_text(f"{constraints} {cksum.strip()}\n")  # setup_env.sh: up to date
    later = time.time() + 60
    os.utime(venv / ".cmdcl-installed", (later, later))
    env = {**os.environ, "CMDCL_VENV": str(venv), "CMDCL_CONSTRAINTS": str(constraints)}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "test.sh"), *args], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_whole_suite_given_files_and_the_fast_subset(tmp_path):
    assert _run_test_sh(tmp_path / "a", "-q") == ["-m", "pytest", "tests", "-q"]
    assert _run_test_sh(tmp_path / "b", "tests/test_store.py", "-x") == ["-m", "pytest", "tests/test_store.py", "-x"]
    fast = _run_test_sh(tmp_path / "c", "--fast", "-q")
    assert fast[:2] == ["-m", "pytest"] and fast[-1] == "-q" and "tests" not in fast
    assert "tests/test_cli_errors.py" in fast and "tests/test_evaluate.py" in fast and len(fast) == 9
    assert all((ROOT / f).is_file() for f in fast[2:-1])
