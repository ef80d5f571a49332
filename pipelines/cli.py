"""Entry point of the `cmdcl` command.

Each sub-command lives in its own `cmd_*.py` module and imports torch/decord/open_clip only
inside the function body, so `cmdcl --help` stays fast and light.
"""
from __future__ import annotations

import os
import sys

import typer

from cmdcl.core.errors import CmdclError

app = typer.Typer(
    name="cmdcl",
    help="Cross-Modal Dual-Causal Learning for long-term action recognition on frozen CLIP features.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Sub-command modules are imported here (they are light: typer + stdlib only at import time).
    from cmdcl.pipelines import cmd_extract, cmd_head, cmd_demo, cmd_pretrain, cmd_report  # noqa: F401

    for module in (cmd_extract, cmd_head, cmd_demo, cmd_report, cmd_pretrain):
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
        typer.echo(f"cmdcl: error: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
