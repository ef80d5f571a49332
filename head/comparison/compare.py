"""`cmdcl compare RUN... --split S`: is a difference between methods an effect or noise? (docs/REPORT.md)

    runs (single or multi-seed, head/training/seed_runs.py) -> predictions_<split>.npz of every seed (head/metrics/predictions.py)
      -> per run: mean over seeds +- 95% interval (t over seeds; one seed: bootstrap over videos)
      -> per run vs the reference: paired difference on the same videos, paired bootstrap 95% interval over
         videos and a paired permutation p-value (head/comparison/stats.py)
      -> Comparison (results.py: .rows, .to_dict()); format_table, write_outputs (compare_output.py): compare.json, compare.txt, forest.png

No torch: only the prediction files are read.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cmdcl.core.errors import CmdclError
from cmdcl.core.provenance import FEATURE_IDENTITY_KEYS, first_mismatch, identity

from .compare_output import format_table, write_outputs  # noqa: F401  (re-exported: the entry points)
from .paired import metric_of, per_video_values
from .results import Comparison, Row
from ..metrics.predictions import Predictions, load_predictions, predictions_path
from ..metrics.registry import Paired, paired_entry
from ..training.seed_runs import read_seeds, seed_dirs
from .stats import WeightedMean, WeightedMetric, bootstrap_interval, mean_over, paired_permutation_p, t_interval


@dataclass
class RunSeeds:
    """One run's predictions of a split, one Predictions per seed, all in the same video order."""

    name: str
    path: Path
    seeds: list[int | None]
    seed_predictions: list[Predictions]


# ============================================================================================ entry point

def compare_runs(runs: Sequence[Path], split: str = "test", reference: str | None = None, metric: str | None = None,
                 n_resamples: int = 9999, seed: int = 0, ci_method: str | None = None,
                 force: bool = False) -> Comparison:
    """Compare the runs on `split` (names = folder names; default reference: the first run; default metric:
    top1, or mAP for multi-label predictions; any pairable entry of the metric table, head/metrics/registry.py).
    ci_method of the bootstrap intervals (head/comparison/stats.py): default BCa for the means of per-video
    values (top1, nll, the probes, frame_step_top1), "recentred" percentile for the others (mAP, step_mAP, ece).
    Runs scored on other feature files (or another split) are refused (`check_comparable`) unless `force`,
    which the output then states."""
    if not runs:
        raise CmdclError("compare: no runs given.", fix="pass two or more run folders.")
    loaded = [load_run(Path(r), split, name) for r, name in zip(runs, run_names(runs))]
    forced = check_comparable(loaded, split, force)
    loaded = align_videos(loaded, split)
    names = [r.name for r in loaded]
    reference = reference or names[0]
    if reference not in names:
        raise CmdclError(f"--reference {reference}: not one of the runs ({', '.join(names)}).")
    metric = metric or ("mAP" if loaded[0].seed_predictions[0].multilabel else "top1")
    paired = paired_entry(metric)  # the metric table (head/metrics/registry.py): how it pairs, or a one-line error
    keep = _scored_videos(loaded, metric, paired, split)
    if keep is not None:  # the labelled videos, or those a probe kept: the others are not resampled either
        loaded = [RunSeeds(r.name, r.path, r.seeds, [p.take(keep) for p in r.seed_predictions]) for r in loaded]
    ci_method = ci_method or ("BCa" if paired.per_video else "recentred")
    metrics = {r.name: seed_metrics(r, metric, split) for r in loaded}
    videos = len(loaded[0].seed_predictions[0].video_id)
    if not videos:
        raise CmdclError(f"{runs[0]}: no {paired.videos} videos in split {split!r} to compare on.")
    ref = next(r for r in loaded if r.name == reference)
    notes = []
    rows = []
    for run in loaded:
        row = _run_row(run, metrics[run.name], videos, n_resamples, seed, ci_method, cheap=paired.cheap)
        if run.name != reference:
            note = _add_difference(row, ref, run, metric, paired, metrics, videos, n_resamples, seed, ci_method)
            if note:
                notes.append(note)
        row.train_split = train_split_of(run.path)
        rows.append(row)
    return Comparison(split, metric, reference, videos, rows, n_resamples, ci_method, notes=forced + notes,
                      forced=bool(forced))


