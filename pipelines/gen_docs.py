"""`python -m cmdcl.pipelines.gen_docs [--check]`: rewrite the docs sections that list the datasets
and their options, the methods, the metrics and the commands, from the tables that define them.

Each section sits between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->` (inline within a line
or around whole lines); only what lies between is rewritten. Sources: `DATASETS` and `DATASET_OPTIONS`
(extract/datasets/registry.py), `METHODS` (head/model/registry.py), `METRICS` (head/metrics/registry.py) and
the commands registered on the Typer app (pipelines/cli.py), all light: no torch is imported. The command
reference keeps each row's hand-written text and the order of its rows; a command of the app without a row
gets one from its help, a row whose command is
gone is dropped. tests/test_gen_docs.py fails when a file is stale.
"""
from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path
from typing import Callable

from cmdcl.core.errors import CmdclError

ROOT = Path(__file__).resolve().parents[1]  # the repository (pipelines/ is mapped to cmdcl.pipelines)
MARKED = re.compile(r"(<!-- generated: ([\w-]+) -->)(.*?)(<!-- end generated: \2 -->)", re.S)
# Which sections each file must hold (a lost marker is an error, not a section silently left stale).
FILES: dict[str, tuple[str, ...]] = {
    "docs/COMMANDS.md": ("commands", "pretrain-datasets", "dataset-names", "dataset-flags", "method-option",
                         "datasets"),
    "docs/EXTRACT.md": ("dataset-names", "dataset-table"),
    "docs/TRAINING.md": ("methods", "method-table", "metric-table"),
}


def _cell(text: str) -> str:
    """Text for a markdown table cell: a bare `|` would end the cell, even inside backticks."""
    return text.replace("|", "\\|")


