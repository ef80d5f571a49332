"""COIN's taxonomy as it is published: the `target_action_mapping` sheet of `taxonomy.xlsx` (columns Target Id,
Target Label, Action Id, Action Label; 778 rows), or that sheet saved as CSV.

Reading the .xlsx needs openpyxl (`pip install 'cmdcl[coin]'`); a CSV export needs nothing.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from cmdcl.core.errors import DatasetError

SHEET = "target_action_mapping"
# Accepted header names (lower-cased, spaces and underscores removed) of the taxonomy columns.
COLUMNS = {"task_id": ("targetid", "recipetype", "taskid"),
           "task": ("targetlabel", "target", "task", "class", "taskname"),
           "step_id": ("actionid", "stepid"),
           "step": ("actionlabel", "action", "step", "stepname")}
INSTALL_HINT = ("pip install 'cmdcl[coin]' (openpyxl), or pass --taxonomy a CSV export of its "
                "target_action_mapping sheet")


@dataclass(frozen=True)
class TaxonomyRow:
    task_id: int
    task: str
    step_id: int
    step: str
    where: str  # "file:line" (CSV) or "file[sheet]:row" (xlsx), for error messages


def find_taxonomy(root: Path, taxonomy: str | Path | None) -> Path | None:
    """The given file, else a `taxonomy*.xlsx` (as published) or `taxonomy*.csv` in ROOT, else None."""
    if taxonomy is not None:
        path = Path(taxonomy).expanduser().absolute()
        if not path.is_file():
            raise DatasetError(f"COIN taxonomy {path} not found",
                               fix="pass --taxonomy FILE (COIN's taxonomy.xlsx or a CSV export) or leave it out")
        return path
    workbooks, exports = sorted(root.glob("taxonomy*.xlsx")), sorted(root.glob("taxonomy*.csv"))
    if workbooks and (_has_openpyxl() or not exports):
        return workbooks[0]  # read as published; without openpyxl, read_taxonomy says how to get it
    return exports[0] if exports else None


def read_taxonomy(file: Path) -> list[TaxonomyRow]:
    """Rows of (task id, task name, step id, step name), in any column order, header names as in COIN's sheet."""
    header, rows = _xlsx_rows(file) if file.suffix.lower() in (".xlsx", ".xlsm") else _csv_rows(file)
    columns = _columns(file, header)
    table = []
    for where, row in rows:
        cells = {key: row[i] if i < len(row) else None for key, i in columns.items()}
        if all(value in (None, "") for value in cells.values()):
            continue  # blank rows at the end of a sheet
        table.append(TaxonomyRow(task_id=_integer(cells["task_id"], where), task=str(cells["task"] or ""),
                                 step_id=_integer(cells["step_id"], where), step=str(cells["step"] or ""),
                                 where=where))
    if not table:
        raise DatasetError(f"{file}: the taxonomy has no rows under its header")
    return table


def _columns(file: Path, header: list[Any]) -> dict[str, int]:
    names = ["" if h is None else str(h) for h in header]
    normalised = {"".join(n.lower().split()).replace("_", ""): i for i, n in enumerate(names)}
    columns = {key: next((normalised[n] for n in accepted if n in normalised), None)
               for key, accepted in COLUMNS.items()}
    absent = [key for key, column in columns.items() if column is None]
    if absent:
        raise DatasetError(f"{file}:1: no column for {', '.join(absent)}; header is {','.join(names)!r}, "
                           f"expected Target Id, Target Label, Action Id, Action Label")
    return columns


def _csv_rows(file: Path) -> tuple[list[str], Iterator[tuple[str, list[str]]]]:
    with open(file, newline="", encoding="utf-8-sig") as f:
        lines = list(csv.reader(f))
    if not lines:
        raise DatasetError(f"{file} is empty; expected a header Target Id, Target Label, Action Id, Action Label")
    return lines[0], ((f"{file}:{n}:", row) for n, row in enumerate(lines[1:], 2))


def _xlsx_rows(file: Path) -> tuple[list[Any], Iterator[tuple[str, tuple]]]:
    try:
        import openpyxl
    except ImportError:
        raise DatasetError(f"reading the COIN taxonomy {file} needs openpyxl, which is not installed",
                           fix=INSTALL_HINT) from None
    try:
        book = openpyxl.load_workbook(file, read_only=True, data_only=True)
    except Exception as exc:  # not a zip, not a workbook, corrupt
        raise DatasetError(f"{file}: not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from None
    try:
        sheet = book[SHEET] if SHEET in book.sheetnames else book.worksheets[0]
        rows = list(sheet.iter_rows(values_only=True))
    finally:
        book.close()
    if not rows:
        raise DatasetError(f"{file}[{sheet.title}]: the sheet is empty; expected COIN's {SHEET} sheet")
    return list(rows[0]), ((f"{file}[{sheet.title}]:{n}:", row) for n, row in enumerate(rows[1:], 2))


def _integer(value: Any, where: str) -> int:
    """An id cell: an int, a whole float (how spreadsheets store numbers) or digits."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise DatasetError(f"{where} task and step ids must be integers, got {value!r}")


def _has_openpyxl() -> bool:
    from importlib.util import find_spec

    return find_spec("openpyxl") is not None
