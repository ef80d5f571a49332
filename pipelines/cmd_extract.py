"""`cmdcl extract`, `cmdcl inspect`, `cmdcl merge`, `cmdcl verify`: Stage 1 and its feature files.

Heavy libraries (torch, decord, av, h5py, open_clip) are imported inside the command bodies so that
`cmdcl --help` stays light.
"""
from __future__ import annotations

import inspect as _inspect
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import typer

from cmdcl.core.errors import CmdclError
from cmdcl.extract.config import ExtractConfig
from cmdcl.extract.datasets.registry import DATASET_OPTIONS, options_from_flags
from .config_options import config_options


def _shard_spec(shard: Optional[str], shard_index: Optional[int], num_shards: Optional[int]):
    from cmdcl.core.distributed import parse_shard, shard_from_env

    if shard is not None and (shard_index is not None or num_shards is not None):
        raise CmdclError("give either --shard k/N or --shard-index k --num-shards N, not both.")
    if shard is not None:
        return parse_shard(shard)
    if shard_index is not None or num_shards is not None:
        if shard_index is None or num_shards is None:
            raise CmdclError("--shard-index and --num-shards go together.", fix="e.g. --shard-index 0 --num-shards 4")
        return parse_shard(f"{shard_index}/{num_shards}")
    return shard_from_env()


def with_dataset_flags(command):
    """Add one typer option per `DATASET_OPTIONS` entry to `command`'s signature (passed in **dataset_flags),
    so the flags, their help and the datasets they apply to have one home: the dataset registry."""
    signature = _inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    added = []
    for option in DATASET_OPTIONS:
        text = " ".join(f"{name}: {text}" for name, text in option.help.items())
        default = typer.Option(False if option.is_switch else None, option.flag, help=text,
                               metavar=option.metavar or None, rich_help_panel="Dataset options")
        added.append(_inspect.Parameter(option.parameter, _inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=bool if option.is_switch else Optional[str]))
    command.__signature__ = signature.replace(parameters=own + added)
    return command


@with_dataset_flags
@config_options(ExtractConfig, param="cfg")
def extract(
    cfg: ExtractConfig = None,
    shard: Optional[str] = typer.Option(None, "--shard", help="k/N: this process extracts shard k of N (0-based)."),
    shard_index: Optional[int] = typer.Option(None, "--shard-index", help="k (with --num-shards)."),
    num_shards: Optional[int] = typer.Option(None, "--num-shards", help="N (with --shard-index)."),
    summary_json: Optional[Path] = typer.Option(None, "--summary-json", help="Also write the run summary as JSON."),
    **dataset_flags,
) -> None:
    """Decode videos, encode sampled frames and label texts with a frozen CLIP model, write an HDF5 shard."""
    from cmdcl.extract.runner import run_extraction

    cfg = replace(cfg, shard=_shard_spec(shard, shard_index, num_shards),
                  dataset_options=options_from_flags(cfg.dataset, dataset_flags)).check()
    summary = run_extraction(cfg)
    missing_list = _write_missing_list(Path(cfg.out_dir), summary.missing_ids)
    typer.echo(summary.report(), err=True)
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary.as_dict(), indent=1) + "\n")
    if summary.failed:
        typer.echo(f"cmdcl: warning: {summary.failed} video(s) failed; they are listed in {summary.shard_path} "
                   "(/failures) and above. Fix them, then re-run with --retry-failed.", err=True)
    if summary.missing:
        typer.echo(f"cmdcl: warning: {summary.missing} annotated video(s) are missing on disk; all are listed in "
                   f"{missing_list}.", err=True)
    if cfg.strict and (summary.failed or summary.missing):
        sys.exit(1)  # (typer.Exit is swallowed by the standalone_mode=False call in cli.main)


MISSING_LIST = "missing.txt"


def _write_missing_list(out: Path, missing: list[str]) -> Path:
    """All annotated videos missing on disk, one id per line, beside the shards (the log shows only the first
    10). Every shard writes the same dataset-wide list, so it is replaced atomically; a stale one is removed."""
    path = out / MISSING_LIST
    if not missing:
        path.unlink(missing_ok=True)
        return path
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".{MISSING_LIST}.{os.getpid()}"
    partial.write_text("".join(f"{video_id}\n" for video_id in missing))
    os.replace(partial, path)
    return path


MAX_NOTES_SHOWN = 20  # phone videos: every one may carry a rotation note


def _context_text(context) -> str:
    """The /context factors and their sizes ("scene (365)"), or why the files' vocabularies cannot be read."""
    if isinstance(context, str):
        return context
    return ", ".join(f"{name} ({size})" for name, size in (context or {}).items()) or "none"


