"""The demo's one table: accuracy with intervals over seeds, the paired OOD difference against a reference
method, OOD calibration (ECE), temporal and spatial grounding, and context leakage (no torch: it reads the
runs' files).

    OUT/<row>/seed-K/predictions_<split>.npz   -> head/comparison/compare.compare_runs (intervals, paired differences;
                                                  top-1 on test and test_ood, ECE on test_ood)
    OUT/<row>/seed-K/metrics_<split>.json      -> grounding (test), spatial grounding (test, test_ood), the
                                                  attention mass on the props (test), leakage (test_ood)

The comparisons are also written as OUT/compare-<split>/ and OUT/compare-test_ood-ece/ (compare.json,
compare.txt, forest.png); `cmdcl report OUT/cmdcl/...` finds the first. Under the table, each row trained
beside its oracle row (<row>-unconfounded: trained on the split whose context is at chance) gets its
residual confounding, OOD(oracle) - OOD(row), paired over videos and seeds (OUT/compare-residual-<row>/).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cmdcl.head.training.seed_runs import seed_dirs

IID, OOD = "test", "test_ood"
# The one place the demo reads grounding from: keys of `evaluate`'s per-split metrics (mass of step / patch
# attention on the true segment / object over the uniform share; absent for heads without that attention).
GROUNDING_METRIC, SPATIAL_METRIC = "grounding_mass_ratio", "spatial_mass_ratio"
OOD_ECE = f"{OOD}-ece"  # key and folder suffix of the OOD calibration comparison
PROP_METRIC = "spatial_prop_mass_ratio"  # patch-attention mass on the props' boxes / their share (<= 1: ignored)
REFERENCE = "transformer"  # the strongest baseline in every demo so far: the difference that matters for CMDCL


@dataclass
class RowExtras:
    """Per-row means over seeds of the metrics that are not top-1 (None where the head has none)."""
    step_map: float | None
    grounding: float | None  # temporal: step-attention mass in the true segment / uniform share (IID)
    spatial: float | None  # patch-attention mass on the true object's patches / their share (IID)
    spatial_ood: float | None  # the same on OOD
    props: float | None  # patch-attention mass on the props' patches / their share (IID)
    leakage: dict[str, float]  # factor -> probe accuracy from the head's representation (OOD)
    leakage_chance: dict[str, float]


def seed_metrics(run: Path, split: str) -> list[dict[str, Any]]:
    """metrics_<split>.json of every seed of a run (written by evaluate)."""
    return [json.loads((d / f"metrics_{split}.json").read_text()) for d in seed_dirs(run)]


def row_extras(run: Path) -> RowExtras:
    iid, ood = seed_metrics(run, IID), seed_metrics(run, OOD)
    factors = sorted({f for m in ood for f in m.get("leakage", {})})
    return RowExtras(
        step_map=mean_of(m.get("step_mAP") for m in iid),
        grounding=mean_of(m.get(GROUNDING_METRIC) for m in iid),
        spatial=mean_of(m.get(SPATIAL_METRIC) for m in iid),
        spatial_ood=mean_of(m.get(SPATIAL_METRIC) for m in ood),
        props=mean_of(m.get(PROP_METRIC) for m in iid),
        leakage={f: _leakage_mean(ood, f, "accuracy") for f in factors},
        leakage_chance={f: _leakage_mean(ood, f, "chance") for f in factors})


def _leakage_mean(metrics: list[dict[str, Any]], factor: str, key: str) -> float | None:
    """Mean over seeds of the leakage probe's `key` (accuracy or chance) for one context factor."""
    return mean_of(m["leakage"][factor][key] for m in metrics if factor in m.get("leakage", {}))


