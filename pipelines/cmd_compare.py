"""`cmdcl compare RUN... --split S`: mean +- 95% interval per run and paired differences to a reference
(head/comparison/compare.py, docs/REPORT.md "Comparing methods"). numpy/scipy/matplotlib are imported inside the body."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cmdcl.core.errors import CmdclError
from cmdcl.head.metrics.registry import compare_help, paired_entry


def compare(
    runs: List[Path] = typer.Argument(..., help="Run folders (single or multi-seed); a run's name is its folder name."),
    split: str = typer.Option("test", "--split", help="Split whose predictions_<split>.npz are compared."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Run name to compare against "
                                                                      "(default: the first run)."),
    metric: Optional[str] = typer.Option(None, "--metric", help=compare_help() + " FACTOR: a context factor of "
                                         "the leakage probes, e.g. leakage:pseudo:scene."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for compare.json, compare.txt, forest.png "
                                                           "(default: <first run's parent>/compare-<split>)."),
    resamples: int = typer.Option(9999, "--resamples", help="Bootstrap resamples and permutations."),
    seed: int = typer.Option(0, "--seed", help="Random state of the bootstrap and the permutation test."),
    force: bool = typer.Option(False, "--force", help="Compare runs scored on other feature files or splits "
                                                      "(refused otherwise); the output says it was forced."),
) -> None:
    """Is a difference between methods an effect or noise? Paired bootstrap intervals and p-values per run."""
    from cmdcl.head.comparison.compare import compare_runs, format_table, write_outputs

    if metric is not None:
        paired_entry(metric)  # an unknown or unpairable metric: a one-line error before any file is read
    if resamples < 100:
        raise CmdclError(f"--resamples must be >= 100, got {resamples}.")

    comparison = compare_runs(runs, split, reference, metric, n_resamples=resamples, seed=seed, force=force)
    paths = write_outputs(comparison, out or Path(runs[0]).parent / f"compare-{split}")
    typer.echo(format_table(comparison))
    typer.echo(f"wrote {paths['json']}, {paths['table']}, {paths['forest']}")


COMMANDS = {"compare": compare}
