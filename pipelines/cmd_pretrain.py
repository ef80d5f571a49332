"""`cmdcl pretrain-clip`: CLIP-style contrastive pre-training of a small open_clip model on captioned frames.

Only typer and the standard library are imported at module level (`cmdcl --help` stays light).
"""
from __future__ import annotations

from pathlib import Path

import typer

from cmdcl.core.errors import CmdclError
from cmdcl.extract.datasets.registry import DATASETS

# The datasets whose entry says `pretrain=True` (extract/datasets/registry.py).
PRETRAIN_DATASETS = tuple(name for name, entry in DATASETS.items() if entry.pretrain)


def pretrain_clip(
    dataset: str = typer.Option(..., help=f"{' | '.join(PRETRAIN_DATASETS)} (a manifest: any with labels and timed "
                                          "steps)."),
    root: Path = typer.Option(..., help="Dataset folder (or the manifest file)."),
    out: Path = typer.Option(..., help="Weights file to write (state dict); open_clip_config.json and "
                                       "<stem>.provenance.json are written beside it."),
    split: str = typer.Option("pretrain", help="Split whose frames are trained on."),
    model: str = typer.Option("cmdcl-tiny", help="open_clip architecture to train from scratch."),
    epochs: int = typer.Option(10, help="Passes over the frames."),
    batch_size: int = typer.Option(256, help="Frame-caption pairs contrasted per step."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (AdamW, warm-up then cosine decay)."),
    frames_per_video: int = typer.Option(16, help="Frames sampled uniformly from each video, decoded once."),
    context_rate: float = typer.Option(0.3, help="Share of captions that also describe the scene (the "
                                                 "manifest's context column)."),
    seed: int = typer.Option(0, help="Seed of the initialisation, batch order and caption draws."),
    threads: int = typer.Option(1, help="torch threads (results are reproducible for a fixed count)."),
) -> None:
    """Train a small CLIP on frames of one split, each captioned with the action under way and the activity."""
    if not (dataset in DATASETS and DATASETS[dataset].pretrain):
        raise CmdclError(f"--dataset {dataset!r}: pretrain-clip reads {' or '.join(PRETRAIN_DATASETS)}.",
                         fix="write your dataset as a manifest (docs/EXTRACT.md) and pass --dataset manifest.")
    from cmdcl.extract.pretrain_clip import PretrainConfig, pretrain_clip as run, provenance_path

    record = run(PretrainConfig(
        dataset=dataset, root=str(root), out=str(out), split=split, model=model, epochs=epochs,
        batch_size=batch_size, lr=lr, frames_per_video=frames_per_video, context_rate=context_rate, seed=seed,
        threads=threads,
    ), log=typer.echo)
    typer.echo(f"weights:    {record['weights_file']} (sha256 {record['weights_sha256'][:12]}...)")
    typer.echo(f"provenance: {provenance_path(out)}")
    typer.echo(f"final loss {record['final_loss']:.4f} after {epochs} epochs ({record['seconds']:.0f} s); "
               f"use it with `cmdcl extract --model {model} --pretrained {out}`")


COMMANDS: dict = {"pretrain-clip": pretrain_clip}
