"""Typer options generated from a config dataclass: one source of each option's name, default and help.

As litgpt builds its CLI from its dataclasses: every field becomes `--field-name` (bools `--x/--no-x`)
with the field's default, type and `metadata["help"]`; `metadata["flag"]` overrides the flag text. The
decorated command takes one parameter of the config's type and gets the built config in it:

    @config_options(HeadConfig, param="cfg")
    def train_head(features: ..., cfg: HeadConfig = None, resume: ...): ...

The generated options take the place of `cfg` in the command's signature (and so in its --help).
Further `metadata` keys, for the few fields that need them:

- `cli: False`: not an option; the field keeps its default and the command sets it itself
  (e.g. ExtractConfig.shard, built from three options; `dataclasses.replace(cfg, shard=...)`).
- `parse`: a function from the raw option value to the field's value; the option then has type
  `Optional[metadata["option_type"]]` (default `str`) and default None, and `parse` also gets None when
  the option is not given (e.g. `--splits a,b` -> ["a", "b"]; `--workers` unset -> one per core).
- a field without a default (dataclasses.MISSING) becomes a required option.
Only typer and the standard library are imported here: the config module must not import torch either,
so that `cmdcl --help` stays light.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from typing import Any, Callable, Optional

import typer


def flag_of(field: dataclasses.Field, kind: type) -> str:
    """`metadata["flag"]`, else `--field-name`, with `/--no-field-name` for booleans."""
    if field.metadata.get("flag"):
        return field.metadata["flag"]
    name = "--" + field.name.replace("_", "-")
    return f"{name}/--no-{name[2:]}" if kind is bool else name


def option_parameters(config_type: type) -> list[inspect.Parameter]:
    """One keyword parameter per dataclass field, its default a typer.Option with the field's flag and help."""
    hints = typing.get_type_hints(config_type)
    params = []
    for field in cli_fields(config_type):
        kind, default = hints[field.name], field.default
        if "parse" in field.metadata:
            kind, default = Optional[field.metadata.get("option_type", str)], None
        elif default is dataclasses.MISSING:
            if field.default_factory is not dataclasses.MISSING:
                raise TypeError(f"{config_type.__name__}.{field.name} needs a plain default to become an option.")
            default = ...  # required option
        option = typer.Option(default, flag_of(field, kind), help=field.metadata.get("help"))
        params.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))
    return params


def cli_fields(config_type: type) -> list[dataclasses.Field]:
    """The fields that become options: all but those marked `metadata={"cli": False}`."""
    return [f for f in dataclasses.fields(config_type) if f.metadata.get("cli", True)]


def build_config(config_type: type, values: dict[str, Any]) -> Any:
    """The config from the options' values, each passed through its field's `parse` hook when it has one."""
    parsers = {f.name: f.metadata["parse"] for f in cli_fields(config_type) if "parse" in f.metadata}
    return config_type(**{name: parsers[name](value) if name in parsers else value for name, value in values.items()})


def config_options(config_type: type, param: str = "cfg") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a Typer command: replace its `param` parameter by one option per field of `config_type`."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command)
        if param not in signature.parameters:
            raise TypeError(f"{command.__name__} has no parameter {param!r} to fill from {config_type.__name__}.")
        generated = option_parameters(config_type)
        names = {p.name for p in generated}
        clash = names & set(signature.parameters)
        if clash:
            raise TypeError(f"{command.__name__} already has parameters named like config fields: {sorted(clash)}.")
        own = list(signature.parameters.values())
        at = own.index(signature.parameters[param])
        # keyword-only, as the generated options are; a **kwargs parameter stays last, for later decorators
        keyword = [p if p.kind is p.VAR_KEYWORD else p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            return command(**kwargs, **{param: build_config(config_type, values)})

        hints = typing.get_type_hints(command)
        wrapper.__signature__ = signature.replace(parameters=keyword[:at] + generated + keyword[at + 1:])
        wrapper.__annotations__ = {**{k: v for k, v in hints.items() if k != param},
                                   **{p.name: p.annotation for p in generated}}
        del wrapper.__wrapped__  # Typer must read the generated signature, not the command's own
        return wrapper
    return decorate
