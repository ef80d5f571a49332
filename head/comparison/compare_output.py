"""What `cmdcl compare` writes: the text table, compare.json and the forest plot of the differences."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from cmdcl.core.atomic import write_atomic, write_text_atomic
from cmdcl.core.json_files import write_json
from ..metrics.registry import lower_is_better

if TYPE_CHECKING:
    from .results import Comparison

DPI = 100
FOREST_FILE = "forest.png"
JSON_FILE = "compare.json"
TABLE_FILE = "compare.txt"
METHOD_TEXT = {"recentred": "percentile, recentred on the observed value"}


def _num(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _interval(low: float | None, high: float | None, signed: bool = False) -> str:
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "-"
    return f"[{_num(low, signed)}, {_num(high, signed)}]"


def format_table(comparison: Comparison) -> str:
    """Columns: run, seeds, mean, 95% CI, diff vs ref, 95% CI of diff, p; then what the intervals are."""
    c = comparison
    width = max([len("run")] + [len(r.run) for r in c.rows])
    pct = f"{c.confidence:.0%}"
    head = (f"{'run':<{width}}  {'seeds':>5}  {'mean':>6}  {pct + ' CI':<17} {'diff vs ref':>11}  "
            f"{pct + ' CI of diff':<17} {'p':>6}")
    lines = [f"{c.metric} on split {c.split!r} ({c.num_videos} videos), reference {c.reference}", head,
             "-" * len(head)]
    single = False
    for r in c.rows:
        mark = "*" if r.ci_kind != "t over seeds" else " "
        single |= mark == "*"
        ci = _interval(r.ci_low, r.ci_high) + mark
        if r.diff is None:
            tail = f"{'(reference)':>11}"
        else:
            tail = f"{_num(r.diff, True):>11}  {_interval(r.diff_low, r.diff_high, True):<17} {_p(r.p):>6}"
        lines.append(f"{r.run:<{width}}  {'n=' + str(len(r.seeds)):>5}  {_num(r.mean):>6}  {ci:<17} {tail}".rstrip())
    lines.append(f"CI: t interval over seeds of the mean; diff: run - reference on the same videos, paired bootstrap "
                 f"over videos ({METHOD_TEXT.get(c.ci_method, c.ci_method)}, {c.n_resamples} resamples); "
                 f"p: paired permutation test.")
    if lower_is_better(c.metric):
        lines.append(f"{c.metric}: lower is better (a negative difference favours the run).")
    if single:
        lines.append("* n=1: one seed, so the interval is a bootstrap over videos (test-set noise only), "
                     "not over training seeds.")
    trained = {r.run: r.train_split for r in c.rows}
    if len({t for t in trained.values() if t is not None}) > 1:  # one method on two training splits
        lines.append("trained on: " + ", ".join(f"{run} {split or '?'}" for run, split in trained.items()) + ".")
    lines += c.notes
    return "\n".join(lines)


def _p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def plot_forest(comparison: Comparison, path: Path) -> Path:
    """Each run's difference to the reference with its paired 95% interval, a zero line, p on the right."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = comparison
    rows = [r for r in c.rows if r.diff is not None]
    fig = Figure(figsize=(8.0, max(2.6, 1.4 + 0.45 * len(rows))), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = list(range(len(rows)))[::-1]
    for yi, r in zip(y, rows):
        low, high = r.diff_low, r.diff_high
        colour = "#1f77b4" if low is not None and high is not None and (low > 0 or high < 0) else "#7f7f7f"
        if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
            ax.plot([low, high], [yi, yi], color=colour, linewidth=2)
        ax.plot([r.diff], [yi], "o", color=colour)
        ax.annotate(f"p={_p(r.p)}", xy=(1.0, yi), xycoords=("axes fraction", "data"), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=9)
    ax.axvline(0.0, color="black", linewidth=1, linestyle="--")
    ax.set_yticks(y, [r.run for r in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"{c.metric} difference vs {c.reference} (run - reference)")
    ax.set_title(f"{c.metric} on {c.split!r}, {c.num_videos} videos: paired difference, "
                 f"{c.confidence:.0%} bootstrap interval over videos", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    write_atomic(path, lambda handle: fig.savefig(handle, dpi=DPI, format="png"))
    return Path(path)


def write_outputs(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """compare.json (everything), compare.txt (the table) and forest.png into out_dir; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / JSON_FILE, "table": out_dir / TABLE_FILE, "forest": out_dir / FOREST_FILE}
    table = format_table(comparison)
    write_json(paths["json"], {**comparison.to_dict(), "table": table, "forest": FOREST_FILE})
    write_text_atomic(paths["table"], table + "\n")
    plot_forest(comparison, paths["forest"])
    return paths