def _scored_videos(runs: list[RunSeeds], metric: str, paired: Paired, split: str) -> np.ndarray | None:
    """The videos a metric is taken over (None: all). A per-video metric: those every seed of every run scores
    (finite values: the labelled ones for top-1 and NLL, those a probe kept, which depend on the labels only);
    `labelled_only` (ECE): the labelled ones (single-label)."""
    first = runs[0].seed_predictions[0]
    if not paired.per_video:
        return np.flatnonzero(first.label >= 0) if paired.labelled_only and not first.multilabel else None
    columns = [per_video_values(p, metric, str(predictions_path(folder, split)))
               for r in runs for folder, p in zip(seed_dirs(r.path), r.seed_predictions)]
    finite = np.all([np.isfinite(c) for c in columns], axis=0)
    return None if finite.all() else np.flatnonzero(finite)


def _run_row(run: RunSeeds, metrics: list[WeightedMetric], videos: int, n_resamples: int, seed: int,
             ci_method: str, cheap: bool) -> Row:
    """Mean and interval of one run. The video bootstrap of a multi-seed run is only in compare.json, and
    only for the cheap metrics (top-1, ECE, NLL): for mAP on a large split it would cost seeds x resamples mAP
    evaluations."""
    per_seed = [float(m(np.ones((1, videos)))[0]) for m in metrics]
    many = len(per_seed) > 1
    low = high = math.nan
    if cheap or not many:
        low, high, _ = bootstrap_interval(mean_over(metrics), videos, n_resamples, ci_method, seed)
    mean, t_low, t_high = t_interval(per_seed)
    return Row(run.name, str(run.path), run.seeds, per_seed, mean, t_low if many else low, t_high if many else high,
               "t over seeds" if many else "bootstrap over videos", (low, high))


def _add_difference(row: Row, ref: RunSeeds, run: RunSeeds, metric: str, paired: Paired,
                    metrics: dict[str, list[WeightedMetric]],
                    videos: int, n_resamples: int, seed: int, ci_method: str) -> str | None:
    """Fill the row's paired difference (run - reference); returns a note when seeds could not be matched."""
    mine, theirs = metrics[run.name], metrics[ref.name]
    diff_of = (lambda w: mean_over(mine)(w) - mean_over(theirs)(w))
    row.diff = float(diff_of(np.ones((1, videos)))[0])
    row.diff_low, row.diff_high, row.diff_method = bootstrap_interval(diff_of, videos, n_resamples, ci_method, seed)
    # One seed each: nothing to average, pair the two runs (their seeds may differ, e.g. a rerun).
    matched = sorted(run.seeds, key=str) == sorted(ref.seeds, key=str) or len(run.seeds) == len(ref.seeds) == 1
    if matched:
        order = [ref.seeds.index(s) for s in run.seeds] if len(run.seeds) > 1 else [0]
        pairs = [(run.seed_predictions[i], ref.seed_predictions[j]) for i, j in enumerate(order)]
        row.pairing = "video and seed" if len(pairs) > 1 else "video"
        if len(pairs) > 1:
            _, low, high = t_interval([mine[i](np.ones((1, videos)))[0] - theirs[j](np.ones((1, videos)))[0]
                                       for i, j in enumerate(order)])
            row.diff_seed_ci = (low, high)
        stacked = [stacked_metric(a, b, metric) for a, b in pairs]
    else:
        stacked = [_seed_averaged_stack(run, ref, metric)]
        row.pairing = "video (per-video scores averaged over each run's seeds)"
    row.p = paired_permutation_p(stacked, videos, n_resamples, seed)
    if matched:
        return None
    return (f"{run.name}: seeds {_seed_text(run.seeds)} differ from {ref.name}'s {_seed_text(ref.seeds)}; "
            f"the p-value pairs videos only, on each run's per-video scores averaged over its seeds"
            f"{' (' + metric + ': mean logits)' if not paired.per_video else ''}.")


