"""`cmdcl confounding FEATS --split S [--run RUN...]`: how much the context predicts the activity on a dataset, and
how much of it each trained head still carries, each with a 95 % interval (docs/REPORT.md "Confounding").

For every context factor of the features, true (/confounders) and zero-shot pseudo (pseudo:<factor>, from the
stored vocabularies):
- the pseudo labels on the split: how many values occur, the commonest, the mean confidence, and, where a true
  factor of the same name exists, how often they agree with it (as stored, and under the best one-to-one
  matching of values, which a labeller that names values differently still reaches);
- the context-only baseline (baseline.py): top-1 or mAP of a regression from the factor alone, with its interval
  and the prior, for each factor and for all pseudo (and all true) factors together;
- per run (a checkpoint or a run folder; every seed's best.pt): the leakage probe from the head's representation
  to each factor (evaluate's own probe, head/metrics/leakage.py) with a bootstrap interval over the videos.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cmdcl.core.errors import CmdclError
from cmdcl.core.store import FeatureSet

from ..comparison.stats import WeightedMean, bootstrap_interval
from ..metrics.evaluate import score_splits
from ..metrics.leakage import context_factors
from ..metrics.pseudo_labels import PSEUDO_PREFIX, pseudo_labels
from ..training.seed_runs import seed_dirs
from .baseline import context_only

TOP_VALUES = 3


def confounding_report(features: str | Path | Sequence[str | Path], split: str = "test", runs: Sequence[Path] = (),
                       train_split: str = "train", resamples: int = 1999, device: str = "auto",
                       batch_size: int = 256) -> dict[str, Any]:
    """The report as a dict (see the module docstring); `format_report` prints it."""
    fs = FeatureSet(features)
    present = set(fs.index["split"].tolist())
    for wanted, role in ((split, "--split"), (train_split, "--train-split")):
        if wanted not in present:
            raise CmdclError(f"{fs.paths[0]}: no videos in split {wanted!r} ({role}); splits in the file: "
                             f"{', '.join(sorted(present))}.")
    train_pos, eval_pos = fs.select(train_split), fs.select(split)
    train_values, names = context_factors(fs, train_pos)
    if train_values is None:
        raise CmdclError(f"{fs.paths[0]}: no context labels (neither /confounders nor /context).",
                         fix="store a context vocabulary: `cmdcl context-labels FEATS --vocab places365`.")
    eval_values, _ = context_factors(fs, eval_pos)
    multilabel = bool(fs.attrs.get("multilabel", False))
    report: dict[str, Any] = {"features": [str(p) for p in fs.paths], "split": split, "train_split": train_split,
                              "videos": int(len(eval_pos)), "multilabel": multilabel, "factors": names,
                              "pseudo_labels": _pseudo_summary(fs, eval_pos, names, eval_values),
                              "context_only": _baselines(fs, train_pos, eval_pos, train_values, eval_values, names,
                                                         multilabel, resamples),
                              "leakage": {}}
    for run in runs:
        report["leakage"].update(_run_leakage(Path(run), fs, split, resamples, device, batch_size))
    return report


def _sizes(fs: FeatureSet, names: list[str], values: np.ndarray) -> list[int]:
    """Values per factor column: the vocabulary size of a pseudo factor, the largest id + 1 of a true one."""
    sizes = []
    for j, name in enumerate(names):
        vocab = fs.context.get(name[len(PSEUDO_PREFIX):]) if name.startswith(PSEUDO_PREFIX) else None
        sizes.append(len(vocab.names) if vocab is not None else int(max(values[:, j].max(), 0)) + 1)
    return sizes


def _baselines(fs: FeatureSet, train_pos: np.ndarray, eval_pos: np.ndarray, train_values: np.ndarray,
               eval_values: np.ndarray, names: list[str], multilabel: bool, resamples: int) -> dict[str, Any]:
    """Context-only score of each factor, of all pseudo factors together and of all true factors together."""
    key = "labels" if multilabel else "label"
    train_y, eval_y = fs.index[key][train_pos], fs.index[key][eval_pos]
    sizes = _sizes(fs, names, np.concatenate([train_values, eval_values]))
    groups = {name: [j] for j, name in enumerate(names)}
    pseudo = [j for j, n in enumerate(names) if n.startswith(PSEUDO_PREFIX)]
    true = [j for j, n in enumerate(names) if not n.startswith(PSEUDO_PREFIX)]
    for label, columns in (("all pseudo", pseudo), ("all true", true)):
        if len(columns) > 1:
            groups[label] = columns
    return {label: context_only(train_values[:, cols], train_y, eval_values[:, cols], eval_y,
                                [sizes[j] for j in cols], fs.dims["C"], multilabel, resamples)
            for label, cols in groups.items()}


def matched_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The share of videos on which two labellings agree under the best one-to-one matching of their values."""
    from scipy.optimize import linear_sum_assignment

    known = (a >= 0) & (b >= 0)
    if not known.any():
        return float("nan")
    a, b = a[known], b[known]
    table = np.zeros((a.max() + 1, b.max() + 1), np.int64)
    np.add.at(table, (a, b), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(a))


