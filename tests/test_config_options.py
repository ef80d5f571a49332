"""Typer options generated from a config dataclass (pipelines/config_options.py)."""
from dataclasses import dataclass, field, fields

import pytest
import typer
from typer.testing import CliRunner

from cmdcl.head.config import HeadConfig
from cmdcl.pipelines.config_options import config_options


@dataclass
class Toy:
    size: int = field(default=3, metadata={"help": "How big."})
    use_fast: bool = field(default=True, metadata={"help": "Go fast.", "flag": "--fast/--slow"})
    name: str = "x"
    ratio: float = 0.5


def run(args):
    seen = {}
    app = typer.Typer()

    @app.command()
    @config_options(Toy, param="toy")
    def command(path: str = typer.Option(..., "--path"), toy: Toy = None, verbose: bool = typer.Option(False)):
        seen.update(path=path, toy=toy, verbose=verbose)

    @app.command()
    def other():  # two commands, so that typer keeps the command name
        pass

    result = CliRunner().invoke(app, ["command", *args])
    return result, seen


def test_fields_become_options_with_their_defaults_and_help():
    result, seen = run(["--path", "p"])
    assert result.exit_code == 0, result.output
    assert seen == {"path": "p", "toy": Toy(), "verbose": False}
    result, seen = run(["--path", "p", "--size", "7", "--slow", "--name", "y", "--ratio", "0.25", "--verbose"])
    assert seen["toy"] == Toy(size=7, use_fast=False, name="y", ratio=0.25) and seen["verbose"]
    result, _ = run(["--help"])
    assert "How big." in result.output and "--fast" in result.output and "--slow" in result.output


def test_wrong_uses_are_refused_when_decorating():
    with pytest.raises(TypeError, match="no parameter 'cfg'"):
        config_options(Toy)(lambda toy=None: None)
    with pytest.raises(TypeError, match="already has parameters named like config fields"):
        config_options(Toy, param="toy")(lambda size=1, toy=None: None)


def test_every_head_option_has_help():
    assert all(f.metadata.get("help") for f in fields(HeadConfig))