# ============================================================================================ inputs

def run_seed_labels(run: Path) -> list[int | None]:
    """The seeds of a run: seeds.json, else config.json's seed of a single run, else [None]."""
    seeds = read_seeds(run)
    if seeds is not None:
        return list(seeds)
    try:
        config = json.loads((run / "config.json").read_text())
        return [int(config["config"]["seed"])]
    except (OSError, ValueError, KeyError, TypeError):
        return [None]


def run_names(runs: Sequence[Path]) -> list[str]:
    """Each run's name: its folder name, or where two runs share one (one method trained on two splits, e.g.
    runs/a/cmdcl and runs/b/cmdcl) the fewest trailing path parts that tell them apart ("a/cmdcl")."""
    parts = [Path(r).resolve().parts for r in runs]
    names = [p[-1] for p in parts]
    for depth in range(2, max(len(p) for p in parts) + 1):
        clashing = {n for n in names if names.count(n) > 1}
        if not clashing:
            break
        names = ["/".join(p[-depth:]) if n in clashing else n for n, p in zip(names, parts)]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise CmdclError(f"compare: two runs are named {Path(duplicate).name!r} (the folder {runs[names.index(duplicate)]} "
                         "is given twice).", fix="pass each run folder once.")
    return names


def train_split_of(run: Path) -> str | None:
    """The split a run's (first seed's) head was trained on, from its config.json (None when unknown)."""
    try:
        config = json.loads((seed_dirs(run)[0] / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return str(config.get("train_split", "train"))


def load_run(run: Path, split: str, name: str | None = None) -> RunSeeds:
    folders = seed_dirs(run)
    if not folders:
        raise CmdclError(f"{run}/seeds.json: lists no seeds.")
    predictions = []
    for folder in folders:
        path = predictions_path(folder, split)
        if not path.is_file():
            raise CmdclError(f"{path}: no per-video predictions of split {split!r}.",
                             fix=f"run `cmdcl evaluate --checkpoint {folder / 'best.pt'} --features ... --split "
                                 f"{split}` on that run.")
        predictions.append(load_predictions(path, split))
    return RunSeeds(name or run.name, run, run_seed_labels(run), predictions)


def check_comparable(runs: list[RunSeeds], split: str, force: bool) -> list[str]:
    """Every seed of every run scored on the first run's feature files (their recorded identity:
    core/provenance.py FEATURE_IDENTITY_KEYS) and split. A difference is a one-line error, or with `force`
    a note saying the comparison was forced. Same videos and labels are checked by `align_videos`."""
    first = runs[0]
    ref = _features_of(seed_dirs(first.path)[0], first.seed_predictions[0])
    for run in runs:
        for folder, p in zip(seed_dirs(run.path), run.seed_predictions):
            where = predictions_path(folder, split)
            problem = None
            if p.split not in (None, split):
                problem = f"{where}: holds split {p.split!r}, not {split!r}"
            theirs = _features_of(folder, p)
            differs = first_mismatch(theirs, ref, FEATURE_IDENTITY_KEYS, skip_missing=True) if theirs and ref else None
            if problem is None and differs is not None:
                problem = f"{where}: scored on other features than {first.name} ({differs})"
            if problem is None:
                continue
            if not force:
                raise CmdclError(f"compare: {problem}; the runs are not comparable.",
                                 fix="evaluate every run on the same feature files, or pass --force to compare "
                                     "them anyway.")
            return [f"FORCED (--force): {problem}."]
    return []


def _features_of(folder: Path, p: Predictions) -> dict[str, str] | None:
    """The identity of the features `p` was scored on: recorded in the predictions file, else (older files)
    the run's training features (provenance.json), else None (unknown: not checked)."""
    if p.features is not None:
        return p.features
    try:
        return identity(json.loads((Path(folder) / "provenance.json").read_text())) or None
    except (OSError, ValueError):
        return None


def align_videos(runs: list[RunSeeds], split: str) -> list[RunSeeds]:
    """Every seed of every run in the first one's sorted video order; a one-line error when the video sets
    or their labels differ (the runs were evaluated on different features)."""
    first = runs[0].seed_predictions[0]
    ids = np.sort(first.video_id)
    if len(np.unique(ids)) != len(ids):
        raise CmdclError(f"{predictions_path(seed_dirs(runs[0].path)[0], split)}: a video id appears twice.")
    out = []
    for run in runs:
        aligned = []
        for folder, p in zip(seed_dirs(run.path), run.seed_predictions):
            where = predictions_path(folder, split)
            if len(p.video_id) != len(ids) or set(p.video_id.tolist()) != set(ids.tolist()):
                extra = sorted(set(p.video_id.tolist()) ^ set(ids.tolist()))[:1] or ["(duplicates)"]
                raise CmdclError(f"{where}: its {len(p.video_id)} videos of split {split!r} are not the "
                                 f"{len(ids)} of {runs[0].name} (e.g. {extra[0]!r}); compare needs the same videos.",
                                 fix="evaluate every run on the same feature file.")
            q = p.take(np.argsort(p.video_id, kind="stable"))
            reference = out[0].seed_predictions[0] if out else (aligned[0] if aligned else q)
            if q.multilabel != reference.multilabel or not (np.array_equal(q.label, reference.label)
                                                           and np.array_equal(q.labels, reference.labels)):
                raise CmdclError(f"{where}: the videos' labels differ from {runs[0].name}'s "
                                 f"(evaluated on other features?).", fix="evaluate every run on the same features.")
            aligned.append(q)
        out.append(RunSeeds(run.name, run.path, run.seeds, aligned))
    return out


# ============================================================================================ metrics

def seed_metrics(run: RunSeeds, metric: str, split: str) -> list[WeightedMetric]:
    """One weighted metric per seed over the run's videos."""
    return [metric_of(p, metric, where=str(predictions_path(folder, split)))
            for folder, p in zip(seed_dirs(run.path), run.seed_predictions)]


def stacked_metric(a: Predictions, b: Predictions, metric: str) -> WeightedMetric:
    """The metric over the stacked rows [a's videos; b's videos], for the paired permutation test."""
    if paired_entry(metric).per_video:
        return WeightedMean(np.concatenate([per_video_values(p, metric, "") for p in (a, b)]))
    both = Predictions(np.concatenate([a.video_id, b.video_id]), np.concatenate([a.scores, b.scores]),
                       np.concatenate([a.label, b.label]), np.concatenate([a.labels, b.labels]), a.multilabel,
                       _cat(a.step_scores, b.step_scores), _cat(a.steps, b.steps))
    return metric_of(both, metric, where="")


def _seed_averaged_stack(a: RunSeeds, b: RunSeeds, metric: str) -> WeightedMetric:
    """Seeds not matched: the stacked metric of each run's per-video score averaged over its seeds. For a
    per-video metric (top-1, NLL, a probe's correctness) that is the per-video value averaged over seeds (its
    mean is the mean over seeds); for mAP and ECE the mean logits (the metric of the seed ensemble, used for the
    p-value only)."""
    if paired_entry(metric).per_video:
        values = [np.mean([per_video_values(p, metric, "") for p in r.seed_predictions], axis=0) for r in (a, b)]
        return WeightedMean(np.concatenate(values))
    return stacked_metric(_seed_average(a), _seed_average(b), metric)


def _seed_average(run: RunSeeds) -> Predictions:
    ps = run.seed_predictions
    mean = (lambda key: None if getattr(ps[0], key) is None else np.mean([getattr(p, key) for p in ps], axis=0))
    return Predictions(ps[0].video_id, mean("scores"), ps[0].label, ps[0].labels, ps[0].multilabel,
                       mean("step_scores"), ps[0].steps)


def _cat(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else np.concatenate([a, b])


def _seed_text(seeds: list[int | None]) -> str:
    return "[" + ", ".join("?" if s is None else str(s) for s in seeds) + "]"
