"""Typer options generated from a config dataclass (pipelines/config_options.py)."""
import inspect
from dataclasses import dataclass, field, fields

import pytest
import typer
from typer.testing import CliRunner

from cmdcl.head.model.config import HeadConfig
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


@dataclass
class Hooked:
    name: str = field(metadata={"help": "Required."})  # no default: a required option
    items: list = field(default=None, metadata={"help": "a,b", "parse": lambda s: s.split(",") if s else None})
    count: int = field(default=4, metadata={"help": "n", "parse": lambda n: 9 if n is None else n, "option_type": int})
    internal: dict = field(default_factory=dict, metadata={"cli": False})


def run_hooked(args):
    seen = {}
    app = typer.Typer()

    @app.command()
    @config_options(Hooked, param="cfg")
    def command(cfg: Hooked = None):
        seen.update(cfg=cfg)

    @app.command()
    def other():
        pass

    return CliRunner().invoke(app, ["command", *args]), seen


def test_parse_hooks_required_fields_and_excluded_fields():
    result, seen = run_hooked(["--name", "n"])
    assert result.exit_code == 0, result.output
    assert seen["cfg"] == Hooked(name="n", items=None, count=9, internal={})
    result, seen = run_hooked(["--name", "n", "--items", "a,b", "--count", "0"])
    assert seen["cfg"] == Hooked(name="n", items=["a", "b"], count=0)
    result, _ = run_hooked(["--count", "1"])
    assert result.exit_code != 0 and "--name" in result.output  # required
    result, _ = run_hooked(["--name", "n", "--internal", "x"])
    assert result.exit_code != 0 and "No such option" in result.output
    result, _ = run_hooked(["--name", "n", "--count", "x"])
    assert result.exit_code != 0  # option_type int: click refuses "x"


def test_a_factory_field_must_be_excluded_or_have_a_plain_default():
    @dataclass
    class Bad:
        items: list = field(default_factory=list)

    with pytest.raises(TypeError, match="needs a plain default"):
        config_options(Bad)(lambda cfg=None: None)


def test_extract_options_come_from_extract_config():
    from cmdcl.extract.config import ExtractConfig
    from cmdcl.pipelines.cmd_extract import extract

    params = inspect.signature(extract).parameters
    cli = [f for f in fields(ExtractConfig) if f.metadata.get("cli", True)]
    assert all(f.metadata.get("help") for f in cli)
    assert {f.name for f in cli} <= set(params) and "shard" in params and "dataset_options" not in params
    assert "cfg" not in params and "split_scheme" in params  # dataset flags still added after the generated ones
