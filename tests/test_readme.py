"""The README's "Your own videos" commands and its Python example run as written, on generated videos, so that
they cannot go stale: each block the test runs is marked `<!-- readme-test: NAME -->` in README.md.

Weights: the README's `cmdcl extract` downloads open_clip's default weights, and tests may not use the network.
Every `cmdcl extract` line therefore gets `--model cmdcl-tiny --pretrained FILE` appended, FILE being a randomly
initialised cmdcl-tiny saved by this test (a local weights file is an ordinary `--pretrained` value). Besides
that, only `--workers 0 --no-progress` (no worker processes, no progress bars) are appended; training runs at its
defaults. A command or an option the README names that the CLI does not take, a manifest it cannot read or an
import that does not exist fails this test.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"<!-- readme-test: ([\w.-]+) -->\n```[\w-]*\n(.*?)```", re.S)
# What the test appends to each command of the README, by subcommand, besides the weights (module docstring).
APPENDED = {"extract": ["--workers", "0", "--no-progress"], "train-head": ["--no-progress"]}


def readme_blocks(text: str | None = None) -> dict[str, str]:
    """{marker name: the fenced block right after the marker}."""
    text = (ROOT / "README.md").read_text(encoding="utf-8") if text is None else text
    return {name: body for name, body in MARKED.findall(text)}


def commands(block: str) -> list[list[str]]:
    """The shell block's commands, each as argv (comments dropped, one command a line)."""
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip() and
            not line.lstrip().startswith("#")]


def write_videos(folder: Path, manifest: str) -> list[str]:
    """A small video for every path the manifest names (the test's stand-in for the user's own videos)."""
    from video_fixtures import write_test_video

    paths = [line.split(",")[1] for line in manifest.strip().splitlines()[1:]]
    for i, path in enumerate(paths):
        write_test_video(folder / path, num_frames=24 + 4 * i, height=32, width=48, pattern="noise", seed=i)
    return paths


def test_the_blocks_are_found_and_parsed():
    blocks = readme_blocks()
    assert {"classes.txt", "manifest.csv", "shell", "python"} <= set(blocks)
    argvs = commands(blocks["shell"])
    assert [a[:2] for a in argvs][:3] == [["cmdcl", "extract"], ["cmdcl", "train-head"], ["cmdcl", "evaluate"]]
    assert readme_blocks("<!-- readme-test: x -->\n```bash\na b  # c\n```\n") == {"x": "a b  # c\n"}
    assert commands("a b  # c\n# d\n") == [["a", "b"]]


@pytest.mark.slow
def test_the_own_videos_commands_and_the_python_example_run(tmp_path, monkeypatch, capsys):
    import torch

    from cmdcl.extract.models import load_encoder
    from cmdcl.pipelines.cli import main

    blocks = readme_blocks()
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "my_videos"  # the folder the README's commands name
    root.mkdir()
    (root / "classes.txt").write_text(blocks["classes.txt"])
    (root / "manifest.csv").write_text(blocks["manifest.csv"])
    write_videos(root, blocks["manifest.csv"])
    weights = tmp_path / "cmdcl-tiny-random.pt"
    encoder = load_encoder("cmdcl-tiny", pretrained="random", device="cpu", precision="fp32", seed=0)
    torch.save(encoder.model.state_dict(), weights)

    for argv in commands(blocks["shell"]):
        assert argv[0] == "cmdcl", argv
        extra = APPENDED.get(argv[1], [])
        if argv[1] == "extract":
            extra = [*extra, "--model", "cmdcl-tiny", "--pretrained", str(weights)]
        main(argv[1:] + extra)
    out = capsys.readouterr().out
    assert (root / "clips").is_dir() and list((tmp_path / "feats" / "mine").glob("shard-*.h5"))
    assert (tmp_path / "runs" / "mine" / "metrics_test.json").is_file()
    assert "pour_coffee" in out and "make_tea" in out  # predict printed the README's classes

    exec(compile(blocks["python"], "README.md (python example)", "exec"), {})
    assert (tmp_path / "runs" / "mine-py" / "best.pt").is_file()
    assert re.search(r"^(0(\.\d+)?|1\.0)$", capsys.readouterr().out.strip().splitlines()[-1], re.M)