def mean_of(values) -> float | None:
    """Mean of the finite values that are not None; None when there are none."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(kept) / len(kept) if kept else None


def compare_splits(out: Path, rows: Sequence[str], reference: str | None = REFERENCE):
    """{split: Comparison} of the rows' top-1 on IID and OOD, and {OOD_ECE: Comparison} of their OOD ECE,
    written to OUT/compare-<key>/."""
    from cmdcl.head.comparison.compare import compare_runs, write_outputs

    reference = reference if reference in rows else rows[0]
    comparisons = {}
    for key, split, metric in ((IID, IID, "top1"), (OOD, OOD, "top1"), (OOD_ECE, OOD, "ece")):
        comparisons[key] = compare_runs([out / r for r in rows], split, reference=reference, metric=metric)
        write_outputs(comparisons[key], out / f"compare-{key}")
    return comparisons


def _num(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _ci(low: float | None, high: float | None, signed: bool = False) -> str:
    return f"[{_num(low, signed)},{_num(high, signed)}]"


def format_demo_table(out: Path, rows: Sequence[str], comparisons: dict, train_s: dict[str, float],
                      chance: float, context: dict[str, float] | None = None) -> str:
    """The demo's table (see the module docstring); `train_s` = mean training seconds per seed of each row."""
    iid = {r.run: r for r in comparisons[IID].rows}
    ood = {r.run: r for r in comparisons[OOD].rows}
    reference = comparisons[OOD].reference
    ece = {r.run: r.mean for r in comparisons[OOD_ECE].rows} if OOD_ECE in comparisons else {}
    extras = {name: row_extras(out / name) for name in rows}
    factors = sorted({f for e in extras.values() for f in e.leakage})
    width = max(17, *(len(name) for name in rows))
    leak_head = "leak " + "/".join(f[:4] for f in factors) if factors else "leakage"
    head = (f"{'method':<{width}} {'IID top-1 [95% CI]':<20} {'OOD top-1 [95% CI]':<20} "
            f"{'OOD - ' + reference + ' [95% CI]':<30} {'p':>6} {'over seeds':<17} {'OOD ECE':>7} {'mAP':>5} "
            f"{'t-grnd':>6} {'s-grnd':>6} {'s-ood':>6} {'p-mass':>6} {leak_head:>18} {'train s':>7}")
    lines = [head, "-" * len(head)]
    for name in rows:
        a, b, e = iid[name], ood[name], extras[name]
        diff = "(reference)" if b.diff is None else f"{_num(b.diff, True)} {_ci(b.diff_low, b.diff_high, True)}"
        p = "" if b.p is None else ("<0.001" if b.p < 0.001 else f"{b.p:.3f}")
        seeds_ci = _ci(*b.diff_seed_ci, signed=True) if b.diff_seed_ci else ""
        leak = "/".join(f"{e.leakage[f]:.2f}"[1:] if e.leakage.get(f) is not None else "-" for f in factors) or "-"
        lines.append(f"{name:<{width}} {_num(a.mean)} {_ci(a.ci_low, a.ci_high):<14} {_num(b.mean)} "
                     f"{_ci(b.ci_low, b.ci_high):<14} {diff:<30} {p:>6} {seeds_ci:<17} {_num(ece.get(name)):>7} "
                     f"{_num(e.step_map):>5} {_num(e.grounding):>6} {_num(e.spatial):>6} {_num(e.spatial_ood):>6} "
                     f"{_num(e.props):>6} {leak:>18} {train_s.get(name, 0.0):>7.1f}")
    if context:
        lines.append(f"{'context only':<{width}} {context[IID]:.3f} {'':<14} {context[OOD]:.3f} {'':<14} "
                     "<- logistic regression on the true confounder labels")
    lines += _footer(comparisons, extras, factors, chance)
    return "\n".join(lines)


