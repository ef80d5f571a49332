"""The report's comparison section: the forest plot and table of a `cmdcl compare` that includes the run.

Which comparison: `--compare PATH` (a compare.json or its folder); otherwise RUN/../compare-<split>/compare.json
when present and one of its runs is this run (the folder `cmdcl compare` writes by default). The forest plot
is copied into the report folder so the page stays self-contained.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from cmdcl.core.errors import CmdclError

from .figures import Figure

COMPARE_PNG = "compare_forest.png"


def find_comparison(run: Path, split: str, compare: Path | None) -> Path | None:
    """The compare.json to show: the given one (a one-line error when missing), else the default one of
    this run's parent folder when it compares this run, else None."""
    if compare is not None:
        path = Path(compare) / "compare.json" if Path(compare).is_dir() else Path(compare)
        if not path.is_file():
            raise CmdclError(f"--compare {compare}: no compare.json there.", fix="pass the --out folder of "
                                                                                 "`cmdcl compare` or its compare.json.")
        return path
    path = Path(run).parent / f"compare-{split}" / "compare.json"
    if not path.is_file():
        return None
    try:
        names = {r.get("run") for r in json.loads(path.read_text()).get("rows", [])}
    except (ValueError, AttributeError):
        return None
    return path if Path(run).name in names else None


def comparison_figure(path: Path | None, out: Path) -> tuple[Figure | None, dict[str, Any]]:
    """(the section, what report.json records) for compare.json `path`; (None, {}) without one."""
    if path is None:
        return None, {}
    try:
        record = json.loads(Path(path).read_text())
    except ValueError as exc:
        raise CmdclError(f"{path}: not valid JSON ({exc}).") from None
    figure = Figure("comparison", f"Comparison with other runs ({record.get('metric')} on "
                                  f"{record.get('split')!r}, reference {record.get('reference')})")
    png = Path(path).parent / str(record.get("forest", "forest.png"))
    if png.is_file():
        shutil.copyfile(png, Path(out) / COMPARE_PNG)
        figure.file = COMPARE_PNG
        figure.caption = ("Each run's difference to the reference on the same videos (dot) with its paired 95% "
                          "bootstrap interval over videos (bar) and the permutation p-value. A bar that crosses "
                          "the dashed zero line is a difference these test videos cannot tell from noise.")
    else:
        figure.notes.append(f"The forest plot {png} is missing; the table below is from {path}.")
    figure.text = str(record.get("table", ""))
    return figure, {"compare": str(path), "reference": record.get("reference"), "metric": record.get("metric")}
