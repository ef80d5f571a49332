"""The demo's one table: accuracy with intervals over seeds, the paired OOD difference against a reference
method, then the demo columns of the metric table (head/metrics/registry.py: OOD calibration (ECE), step mAP,
temporal and spatial grounding, frame-level step top-1, context leakage), in table order (no torch: it reads
the runs' files).

    OUT/<row>/seed-K/predictions_<split>.npz   -> head/comparison/compare.compare_runs (intervals, paired differences;
                                                  top-1 on test and test_ood, every `paired` column: ECE on OOD)
    OUT/<row>/seed-K/metrics_<split>.json      -> the other columns: the mean over seeds of their key

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

from cmdcl.head.metrics.registry import IID, OOD, DemoColumn, demo_columns

# The one place the demo reads grounding from (its results.json): a key of `evaluate`'s per-split metrics (mass
# of step attention on the true segment over the uniform share; absent for heads without that attention).
GROUNDING_METRIC = "grounding_mass_ratio"
OOD_ECE = f"{OOD}-ece"  # key and folder suffix of the OOD calibration comparison (the ece entry's paired column)
REFERENCE = "transformer"  # the strongest baseline in every demo so far: the difference that matters for CMDCL


@dataclass
class RowExtras:
    """Per-row means over seeds of the metric table's demo columns read from metrics_<split>.json (None where
    the head has none), and of its families (factor -> probe accuracy and chance)."""
    columns: dict[str, float | None]  # column header -> mean over seeds
    families: dict[str, dict[str, float | None]]  # column header -> factor -> mean probe accuracy
    chances: dict[str, dict[str, float | None]]  # column header -> factor -> mean chance


def seed_metrics(run: Path, split: str) -> list[dict[str, Any]]:
    """metrics_<split>.json of every seed of a run (written by evaluate)."""
    return [json.loads((d / f"metrics_{split}.json").read_text()) for d in seed_dirs(run)]


def row_extras(run: Path) -> RowExtras:
    by_split = {split: seed_metrics(run, split) for split in {c.split for _, _, c in demo_columns()}}
    extras = RowExtras({}, {}, {})
    for name, entry, column in demo_columns():
        key, metrics = column.key or name, by_split[column.split]
        if entry.family:
            factors = sorted({f for m in metrics for f in m.get(key, {})})
            extras.families[column.header] = {f: _family_mean(metrics, key, f, "accuracy") for f in factors}
            extras.chances[column.header] = {f: _family_mean(metrics, key, f, "chance") for f in factors}
        elif not column.paired:
            extras.columns[column.header] = mean_of(m.get(key) for m in metrics)
    return extras


def seed_columns(metrics: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """One seed's value of every plain demo column, from its {split: metrics} (demo's results.json)."""
    return {c.header: metrics.get(c.split, {}).get(c.key or name) for name, e, c in demo_columns()
            if not e.family and not c.paired}


def _family_mean(metrics: list[dict[str, Any]], key: str, factor: str, value: str) -> float | None:
    """Mean over seeds of a family member's `value` (a probe's accuracy or chance) for one context factor."""
    return mean_of(m[key][factor][value] for m in metrics if factor in m.get(key, {}))


def mean_of(values) -> float | None:
    """Mean of the finite values that are not None; None when there are none."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(kept) / len(kept) if kept else None


def _paired_key(name: str, column: DemoColumn) -> str:
    return f"{column.split}-{name}"


def compare_splits(out: Path, rows: Sequence[str], reference: str | None = REFERENCE):
    """{split: Comparison} of the rows' top-1 on IID and OOD, and {<split>-<metric>: Comparison} of every paired
    demo column (the OOD ECE: OOD_ECE), written to OUT/compare-<key>/."""
    from cmdcl.head.comparison.compare import compare_runs, write_outputs

    reference = reference if reference in rows else rows[0]
    wanted = [(IID, IID, "top1"), (OOD, OOD, "top1")]
    wanted += [(_paired_key(n, c), c.split, n) for n, _, c in demo_columns() if c.paired]
    comparisons = {}
    for key, split, metric in wanted:
        comparisons[key] = compare_runs([out / r for r in rows], split, reference=reference, metric=metric)
        write_outputs(comparisons[key], out / f"compare-{key}")
    return comparisons


