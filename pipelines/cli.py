"""Entry point of the `cmdcl` command.

The sub-commands are grouped by stage in `cmd_*.py` modules (each exports a `COMMANDS` table: extract,
inspect, merge, verify in cmd_extract; train-head, evaluate, predict in cmd_head; compare in cmd_compare;
context-labels, confounding, scene-split in cmd_confounding;
...). They import torch/decord/open_clip only inside the function bodies, so `cmdcl --help` stays fast and light.
"""
from __future__ import annotations

import os
import sys
from importlib import import_module

import typer

from cmdcl.core.errors import CmdclError

app = typer.Typer(
    name="cmdcl",
    help="Cross-Modal Dual-Causal Learning for long-term action recognition on frozen CLIP features.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: Rich markup would take bracketed text such as `cmdcl[gpu]` or "[ours]" for style tags and drop it.
    rich_markup_mode=None,
    context_settings={"max_content_width": 4000},  # as wide as the terminal, not click's 80 columns
)


def _register() -> None:
    # Sub-command modules are imported here (they are light: typer + stdlib only at import time).
    from . import cmd_extract, cmd_head, cmd_demo, cmd_pretrain, cmd_report  # noqa: F401
    from . import cmd_compare, cmd_confounding

    for module in (cmd_extract, cmd_head, cmd_demo, cmd_report, cmd_pretrain, cmd_compare, cmd_confounding):
        for name, func in getattr(module, "COMMANDS", {}).items():
            app.command(name)(func)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    if debug:
        os.environ["CMDCL_DEBUG"] = "1"


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a CmdclError becomes one line on stderr and exit code 2 (traceback with --debug)."""
    args = sys.argv[1:] if argv is None else argv
    if "--debug" in args:
        os.environ["CMDCL_DEBUG"] = "1"
    _register()
    try:
        code = app(args=args, prog_name="cmdcl", standalone_mode=False)
        # Without standalone mode, click returns (not raises) the code of `raise typer.Exit(n)`.
        if isinstance(code, int) and code:
            sys.exit(code)
    except CmdclError as exc:
        if os.environ.get("CMDCL_DEBUG"):
            raise
        _fail(exc, exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        if os.environ.get("CMDCL_DEBUG"):
            raise
        typer.echo("cmdcl: interrupted (SIGINT).", err=True)
        sys.exit(130)
    except _click_errors() as exc:
        _show_click_error(exc, args)


def _fail(error: CmdclError, exit_code: int) -> None:
    """The one way an error leaves the CLI: `cmdcl: error: <what>. Fix: <how>` on stderr, then the exit code."""
    typer.echo(f"cmdcl: error: {error.one_line()}", err=True)
    sys.exit(exit_code)


def _click_errors() -> tuple[type[Exception], ...]:
    """ClickException of every click that typer may run on: its vendored copy (typer 0.2x ships
    `typer._click`) and the real click (older typer). Catching only `click.ClickException` let the
    vendored one's usage errors escape as tracebacks."""
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(import_module(module).ClickException)
        except ImportError:
            pass
    return tuple(found)


def _show_click_error(exc: Exception, args: list[str]) -> None:
    """A usage error (unknown option or command, bad or missing value) as one line, exit 2."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `cmdcl` alone: the help text is the message
        exc.show()
        sys.exit(exc.exit_code)
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        command = ctx.command_path
    else:  # some parser errors (e.g. an option missing its value) carry no context: name the sub-command
        first = next((a for a in args if not a.startswith("-")), None)
        command = f"cmdcl {first}" if first in {c.name for c in app.registered_commands} else "cmdcl"
    message = " ".join(exc.format_message().split())
    _fail(CmdclError(f"{command}: {message}", fix=f"see `{command} --help`."), exc.exit_code)


if __name__ == "__main__":
    main()