def _plain(text: str) -> str:
    """A table's plain-text help (no markdown in it) for a cell: `<P>` is a path part, not an HTML tag."""
    return _cell(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def _block(lines: list[str]) -> str:
    """Whole lines between the markers, set off by blank lines (so the markers stay apart from a table)."""
    return "\n\n" + "\n".join(lines) + "\n\n"


def dataset_names(_: str = "") -> str:
    from cmdcl.extract.datasets.registry import DATASETS

    return ", ".join(f"`{name}`" for name in DATASETS)


def dataset_flags(_: str = "") -> str:
    """The dataset flags of `cmdcl extract`, with their values where they are a choice."""
    from cmdcl.extract.datasets.registry import DATASET_OPTIONS

    flags = (o.flag + (f" {o.metavar}" if "|" in o.metavar else "") for o in DATASET_OPTIONS)
    return _cell(f"`{' '.join(flags)}`")


def pretrain_datasets(_: str = "") -> str:
    from cmdcl.extract.datasets.registry import DATASETS

    return _cell(f"`--dataset {'|'.join(name for name, entry in DATASETS.items() if entry.pretrain)}`")


def datasets(_: str = "") -> str:
    """docs/COMMANDS.md's "Datasets": each name with what it is (`about`, else what ROOT holds)."""
    from cmdcl.extract.datasets.registry import DATASETS

    return ", ".join(f"`{name}` ({entry.about or 'ROOT holds ' + entry.layout})" for name, entry in DATASETS.items())


def dataset_table(_: str = "") -> str:
    """docs/EXTRACT.md: one row per dataset, what ROOT holds and its flags with their help there."""
    from cmdcl.extract.datasets.registry import DATASETS, options_of

    rows = ["| dataset | `--root` holds | dataset options |", "|---|---|---|"]
    for name, entry in DATASETS.items():
        flags = "; ".join(f"`{o.flag}` (`{o.keyword}=`): {_plain(entry.options[o.keyword].rstrip('.'))}"
                          for o in options_of(name))
        rows.append(f"| `{name}` | {_plain(entry.layout)} | {flags or 'none'} |")
    return _block(rows)


def method_option(_: str = "") -> str:
    from cmdcl.head.model.registry import METHODS

    return _cell(f"`[--method {'|'.join(METHODS)}]`")


def methods(_: str = "") -> str:
    """docs/TRAINING.md's `--method` list: each name with its help phrase."""
    from cmdcl.head.model.registry import METHODS

    return ", ".join(f"`{name}` ({entry.help})" for name, entry in METHODS.items())


def method_table(_: str = "") -> str:
    """docs/TRAINING.md: each method, the options it reads and its relative cost."""
    from cmdcl.head.model.registry import METHODS

    rows = ["| method | what | options it reads (besides the recipe) | cost |", "|---|---|---|---|"]
    for name, entry in METHODS.items():
        options = ", ".join(f"`{o}`" for o in entry.options) or "none"
        rows.append(f"| `{name}` | {_plain(entry.help)} | {options} | {entry.cost} |")
    return _block(rows)


def metric_table(_: str = "") -> str:
    """docs/TRAINING.md: each metric, which way is better, how `compare` takes it and its demo columns."""
    from cmdcl.head.metrics.registry import METRICS

    rows = ["| metric | what | better | `compare --metric` | demo columns |", "|---|---|---|---|---|"]
    for name, entry in METRICS.items():
        paired = "no" if entry.paired is None else f"`{name}:FACTOR`" if entry.family else f"`{name}`"
        demo = ", ".join(f"`{c.header}` ({'IID' if c.split == 'test' else 'OOD'})" for c in entry.demo) or "none"
        rows.append(f"| `{name}` | {_plain(entry.help)} | {'higher' if entry.higher_is_better else 'lower'} | "
                    f"{paired} | {demo} |")
    return _block(rows)


def command_names() -> list[str]:
    """The commands registered on the Typer app, in registration order (light: the command modules import
    torch only inside their bodies)."""
    from cmdcl.pipelines import cli

    cli._register()
    names = [c.name or c.callback.__name__.replace("_", "-") for c in cli.app.registered_commands]
    return list(dict.fromkeys(names))


def _command_help(name: str) -> str:
    from cmdcl.pipelines import cli

    command = next(c for c in cli.app.registered_commands if (c.name or c.callback.__name__) == name)
    return (command.help or inspect.getdoc(command.callback) or "").strip().splitlines()[0]


def commands(current: str) -> str:
    """docs/COMMANDS.md's command reference: the present rows of the app's commands, in their order; a row for each
    command that has none (from its help); none for a command the app no longer has."""
    header = ["| command | what it does |", "|---|---|"]
    rows = {}
    for line in current.strip().splitlines():
        match = re.match(r"\| `cmdcl ([\w-]+)", line)
        if match:
            rows[match.group(1)] = line
    names = command_names()
    kept = [rows[name] for name in rows if name in names]
    added = [f"| `cmdcl {name}` | {_cell(_command_help(name))} |" for name in names if name not in rows]
    return _block(header + kept + added)


SECTIONS: dict[str, Callable[[str], str]] = {
    "commands": commands, "pretrain-datasets": pretrain_datasets, "dataset-names": dataset_names,
    "dataset-flags": dataset_flags, "datasets": datasets, "dataset-table": dataset_table,
    "method-option": method_option, "methods": methods, "method-table": method_table,
    "metric-table": metric_table,
}


def regenerate(text: str, where: str, required: tuple[str, ...] = ()) -> str:
    """`text` with every marked section rewritten from the tables; an unknown section name, or a required one
    with no markers, is a one-line error naming `where`."""
    found = set()

    def rewrite(match: re.Match) -> str:
        name = match.group(2)
        if name not in SECTIONS:
            raise CmdclError(f"{where}: unknown generated section {name!r}; known: {', '.join(SECTIONS)}",
                             fix="fix the marker's name")
        found.add(name)
        inner = MARKED.sub(rewrite, match.group(3))  # sections inside this one (the command rows' lists) first
        return match.group(1) + SECTIONS[name](inner) + match.group(4)

    result = MARKED.sub(rewrite, text)
    missing = [name for name in required if name not in found]
    if missing:
        raise CmdclError(f"{where}: no section '<!-- generated: {missing[0]} -->' ... "
                         f"'<!-- end generated: {missing[0]} -->'", fix="put the markers back around what they generate")
    return result


def stale_files(root: Path = ROOT) -> dict[str, str]:
    """{file relative to root: its regenerated text} for every file whose sections are out of date."""
    stale = {}
    for name, required in FILES.items():
        path = root / name
        if not path.is_file():
            raise CmdclError(f"{path} does not exist", fix="run the generator from the repository's checkout")
        text = path.read_text(encoding="utf-8")
        fresh = regenerate(text, name, required)
        if fresh != text:
            stale[name] = fresh
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cmdcl.pipelines.gen_docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only list the stale files; exit 1 if any")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this checkout)")
    args = parser.parse_args(argv)
    stale = stale_files(args.root)
    for name, fresh in stale.items():
        if args.check:
            print(f"stale: {name}")
        else:
            (args.root / name).write_text(fresh, encoding="utf-8")
            print(f"rewrote {name}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CmdclError as exc:
        sys.exit(f"gen_docs: error: {exc.one_line()}")
