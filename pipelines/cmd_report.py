"""`cmdcl report RUN`: figures and one HTML page for a trained run (head/report/, docs/REPORT.md).

torch and matplotlib are imported inside the command body so that `cmdcl --help` stays light.
The spatial-attention overlay needs video frames: this command hands the report a frame reader built on
cmdcl.extract's decoders, so that the head stage itself never imports the extraction stage.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

if TYPE_CHECKING:
    import numpy as np


def read_video_frames(path: str, frame_index: np.ndarray, short_side: int) -> np.ndarray:
    """Frames `frame_index` of video `path` (n, H, W, 3) uint8, scaled so the short side is `short_side`."""
    import numpy as np

    from cmdcl.extract.decoders import open_video

    def size(height: int, width: int) -> tuple[int, int]:
        scale = short_side / max(1, min(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))

    with open_video(path, size=size) as decoder:
        frames, _ = decoder.read(np.asarray(frame_index, np.int64))
    return frames


def report(
    run: Path = typer.Argument(..., help="Run folder written by `cmdcl train-head` (config.json, best.pt, ...)."),
    features: Optional[List[str]] = typer.Option(
        None, "--features", "-f", help="Feature file, folder of shards or glob (repeatable); default: the files "
                                       "recorded in RUN/config.json."),
    video: Optional[str] = typer.Option(None, "--video", help="Video id for the attention and matching figures "
                                                              "(default: the first video of the split)."),
    actions: Optional[str] = typer.Option(None, "--actions", help="Comma-separated atomic-action names for the "
                                                                  "similarity heatmap and attention plots."),
    split: List[str] = typer.Option(["test"], "--split", help="Split to score and draw from (repeatable: the first "
                                                          "for every figure, each for the reliability diagram and "
                                                          "spatial grounding, e.g. --split test --split test_ood)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default RUN/report)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="compare.json (or its folder) of `cmdcl compare` "
                                                                   "to show; default: RUN/../compare-<split>/ when "
                                                                   "it compares RUN."),
) -> None:
    """Training curves, confusion/AP, text similarity, attention maps and matching probabilities as PNGs + HTML."""
    from cmdcl.head.report import build_report

    names = [a for a in actions.split(",") if a.strip()] if actions else None
    page = build_report(run, features=features or None, out=out, video=video, actions=names, split=split,
                        device=device, read_frames=read_video_frames, compare=compare)
    typer.echo(f"report: {page}")


COMMANDS = {"report": report}
