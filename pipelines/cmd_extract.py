"""`cmdcl extract`, `cmdcl inspect`, `cmdcl merge`, `cmdcl verify`: Stage 1 and its feature files.

Heavy libraries (torch, decord, av, h5py, open_clip) are imported inside the command bodies so that
`cmdcl --help` stays light.
"""
from __future__ import annotations

import inspect as _inspect
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from cmdcl.core.errors import CmdclError
from cmdcl.extract.datasets.registry import DATASET_OPTIONS, options_from_flags, options_help


def _default_workers() -> int:
    """One decode process per core: extraction is decode-bound wherever the encoder is fast, and the
    main process mostly waits (for decoded videos, or for the GPU). Measured on 2 cores: 2 workers ran
    1.96x the naive pipeline, 1 worker 1.05x (docs/BENCHMARKS.md)."""
    return max(1, os.cpu_count() or 1)


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
def extract(
    dataset: str = typer.Option(..., "--dataset", help="breakfast | coin | charades | manifest | synthetic. "
                                f"Dataset options: {options_help()}."),
    root: Path = typer.Option(..., "--root", help="Dataset folder in its published layout (or a manifest file)."),
    splits: Optional[str] = typer.Option(None, "--splits", help="Comma-separated splits, e.g. train,test (default all)."),
    out: Path = typer.Option(Path("feats"), "--out", help="Output folder for shard-kkkkk-of-nnnnn.h5 files."),
    model: str = typer.Option("ViT-B-16", "--model", help="open_clip model name (cmdcl-tiny: tiny random model)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained",
                                             help="open_clip tag, weights file, hf-hub:ORG/REPO or local-dir:PATH."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Weights cache (pre-filled for offline use)."),
    preprocess_tag: Optional[str] = typer.Option(
        None, "--preprocess-tag",
        help="With a bare weights file: the pretrained tag whose preprocessing (mean/std, resize) it needs."),
    frames: int = typer.Option(64, "--frames", help="Frames per video (padded + masked when a video is shorter)."),
    fps: Optional[float] = typer.Option(None, "--fps",
                                        help="Sample at this rate (strided down to --frames) instead of uniformly."),
    patch_grid: int = typer.Option(0, "--patch-grid", help="Also store G x G pooled patch tokens per frame (0 = off)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Frames per encoder batch."),
    workers: Optional[int] = typer.Option(None, "--workers",
                                          help="Decode processes (default: one per core; 0 = in-process)."),
    decoder: Optional[str] = typer.Option(None, "--decoder",
                                          help="decord | pyav | nvdec (GPU, cmdcl[gpu]) (default: decord when installed)."),
    seek: str = typer.Option("exact", "--seek",
                             help="exact | keyframe: take the nearest keyframe of each sampled frame (much less "
                                  "decoding; real timestamps stored)."),
    fallback: bool = typer.Option(True, "--fallback/--no-fallback",
                                  help="Decode with PyAV the videos decord cannot open or read."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    precision: str = typer.Option("auto", "--precision", help="auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16 "
                                   "(weights cast) | amp-fp16 | amp-bf16 (fp32 weights, autocast)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="k/N: this process extracts shard k of N (0-based)."),
    shard_index: Optional[int] = typer.Option(None, "--shard-index", help="k (with --num-shards)."),
    num_shards: Optional[int] = typer.Option(None, "--num-shards", help="N (with --shard-index)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds one video may take to decode before it fails."),
    strict: bool = typer.Option(False, "--strict",
                                help="Exit with status 1 when any video failed or is missing on disk."),
    retry_failed: bool = typer.Option(False, "--retry-failed",
                                      help="Re-attempt the videos an earlier run of this shard recorded as failed."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N videos (sorted by id), for trials."),
    template: Optional[List[str]] = typer.Option(None, "--template",
                                                 help="Prompt template with {} for label texts (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Seed (random-weight models)."),
    flush_every: int = typer.Option(16, "--flush-every", help="Videos per crash-safe part file."),
    summary_json: Optional[Path] = typer.Option(None, "--summary-json", help="Also write the run summary as JSON."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="tqdm progress bar."),
    **dataset_flags,
) -> None:
    """Decode videos, encode sampled frames and label texts with a frozen CLIP model, write an HDF5 shard."""
    from cmdcl.extract.runner import ExtractConfig, run_extraction

    if flush_every < 1:
        raise CmdclError(f"--flush-every {flush_every}: must be at least 1.")
    cfg = ExtractConfig(
        dataset=dataset, root=str(root), out_dir=str(out),
        splits=[s.strip() for s in splits.split(",") if s.strip()] if splits else None,
        model=model, pretrained=pretrained, cache_dir=str(cache_dir) if cache_dir else None, preprocess_tag=preprocess_tag,
        frames=frames, sample_fps=fps, patch_grid=patch_grid, batch_size=batch_size,
        workers=_default_workers() if workers is None else workers, decoder=decoder, seek=seek, fallback=fallback,
        device=device, precision=precision, shard=_shard_spec(shard, shard_index, num_shards), timeout_s=timeout,
        strict=strict, templates=list(template) if template else None, seed=seed, limit=limit,
        flush_every=flush_every, retry_failed=retry_failed, progress=progress,
        dataset_options=options_from_flags(dataset, dataset_flags),
    ).check()
    summary = run_extraction(cfg)
    missing_list = _write_missing_list(out, summary.missing_ids)
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
    if strict and (summary.failed or summary.missing):
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


def _describe(summary: dict) -> str:
    prov = summary["provenance"]
    lines = [
        f"{len(summary['files'])} file(s), format_version {summary['format_version']}",
        f"videos: {summary['videos']} ({', '.join(f'{k}={v}' for k, v in summary['splits'].items()) or 'none'}); "
        f"padded {summary['padded_videos']}, partial {summary['partial_videos']}, failed {summary['num_failures']}, "
        f"notes {len(summary.get('notes', []))}",
        f"frames {summary['frames']} x dim {summary['embed_dim']}, patch grid {summary['patch_grid']}; "
        f"{summary['num_classes']} classes, {summary['num_steps']} steps",
        f"model {prov.get('model_name')} ({prov.get('pretrained')}), precision {prov.get('precision')}, "
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

    summary = FeatureSet(files).summary()
    typer.echo(json.dumps(summary, indent=1, default=str) if as_json else _describe(summary))


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
    shards, missing shards); exit 1 on any problem."""
    from cmdcl.core.store import verify_paths

    report = verify_paths(paths)
    for problem in report.problems:
        typer.echo(problem)
    if report.problems:
        typer.echo(f"verify: {len(report.problems)} problem(s) in {report.files} file(s).", err=True)
        sys.exit(1)
    typer.echo(f"verify: OK, {report.files} file(s), {report.videos} videos.")


COMMANDS = {"extract": extract, "inspect": inspect, "merge": merge, "verify": verify}
