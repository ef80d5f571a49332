"""`cmdcl context-labels`, `cmdcl confounding`, `cmdcl scene-split`: confounding on any dataset from zero-shot
scene pseudo labels (extract/context.py, head/confounding/; docs/REPORT.md "Confounding").

torch, h5py and open_clip are imported inside the command bodies so that `cmdcl --help` stays light.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cmdcl.core.errors import CmdclError

FEATURES_HELP = "Feature file, folder of shards or glob."


def context_labels(
    features: List[str] = typer.Argument(..., help=FEATURES_HELP),
    vocab: str = typer.Option("places365", "--vocab", help="Comma-separated context vocabularies: places365 (scenes), "
                              "appearance (lighting, clothing), synthetic (the synthetic world's own factors) or a "
                              "file of 'factor: text' lines (docs/FORMAT.md)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="The weights the features were extracted "
                                             "with, when not found beside them (same sha256)."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="open_clip / Hugging Face weights cache."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite factors already stored."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Also write every video's pseudo label and confidence "
                                           "of every stored factor to this CSV."),
) -> None:
    """Store context vocabularies (text features of scene names...) in finished feature files, encoded by the
    model their provenance names; per-video pseudo labels then follow from the stored frames."""
    from cmdcl.extract.config import comma_list
    from cmdcl.extract.context import add_context_labels

    specs = comma_list(vocab)
    if not specs:
        raise CmdclError("--vocab: no vocabulary given.", fix="e.g. --vocab places365.")
    result = add_context_labels(features, specs, pretrained=pretrained, cache_dir=cache_dir, device=device,
                                replace=replace)
    factors = ", ".join(f"{name} ({count} values)" for name, count in result["factors"].items())
    typer.echo(f"stored {factors} in {len(result['files'])} file(s): {', '.join(result['files'])}")
    if csv_out is not None:
        _write_label_csv(features, csv_out)
        typer.echo(f"wrote {csv_out}")


def _write_label_csv(features: List[str], path: Path) -> None:
    """video_id, split, then <factor>, <factor>_confidence per stored factor: one row per video."""
    import csv

    import numpy as np

    from cmdcl.core.store import FeatureSet
    from cmdcl.head.metrics.pseudo_labels import pseudo_labels

    fs = FeatureSet(features)
    labels = pseudo_labels(fs, np.arange(len(fs)))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["video_id", "split", *(c for name in labels.factors for c in (name, f"{name}_confidence"))])
        for i, (video_id, split) in enumerate(zip(fs.index["video_id"], fs.index["split"])):
            cells = [(labels.value_names[j][v] if v >= 0 else "", f"{labels.confidence[i, j]:.3f}")
                     for j, v in enumerate(labels.values[i])]
            writer.writerow([video_id, split, *(c for pair in cells for c in pair)])


def confounding(
    features: List[str] = typer.Argument(..., help=FEATURES_HELP),
    split: str = typer.Option("test", "--split", help="Split to report on (e.g. test, test_ood)."),
    run: List[Path] = typer.Option([], "--run", "-r", help="A checkpoint or run folder (every seed's best.pt) whose "
                                   "leakage to each context factor is probed (repeatable)."),
    train_split: str = typer.Option("train", "--train-split", help="Split the context-only regressions are fitted on."),
    resamples: int = typer.Option(1999, "--resamples", help="Bootstrap resamples of each interval."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the report as JSON here."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
) -> None:
    """How much the context (true or zero-shot pseudo labels) predicts the activity, and how much of it each head
    still carries, each with a 95% interval."""
    if resamples < 100:
        raise CmdclError(f"--resamples must be >= 100, got {resamples}.")
    from cmdcl.core.json_files import write_json
    from cmdcl.head.confounding.report import confounding_report, format_report

    report = confounding_report(features, split, run, train_split, resamples, device)
    typer.echo(format_report(report))
    if out is not None:
        write_json(out, report)
        typer.echo(f"wrote {out}")


def scene_split(
    features: List[str] = typer.Argument(..., help=FEATURES_HELP),
    out: Path = typer.Option(..., "--out", help="The new feature file (a copy with the held-out videos moved)."),
    factor: str = typer.Option("pseudo:scene", "--factor", help="Context factor: pseudo:<factor> (zero-shot) or a "
                               "true factor of /confounders."),
    rare: float = typer.Option(0.1, "--rare", help="A scene is rare for an activity below this share of its videos."),
    name: str = typer.Option("test_scene", "--name", help="The held-out split."),
    sources: str = typer.Option("train,val,test", "--from", help="Comma-separated splits whose videos may be held out."),
) -> None:
    """Write a scene-shifted split: per activity, the videos whose scene is rare for it move to a new OOD split."""
    from cmdcl.core.json_files import write_json
    from cmdcl.core.store import FeatureSet
    from cmdcl.extract.config import comma_list
    from cmdcl.head.confounding.scene_split import scene_shift, write_scene_split

    if out.exists():
        raise CmdclError(f"--out {out}: already exists.", fix="pass a new file name.")
    split = scene_shift(FeatureSet(features), factor, rare, name, comma_list(sources) or [])
    write_scene_split(features, out, split)
    summary_path = out.with_suffix(".split.json")
    write_json(summary_path, {**split.summary, "moved": split.moved})
    after = split.summary["after"]
    typer.echo(f"held out {split.summary['held_out']} of {split.summary['videos_considered']} videos as {name!r} "
               f"({factor} rarer than {rare} for their activities); splits now: "
               + ", ".join(f"{k} {v}" for k, v in sorted(after.items())))
    typer.echo(f"wrote {out} and {summary_path}")


COMMANDS = {"context-labels": context_labels, "confounding": confounding, "scene-split": scene_split}
