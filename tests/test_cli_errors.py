"""Bad command-line input: one line on stderr naming what is wrong (and the fix), exit code 2, no traceback;
`--debug` shows the traceback. A few through the installed `cmdcl` script, the rest in-process."""
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from cmdcl.pipelines.cli import main as cli_main
from head_fixtures import ORDER_SCRIPTS, order_world

SCRIPT = Path(sys.executable).with_name("cmdcl")
CMDCL = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "cmdcl.pipelines.cli"]


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv("CMDCL_DEBUG", raising=False)  # `--debug` in-process would leave it set


def run_cmdcl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CMDCL, *args], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "CMDCL_DEBUG"})


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cmdcl: error: ") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def not_hdf5(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "features.h5"
    path.write_text("video_id,label\nv0,1\n")
    return path


@pytest.fixture(scope="module")
def foreign_hdf5(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("foreign") / "embeddings.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=[[0.0, 1.0]])
    return path


@pytest.mark.parametrize("args, words", [
    (["extract", "--dataset", "kinetics", "--root", "."], ["unknown dataset 'kinetics'", "breakfast, coin"]),
    (["extract", "--dataset", "coin", "--root", "/no/such/folder"], ["/no/such/folder does not exist",
                                                                      "COIN.json", "Fix: pass the folder"]),
    (["extract", "--dataset", "manifest", "--root", ".", "--frames", "0"], ["--frames 0", "at least 1"]),
])
def test_installed_script_gives_one_line_and_exit_2(args, words):
    result = run_cmdcl(*args, "--model", "cmdcl-tiny")
    assert result.returncode == 2
    line = one_line(result.stderr)
    for word in words:
        assert word in line, line


@pytest.mark.parametrize("args, words", [
    (["extract", "--bogus"], ["cmdcl extract: No such option: --bogus", "Fix: see `cmdcl extract --help`"]),
    (["train-head", "--epochs", "abc"], ["cmdcl train-head: Invalid value for '--epochs'"]),
    (["nocommand"], ["No such command 'nocommand'", "Fix: see `cmdcl --help`"]),
    (["evaluate", "--split"], ["cmdcl evaluate: Option '--split' requires an argument",
                               "Fix: see `cmdcl evaluate --help`"]),
    (["extract", "--dataset", "coin"], ["cmdcl extract: Missing option '--root'"]),
])
def test_usage_errors_are_one_line_and_exit_2(args, words):
    """Click's usage errors, whichever click typer runs on (typer 0.2x vendors its own as typer._click)."""
    result = run_cmdcl(*args)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    for word in words:
        assert word in line, line


CLICK_MODULES = [name for name in ("click.exceptions", "typer._click.exceptions")
                 if importlib.util.find_spec(name.rsplit(".", 1)[0]) is not None]


@pytest.mark.parametrize("module", CLICK_MODULES)
def test_usage_errors_of_the_real_and_the_vendored_click_are_caught(module, monkeypatch, capsys):
    """Whichever click a typer release runs on (older: click; 0.2x: typer._click), its usage errors are one line."""
    from cmdcl.pipelines import cli

    usage_error = importlib.import_module(module).UsageError

    class RaisingApp:
        registered_commands: list = []

        def command(self, name):
            return lambda function: function

        def __call__(self, **kwargs):
            raise usage_error("No such option: --nope")

    monkeypatch.setattr(cli, "app", RaisingApp())
    assert cli_error(["extract", "--nope"], capsys) == "cmdcl: error: cmdcl: No such option: --nope. " \
                                                       "Fix: see `cmdcl --help`."


def test_no_arguments_prints_the_help():
    result = run_cmdcl()
    assert "Traceback" not in result.stderr and "extract" in result.stdout + result.stderr
    assert "Usage: cmdcl" in result.stdout + result.stderr


def test_installed_script_refuses_a_features_file_that_is_not_hdf5(not_hdf5):
    result = run_cmdcl("train-head", "--features", str(not_hdf5), "--method", "linear")
    assert result.returncode == 2
    assert one_line(result.stderr) == f"cmdcl: error: {not_hdf5}: not an HDF5 file. Fix: pass a file written by " \
                                      "`cmdcl extract`."


def test_debug_shows_the_traceback():
    result = run_cmdcl("--debug", "extract", "--dataset", "kinetics", "--root", ".")
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr and "unknown dataset 'kinetics'" in result.stderr


def cli_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 2
    return one_line(capsys.readouterr().err)


@pytest.mark.parametrize("dataset, words", [
    ("breakfast", ["BreakfastII_15fps_qvga_sync", "expected"]),
    ("coin", ["COIN.json not found"]),
    ("charades", ["Charades_v1_classes.txt not found"]),
    ("manifest", ["no manifest.csv or manifest.jsonl", "Fix:"]),
])
def test_wrong_annotation_layout(tmp_path, capsys, dataset, words):
    (tmp_path / "videos").mkdir()
    line = cli_error(["extract", "--dataset", dataset, "--root", str(tmp_path), "--model", "cmdcl-tiny"], capsys)
    assert str(tmp_path) in line
    for word in words:
        assert word in line, line


def test_manifest_with_wrong_columns(tmp_path, capsys):
    (tmp_path / "classes.txt").write_text("a\n")
    (tmp_path / "manifest.csv").write_text("id,file\nv0,v0.mp4\n")
    line = cli_error(["extract", "--dataset", "manifest", "--root", str(tmp_path)], capsys)
    assert "manifest.csv:1: missing column video_id, path, split" in line and "expected video_id,path" in line


@pytest.mark.parametrize("option, value, words", [
    ("--batch-size", "-3", "--batch-size -3: must be at least 1"),
    ("--timeout", "0", "--timeout 0.0: must be positive"),
    ("--fps", "-1", "--fps -1.0: must be a positive rate"),
    ("--patch-grid", "-1", "--patch-grid -1"),
    ("--flush-every", "0", "--flush-every 0: must be at least 1"),
    ("--limit", "0", "--limit 0: must be at least 1"),
])
def test_bad_extract_numbers(tmp_path, capsys, option, value, words):
    line = cli_error(["extract", "--dataset", "manifest", "--root", str(tmp_path), option, value], capsys)
    assert words in line


def test_features_that_are_not_ours(foreign_hdf5, not_hdf5, tmp_path, capsys):
    for command in (["inspect"], ["merge", "--out", str(tmp_path / "m.h5")],
                    ["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--features"]):
        line = cli_error([*command, str(foreign_hdf5)], capsys)
        assert f"{foreign_hdf5}: HDF5 file has no format_version attribute; not a cmdcl feature file" in line \
            or "none.pt: checkpoint does not exist" in line, line
    line = cli_error(["train-head", "--features", str(foreign_hdf5), "--method", "linear"], capsys)
    assert "not a cmdcl feature file" in line
    line = cli_error(["inspect", str(tmp_path / "absent.h5")], capsys)
    assert "absent.h5: feature file does not exist" in line
    line = cli_error(["inspect", str(tmp_path)], capsys)
    assert "folder holds no .h5 feature files" in line


def test_resuming_a_checkpoint_of_another_label_vocabulary(tmp_path, capsys):
    world = order_world(tmp_path / "world.h5", train_per_class=3, test_per_class=1)
    run = tmp_path / "run"
    cli_main(["train-head", "--features", str(world), "--out", str(run), "--method", "linear", "--epochs", "1",
              "--device", "cpu", "--no-progress", "--no-evaluate"])
    other = order_world(tmp_path / "other.h5", train_per_class=3, test_per_class=1, scripts=ORDER_SCRIPTS[:3])
    line = cli_error(["train-head", "--features", str(other), "--out", str(tmp_path / "run2"), "--method", "linear",
                      "--resume", str(run / "last.pt"), "--device", "cpu", "--no-progress"], capsys)
    assert str(run / "last.pt") in line and "label vocabulary (class_names)" in line and "4 vs 3 names" in line
    # A damaged last.pt found by `--resume auto` is refused too, naming it, rather than silently started over.
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:500])
    line = cli_error(["train-head", "--features", str(world), "--out", str(run), "--method", "linear", "--epochs", "2",
                      "--device", "cpu", "--no-progress", "--no-evaluate"], capsys)
    assert f"{run / 'last.pt'}: not a readable cmdcl checkpoint" in line
    assert "--resume never" in line and str(run / 'best.pt') in line


