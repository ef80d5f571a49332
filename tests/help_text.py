"""`cmdcl <command> --help` as one line of words, for tests that look for a name in it."""
from __future__ import annotations

import contextlib
import io
import os


def help_text(command: str) -> str:
    """The help of `cmdcl command`, printed unwrapped (a wide terminal), whitespace collapsed."""
    from cmdcl.pipelines.cli import main

    out, width = io.StringIO(), os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "4000"  # the help formatter reads it (shutil.get_terminal_size): no wrapping
    try:
        with contextlib.redirect_stdout(out):
            try:
                main([command, "--help"])
            except SystemExit:
                pass
    finally:
        if width is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = width
    return " ".join(out.getvalue().split())
