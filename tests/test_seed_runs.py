import pytest

from cmdcl.core.errors import CmdclError
from cmdcl.head.training.seed_runs import read_seeds, seed_dirs, write_seeds


def test_single_run_is_its_own_seed_dir(tmp_path):
    assert seed_dirs(tmp_path) == [tmp_path]
    assert read_seeds(tmp_path) is None


def test_multi_seed_layout(tmp_path):
    write_seeds(tmp_path / "run", [2, 0], "cmdcl")
    assert read_seeds(tmp_path / "run") == [2, 0]
    assert seed_dirs(tmp_path / "run") == [tmp_path / "run" / "seed-2", tmp_path / "run" / "seed-0"]


def test_missing_run_is_one_line_error(tmp_path):
    with pytest.raises(CmdclError, match="no such run folder"):
        seed_dirs(tmp_path / "absent")