def _num(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _ci(low: float | None, high: float | None, signed: bool = False) -> str:
    return f"[{_num(low, signed)},{_num(high, signed)}]"


def _width(column: DemoColumn) -> int:
    return max(len(column.header), 6)


def _column_values(name: str, column: DemoColumn, rows: Sequence[str], comparisons: dict,
                   extras: dict[str, RowExtras]) -> dict[str, float | None]:
    """Row -> the column's value: the comparison's mean for a paired column, else the mean over seeds."""
    if column.paired:
        found = comparisons.get(_paired_key(name, column))
        return {r.run: r.mean for r in found.rows} if found is not None else {}
    return {row: extras[row].columns.get(column.header) for row in rows}


def _short(value: float | None) -> str:
    """A probe accuracy in three characters: .50 (1.0 as 1.0, not .00), '-' when there is none."""
    return "-" if value is None else "1.0" if value >= 0.995 else f"{value:.2f}"[1:]


def _family_cells(name: str, column: DemoColumn, rows: Sequence[str],
                  extras: dict[str, RowExtras]) -> tuple[str, dict[str, str], list[str]]:
    """(header, row -> cell, factors) of a family column: one value per factor, ".50/.30"."""
    factors = sorted({f for e in extras.values() for f in e.families.get(column.header, {})})
    header = f"{column.header} " + "/".join(f[:4] for f in factors) if factors else name
    cells = {}
    for row in rows:
        values = extras[row].families.get(column.header, {})
        cells[row] = "/".join(_short(values.get(f)) for f in factors) or "-"
    return header, cells, factors


def _metric_cells(rows: Sequence[str], comparisons: dict, extras: dict[str, RowExtras]) -> tuple[str, dict[str, str]]:
    """The demo columns of the metric table, (header text, row -> cells text), in table order."""
    head, cells = [], {row: [] for row in rows}
    for name, entry, column in demo_columns():
        if entry.family:
            title, values, _ = _family_cells(name, column, rows, extras)
            width = 18
            head.append(f"{title:>{width}}")
            for row in rows:
                cells[row].append(f"{values[row]:>{width}}")
            continue
        values = _column_values(name, column, rows, comparisons, extras)
        head.append(f"{column.header:>{_width(column)}}")
        for row in rows:
            cells[row].append(f"{_num(values.get(row)):>{_width(column)}}")
    return " ".join(head), {row: " ".join(c) for row, c in cells.items()}


def format_demo_table(out: Path, rows: Sequence[str], comparisons: dict, train_s: dict[str, float],
                      chance: float, context: dict[str, float] | None = None) -> str:
    """The demo's table (see the module docstring); `train_s` = mean training seconds per seed of each row."""
    iid = {r.run: r for r in comparisons[IID].rows}
    ood = {r.run: r for r in comparisons[OOD].rows}
    reference = comparisons[OOD].reference
    extras = {name: row_extras(out / name) for name in rows}
    width = max(17, *(len(name) for name in rows))
    metric_head, metric_cells = _metric_cells(rows, comparisons, extras)
    head = (f"{'method':<{width}} {'IID top-1 [95% CI]':<20} {'OOD top-1 [95% CI]':<20} "
            f"{'OOD - ' + reference + ' [95% CI]':<30} {'p':>6} {'over seeds':<17} {metric_head} {'train s':>7}")
    lines = [head, "-" * len(head)]
    for name in rows:
        a, b = iid[name], ood[name]
        diff = "(reference)" if b.diff is None else f"{_num(b.diff, True)} {_ci(b.diff_low, b.diff_high, True)}"
        p = "" if b.p is None else ("<0.001" if b.p < 0.001 else f"{b.p:.3f}")
        seeds_ci = _ci(*b.diff_seed_ci, signed=True) if b.diff_seed_ci else ""
        lines.append(f"{name:<{width}} {_num(a.mean)} {_ci(a.ci_low, a.ci_high):<14} {_num(b.mean)} "
                     f"{_ci(b.ci_low, b.ci_high):<14} {diff:<30} {p:>6} {seeds_ci:<17} {metric_cells[name]} "
                     f"{train_s.get(name, 0.0):>7.1f}")
    if context:
        lines.append(f"{'context only':<{width}} {context[IID]:.3f} {'':<14} {context[OOD]:.3f} {'':<14} "
                     "<- logistic regression on the true confounder labels")
    lines += _footer(comparisons, extras, chance)
    return "\n".join(lines)


def _footer(comparisons: dict, extras: dict[str, RowExtras], chance: float) -> list[str]:
    seeds = max(len(r.seeds) for r in comparisons[OOD].rows)
    c = comparisons[OOD]
    lines = [f"(chance top-1 = {chance:.3f}; IID = split 'test' ({comparisons[IID].num_videos} videos), OOD = split "
             f"'test_ood' ({c.num_videos} videos) with the context shuffled; every number is the mean over {seeds} "
             "seeds;",
             " [95% CI] of a score: t interval over seeds (training noise); of a difference: paired bootstrap over "
             "the same videos and seeds (test-set noise), p: paired permutation test; 'over seeds': t interval of "
             "the per-seed differences (training noise; head/comparison/compare.py);"]
    plain = [f"{column.header}: {column.about}" for _, entry, column in demo_columns() if not entry.family]
    if plain:
        lines.append(" " + "; ".join(plain) + " (grounding ratios: 1.0 = uniform; '-': no such output or annotation);")
    for name, entry, column in demo_columns():
        factors = sorted({f for e in extras.values() for f in e.families.get(column.header, {})})
        if not entry.family or not factors:
            continue
        chances = {f: mean_of(e.chances.get(column.header, {}).get(f) for e in extras.values()) for f in factors}
        chance_text = ", ".join(f"{f} chance {_num(chances[f])}" for f in factors)
        lines.append(f" {column.header}: {column.about} ({chance_text})"
                     + ("; lower = less context left" if not entry.higher_is_better else "") + ";")
    lines.append(" full comparisons: compare-test*/)")
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