def test_dataset_flags_reach_the_adapter(tmp_path, capsys):
    from dataset_fixtures import write_breakfast

    root = write_breakfast(tmp_path / "breakfast")
    line = cli_error(["extract", "--dataset", "breakfast", "--root", str(root), "--split-scheme", "s9"], capsys)
    assert "breakfast split 's9' unknown; choose one of ltar, s1, s2, s3, s4" in line
    line = cli_error(["extract", "--dataset", "breakfast", "--root", str(tmp_path), "--video-dir", str(tmp_path / "v")],
                     capsys)
    assert f"{tmp_path / 'v'} is not a folder" in line
    line = cli_error(["extract", "--dataset", "coin", "--root", str(root), "--stereo-channel", "ch1"], capsys)
    assert line == "cmdcl: error: --stereo-channel is an option of breakfast, not of coin. Fix: drop it; coin's " \
                   "dataset options are: --annotation --taxonomy --video-dir"


def test_extract_help_lists_the_dataset_options_per_dataset():
    result = run_cmdcl("extract", "--help")
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    assert "breakfast: --split-scheme --stereo-channel --background --annotations --video-dir" in text
    assert "coin: --annotation --taxonomy --video-dir" in text and "charades: --annotations --video-dir" in text
    assert "ltar|s1|s2|s3|s4" in text


def test_help_shows_bracketed_text_as_written():
    """Rich markup took `[gpu]` and `[ours]` for style tags and dropped them; help is printed as written."""
    from help_text import help_text

    extract = help_text("extract")
    assert "nvdec (GPU, cmdcl[gpu])" in extract
    # The decoder default as the code applies it (decoders.DEFAULT_BY_CONTAINER), not "decord when installed".
    from cmdcl.extract.decoders import DEFAULT_BY_CONTAINER

    assert DEFAULT_BY_CONTAINER["mp4"] == "pyav" and DEFAULT_BY_CONTAINER["avi"] == "decord"
    assert "decord for AVI when installed, PyAV for MP4" in extract
    head = help_text("train-head")
    assert head.count("[ours]") >= 5 and "pip install 'cmdcl[tensorboard]'" in head