def _weights_text(prov: dict) -> str:
    """The recorded weights; random ones (`random:seed=S`, also in files older than `random_weights`) plainly."""
    pretrained = str(prov.get("pretrained") or "")
    if pretrained.startswith("random"):
        return f"RANDOM weights, seed {pretrained.split('=', 1)[-1]}: not pretrained, the features carry no meaning"
    return pretrained


def _describe(summary: dict) -> str:
    prov = summary["provenance"]
    lines = [
        f"{len(summary['files'])} file(s), format_version {summary['format_version']}",
        f"videos: {summary['videos']} ({', '.join(f'{k}={v}' for k, v in summary['splits'].items()) or 'none'}); "
        f"padded {summary['padded_videos']}, partial {summary['partial_videos']}, failed {summary['num_failures']}, "
        f"notes {len(summary.get('notes', []))}",
        f"frames {summary['frames']} x dim {summary['embed_dim']}, patch grid {summary['patch_grid']}; "
        f"{summary['num_classes']} classes, {summary['num_steps']} steps, {summary.get('segments', 0)} step segments; "
        f"object boxes {'yes' if summary.get('boxes') else 'no'}, "
        f"prop boxes {'yes' if summary.get('prop_boxes') else 'no'}; "
        f"confounders {', '.join(summary.get('confounders') or []) or 'none'}; "
        f"context vocabularies {_context_text(summary.get('context'))}",
        f"model {prov.get('model_name')} ({_weights_text(prov)}), precision {prov.get('precision')}, "
        f"image size {prov.get('image_size')}; dataset {prov.get('dataset')}; decoder {prov.get('decoder')} "
        f"{prov.get('decoder_version', '')}; code {prov.get('code_version')}",
        f"sampler {prov.get('sampler')}",
    ]
    for shard in summary["shards"]:
        lines.append(f"  {shard['file']}: shard {shard['shard_index']}/{shard['num_shards']}, "
                     f"{shard['videos']} videos, {shard['failures']} failures")
    notes = summary.get("notes", [])
    for note in notes[:MAX_NOTES_SHOWN]:
        lines.append(f"  NOTE {note['video_id']} [{note['kind']}] {note['note']}")
    if len(notes) > MAX_NOTES_SHOWN:
        lines.append(f"  ... {len(notes) - MAX_NOTES_SHOWN} more notes (--json lists them all)")
    for failure in summary["failures"]:
        lines.append(f"  FAILED {failure['video_id']} [{failure['stage']}] {failure['error']}")
    return "\n".join(lines)


def inspect(
    files: List[str] = typer.Argument(..., help="Feature files, folders of shards or globs."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise feature files: counts per split, padding, failures, provenance."""
    from cmdcl.core.store import FeatureSet
    from cmdcl.extract.architecture import activation_mismatch

    features = FeatureSet(files)
    summary = features.summary()
    typer.echo(json.dumps(summary, indent=1, default=str) if as_json else _describe(summary))
    note = activation_mismatch(features.attrs)
    if note:
        typer.echo(f"cmdcl: warning: {note}", err=True)


def merge(
    inputs: List[str] = typer.Argument(..., help="Shard files, folders or globs with identical provenance."),
    out: Path = typer.Option(..., "--out", help="The merged feature file to write."),
) -> None:
    """Merge compatible shards into one contiguous (memory-mappable) feature file."""
    from cmdcl.core.store import merge_feature_files

    if out.exists():
        raise CmdclError(f"--out {out}: file exists.", fix="remove it or choose another name.")
    result = merge_feature_files(inputs, out)
    typer.echo(f"merged {result['inputs']} file(s): {result['videos']} videos, {result['failures']} failures -> {out}")


def verify(
    paths: List[str] = typer.Argument(..., help="Feature files, folders of shards or globs."),
) -> None:
    """Check feature files fully (structure, counts, NaN/inf, masks, labels, duplicates, provenance across
    shards, missing shards); exit 1 on any problem. Features of a model built with another activation than
    its weights were trained with (files from before cmdcl resolved it) get a warning, not a problem."""
    from cmdcl.core.store import verify_paths
    from cmdcl.extract.architecture import activation_mismatch

    report = verify_paths(paths, provenance_check=activation_mismatch)
    for warning in report.warnings:  # e.g. features of a mismatched activation: sound files, exit 0
        typer.echo(f"cmdcl: warning: {warning}", err=True)
    for problem in report.problems:
        typer.echo(problem)
    if report.problems:
        typer.echo(f"verify: {len(report.problems)} problem(s) in {report.files} file(s).", err=True)
        sys.exit(1)
    typer.echo(f"verify: OK, {report.files} file(s), {report.videos} videos.")


COMMANDS = {"extract": extract, "inspect": inspect, "merge": merge, "verify": verify}
