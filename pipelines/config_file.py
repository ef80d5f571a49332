"""`train-head --config FILE`: a run described by a YAML or JSON file (and the demo's / ablation's `--row-config`).

A file is a mapping whose keys are train-head's options written as field names (`sta_layers` or `sta-layers`):
the HeadConfig fields and the run options (`features`, `seeds`, `deterministic`, `report_to`, ...).
Precedence: defaults < the file < the flags typed on the command line (Click's parameter source tells a typed
flag from a default, so `--lr 1e-3` typed overrides the file even when it equals the default).

A run's own config.json is a valid input. The rule: a file with a `config` mapping is read as one; `config`
holds the HeadConfig fields, `features` and `deterministic` are taken as run options, and the keys that record
the run that wrote it (RUN_RECORD: the resolved schedule, dims, device and data mode, code_version, torch, the
command, ...) are ignored. So `cmdcl train-head --config runs/a/config.json --out runs/b` repeats run a.

A file must be valid on its own: an unknown key (with the closest names), a value of the wrong type, or options
HeadConfig.check() refuses are a one-line error naming the file and the key. Only the standard library, typer
and PyYAML are imported here (`cmdcl --help` stays light).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from cmdcl.core.errors import CmdclError, shorten
from cmdcl.head.model.config import LEGACY, HeadConfig

from .config_options import cli_fields

# Keys of a run's config.json that describe the run that wrote it (head/training/train.py: _write_run_files,
# head/training/run_files.py), not options: ignored when the file is read back.
RUN_RECORD = frozenset({"method", "dims", "multilabel", "aux_step_loss_used", "parameters", "train_videos",
                        "val_videos", "schedule", "selection", "world_size", "device", "data_mode", "code_version",
                        "torch", "command"})
HEAD_FIELDS = {f.name for f in cli_fields(HeadConfig)}
_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}


@dataclass
class ConfigFile:
    """What a config file sets: HeadConfig fields (`head`) and run options (`run`), values already typed."""
    path: Path
    head: dict[str, Any]
    run: dict[str, Any]


def read_config_file(path: str | Path, run_options: Mapping[str, Any]) -> ConfigFile:
    """Read and check `path`; `run_options`: {name: type hint} of the command's options besides HeadConfig's."""
    path = Path(path)
    data = _parse(path)
    head, run = {}, {}
    block = data.pop("config", None)
    if block is not None:  # a run's config.json
        if not isinstance(block, dict):
            raise CmdclError(f"{path}: config: expected a mapping of HeadConfig options, got {type(block).__name__}.")
        head = {_field(path, f"config.{k}", HEAD_FIELDS): v for k, v in block.items()}
        data = {k: v for k, v in data.items() if _name(k) not in RUN_RECORD}
    for key, value in data.items():
        name = _field(path, key, HEAD_FIELDS | set(run_options))
        if name in head or name in run:
            raise CmdclError(f"{path}: {key} is given twice.", fix="keep one of them.")
        (head if name in HEAD_FIELDS else run)[name] = value
    if block is not None and "mediator" not in head:  # config.json of a run before the learned mediator: the
        head = {**LEGACY, **head}                     # head it trained, as HeadConfig.from_dict reads it
    hints = typing.get_type_hints(HeadConfig)
    head = {k: coerce(v, hints[k], f"{path}: {k}") for k, v in head.items()}
    run = {k: coerce(v, run_options[k], f"{path}: {k}") for k, v in run.items()}
    try:
        HeadConfig(**head).check()
    except CmdclError as exc:
        raise CmdclError(f"{path}: {exc.message}", fix=exc.fix or "correct the file.") from None
    return ConfigFile(path, head, run)


def _parse(path: Path) -> dict[str, Any]:
    """The file's mapping: JSON for .json, YAML otherwise (YAML also reads JSON)."""
    if not path.is_file():
        raise CmdclError(f"--config {path}: no such file.", fix="pass a YAML or JSON file, e.g. a run's config.json.")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
        else:
            import yaml

            data = yaml.safe_load(path.read_text())
    except Exception as exc:  # noqa: BLE001 (json, yaml and decoding errors: one line naming the file)
        raise CmdclError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} "
                         f"({shorten(exc, 160)}).") from None
    if not isinstance(data, dict):
        raise CmdclError(f"{path}: expected a mapping of option: value, got {type(data).__name__}.")
    return data


def _name(key: Any) -> str:
    return str(key).strip().replace("-", "_")


def _field(path: Path, key: str, known: set[str]) -> str:
    name = _name(key.rpartition(".")[2] if key.startswith("config.") else key)
    if name in known:
        return name
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "see `cmdcl train-head --help` for the options."
    raise CmdclError(f"{path}: unknown key {key!r}.", fix=hint)


def coerce(value: Any, kind: Any, where: str) -> Any:
    """`value` as type `kind` (bool, int, float, str, Path, Optional[...], List[str]), or a one-line error.
    Floats also read strings ("1e-3": PyYAML's YAML 1.1 reads it as a string); comma-separated options
    (seeds, report_to) also read lists."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # Optional[X] or X | None
        return None if value is None else coerce(value, args[0], where)
    if typing.get_origin(kind) is list:
        if isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [value] if isinstance(value, str) else list(value)
        raise CmdclError(f"{where}: expected a string or a list of strings, got {value!r}.")
    ok = {bool: isinstance(value, bool), int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, (str, int)) and not isinstance(value, bool), Path: isinstance(value, str)}
    if ok.get(kind):
        return kind(value)
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if kind is str and isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return ",".join(str(v) for v in value)
    raise CmdclError(f"{where}: expected {_EXPECTED.get(kind, kind)}, got {value!r}.")


def typed_flags(ctx: Any) -> set[str]:
    """The parameters the user typed (or set through an environment variable), not left at their default."""
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, source in sources.items()
            if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")}


def apply_config_file(file: ConfigFile, typed: set[str], cfg: HeadConfig,
                      run: dict[str, Any]) -> tuple[HeadConfig, dict[str, Any]]:
    """`cfg` and `run` (the command's values) with the file's values for every option not typed."""
    cfg = dataclasses.replace(cfg, **{k: v for k, v in file.head.items() if k not in typed})
    return cfg, {**run, **{k: v for k, v in file.run.items() if k not in typed}}


def read_row_configs(items: Sequence[str], run_options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`--row-config NAME=FILE` of the demo and the ablation runner -> {NAME: the file's HeadConfig options}.
    A row takes only the HeadConfig options: the runner fixes features, seeds and device for every row."""
    rows: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, file = (part.strip() for part in item.partition("="))
        if not sep or not name or not file:
            raise CmdclError(f"--row-config {item!r}: expected NAME=FILE, e.g. mine=runs/a/config.json.")
        rows[name] = read_config_file(file, run_options).head
    return rows
