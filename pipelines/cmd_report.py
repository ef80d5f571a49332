"""`cmdcl report RUN`: figures and one HTML page for a trained run (head/report.py, docs/REPORT.md).

torch and matplotlib are imported inside the command body so that `cmdcl --help` stays light.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def report(
    run: Path = typer.Argument(..., help="Run folder written by `cmdcl train-head` (config.json, best.pt, ...)."),
    features: Optional[List[str]] = typer.Option(
        None, "--features", "-f", help="Feature file, folder of shards or glob (repeatable); default: the files "
                                       "recorded in RUN/config.json."),
    video: Optional[str] = typer.Option(None, "--video", help="Video id for the attention and matching figures "
                                                              "(default: the first video of the split)."),
    actions: Optional[str] = typer.Option(None, "--actions", help="Comma-separated atomic-action names for the "
                                                                  "similarity heatmap and attention plots."),
    split: str = typer.Option("test", "--split", help="Split to score and draw from."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default RUN/report)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
) -> None:
    """Training curves, confusion/AP, text similarity, attention maps and matching probabilities as PNGs + HTML."""
    from cmdcl.head.report import build_report

    names = [a for a in actions.split(",") if a.strip()] if actions else None
    page = build_report(run, features=features or None, out=out, video=video, actions=names, split=split,
                        device=device)
    typer.echo(f"report: {page}")


COMMANDS = {"report": report}