def _pseudo_summary(fs: FeatureSet, positions: np.ndarray, names: list[str], values: np.ndarray) -> dict[str, Any]:
    labels = pseudo_labels(fs, positions)
    if labels is None:
        return {}
    out = {}
    for j, factor in enumerate(labels.factors):
        column = labels.values[:, j]
        known = column[column >= 0]
        ids, counts = np.unique(known, return_counts=True)
        top = np.argsort(-counts, kind="stable")[:TOP_VALUES]
        entry: dict[str, Any] = {
            "values_seen": int(len(ids)), "vocabulary": len(labels.value_names[j]),
            "mean_confidence": float(labels.confidence[:, j].mean()) if len(column) else float("nan"),
            "commonest": [[labels.value_names[j][ids[t]], float(counts[t] / max(len(known), 1))] for t in top]}
        if factor in names:  # a true factor of the same name: how well the pseudo labels recover it
            true = values[:, names.index(factor)]
            both = (true >= 0) & (column >= 0)
            entry["agreement"] = float((true[both] == column[both]).mean()) if both.any() else float("nan")
            entry["matched_agreement"] = matched_agreement(column, true)
        out[factor] = entry
    return out


def _checkpoints(run: Path) -> list[tuple[str, Path]]:
    """(name, best.pt) of a checkpoint file, or of every seed of a run folder."""
    if run.is_file():
        return [(run.parent.name, run)]
    folders = seed_dirs(run)
    found = [(run.name if folder == run else f"{run.name}/{folder.name}", folder / "best.pt") for folder in folders]
    missing = [str(p) for _, p in found if not p.is_file()]
    if missing:
        raise CmdclError(f"{missing[0]}: no such checkpoint.", fix="pass a run folder whose training finished.")
    return found


def _run_leakage(run: Path, fs: FeatureSet, split: str, resamples: int, device: str,
                 batch_size: int) -> dict[str, Any]:
    """name -> factor -> {accuracy, low, high, chance, videos}: the leakage probe of each checkpoint of `run`."""
    out = {}
    for name, checkpoint in _checkpoints(run):
        results, predictions = score_splits(checkpoint, fs.paths, [split], device, batch_size)
        probes = results[split].get("leakage") or {}
        p = predictions[split]
        entry = {}
        for factor, probe in probes.items():
            correct = p.leakage_column(factor)
            correct = correct[np.isfinite(correct)]
            low, high, _ = bootstrap_interval(WeightedMean(correct), len(correct), resamples, "BCa")
            entry[factor] = {"accuracy": probe["accuracy"], "low": low, "high": high, "chance": probe["chance"],
                             "videos": probe["videos"]}
        out[name] = entry
    return out


def _ci(entry: dict[str, Any], key: str = "value") -> str:
    return f"{entry[key]:.3f} [{entry['low']:.3f},{entry['high']:.3f}]"


def format_report(report: dict[str, Any]) -> str:
    """The report as the text `cmdcl confounding` prints."""
    metric = "mAP" if report["multilabel"] else "top1"
    lines = [f"confounding on split {report['split']!r} ({report['videos']} videos); context-only regressions fitted "
             f"on {report['train_split']!r}"]
    if report["pseudo_labels"]:
        lines += ["", f"{'pseudo labels':<22} {'values':>9} {'conf':>5}  {'agree':>5} {'match':>5}  commonest"]
        for factor, e in report["pseudo_labels"].items():
            common = ", ".join(f"{name} {share:.2f}" for name, share in e["commonest"])
            agree = (f"{e['agreement']:>5.3f} {e['matched_agreement']:>5.3f}" if "agreement" in e
                     else f"{'-':>5} {'-':>5}")
            lines.append(f"{PSEUDO_PREFIX + factor:<22} {e['values_seen']:>4}/{e['vocabulary']:<4} "
                         f"{e['mean_confidence']:>5.2f}  {agree}  {common}")
    lines += ["", f"{'context only':<22} {metric + ' [95% CI]':<22} {'prior':>6}"]
    for label, e in report["context_only"].items():
        lines.append(f"{label:<22} {_ci(e):<22} {e['prior']:>6.3f}")
    if report["leakage"]:
        lines += ["", f"{'leakage probe':<22} {'factor':<22} {'accuracy [95% CI]':<22} {'chance':>6}"]
        for run, factors in report["leakage"].items():
            for factor, e in factors.items():
                lines.append(f"{run:<22} {factor:<22} {_ci(e, 'accuracy'):<22} {e['chance']:>6.3f}")
    lines += ["", "(agree: pseudo value == true value id; match: after the best one-to-one matching of values; "
              f"context only: a regression from the factor's one-hot labels to the activity, {metric} on this "
              "split, bootstrap interval over its videos; prior: the same without context; leakage: evaluate's "
              "5-fold linear probe from each head's representation to the factor, interval over the videos)"]
    return "\n".join(lines)