def _footer(comparisons: dict, extras: dict[str, RowExtras], factors: list[str], chance: float) -> list[str]:
    seeds = max(len(r.seeds) for r in comparisons[OOD].rows)
    c = comparisons[OOD]
    chances = {f: mean_of(e.leakage_chance.get(f) for e in extras.values()) for f in factors}
    lines = [f"(chance top-1 = {chance:.3f}; IID = split 'test' ({comparisons[IID].num_videos} videos), OOD = split "
             f"'test_ood' ({c.num_videos} videos) with the context shuffled; every number is the mean over {seeds} "
             "seeds;",
             " [95% CI] of a score: t interval over seeds (training noise); of a difference: paired bootstrap over "
             "the same videos and seeds (test-set noise), p: paired permutation test; 'over seeds': t interval of "
             "the per-seed differences (training noise; head/comparison/compare.py);",
             f" OOD ECE: expected calibration error of the top-1 softmax confidence on OOD (15 bins; lower = better "
             f"calibrated; paired with {c.reference} in compare-{OOD_ECE}/);",
             " t-grnd: IID step-attention mass inside the true step segments / the uniform share; s-grnd, s-ood: IID, "
             "OOD patch-attention mass on the true object's patches / their share; p-mass: IID patch-attention mass "
             "on the props' patches / their share (<= 1: the props get no more than uniform attention) (1.0 = "
             "uniform, '-' = no such attention or boxes);"]
    if factors:
        lines.append(" leak: OOD accuracy of a 5-fold linear probe from the head's representation to each context "
                     "factor (" + ", ".join(f"{f} chance {_num(chances[f])}" for f in factors) + "); lower = less "
                     "context left; full comparisons: compare-test*/)")
    return lines


def residual_rows(out: Path, pairs: Sequence[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Residual confounding of each (row, its oracle row): OOD top-1 of the oracle (the same method trained on
    the split whose context is at chance) minus the row's, paired over the same test_ood videos and seeds
    (`compare_runs` with the row as reference; written to OUT/compare-residual-<row>/)."""
    from cmdcl.head.comparison.compare import compare_runs, write_outputs

    numbers = {}
    for row, oracle in pairs:
        c = compare_runs([out / row, out / oracle], OOD, reference=row, metric="top1")
        write_outputs(c, out / f"compare-residual-{row}")
        ref, orc = (next(r for r in c.rows if r.run == name) for name in (row, oracle))
        numbers[row] = {"oracle": oracle, "ood_top1": ref.mean, "oracle_ood_top1": orc.mean, "residual": orc.diff,
                        "ci": [orc.diff_low, orc.diff_high], "seed_ci": list(orc.diff_seed_ci or []) or None,
                        "p": orc.p, "pairing": orc.pairing, "seeds": len(orc.seeds), "videos": c.num_videos}
    return numbers


def format_residual(numbers: dict[str, dict[str, Any]]) -> str:
    """The residual-confounding table under the demo's table (one line per row with an oracle row)."""
    width = max(17, *(len(name) for name in numbers))
    head = (f"{'residual':<{width}} {'OOD trained on train':>20} {'on train_unconfounded':>21} "
            f"{'residual [95% CI]':<26} {'p':>6} {'over seeds':<17}")
    lines = [head, "-" * len(head)]
    for name, n in numbers.items():
        p = "" if n["p"] is None else ("<0.001" if n["p"] < 0.001 else f"{n['p']:.3f}")
        seeds_ci = _ci(*n["seed_ci"], signed=True) if n["seed_ci"] else ""
        lines.append(f"{name:<{width}} {_num(n['ood_top1']):>20} {_num(n['oracle_ood_top1']):>21} "
                     f"{_num(n['residual'], True) + ' ' + _ci(*n['ci'], signed=True):<26} {p:>6} {seeds_ci:<17}")
    first = next(iter(numbers.values()))
    lines.append(f"(residual confounding = OOD top-1 of the method trained on 'train_unconfounded' (same size and "
                 f"recipe as 'train', context at chance) - trained on 'train' (confounded), on the same "
                 f"{first['videos']} test_ood videos and {first['seeds']} seeds: what the confounding still costs the "
                 "method (0 = nothing); [95% CI]: paired bootstrap over videos and seeds, 'over seeds': t interval "
                 "of the per-seed differences; full comparisons: compare-residual-<row>/)")
    return "\n".join(lines)
