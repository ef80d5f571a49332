"""JSON files the tool writes (metrics, configs, comparisons): strict JSON, written atomically.

One home for both rules, so that every JSON file a run leaves is readable by strict parsers (no NaN) and is
never seen half-written (a temporary file renamed over the old one).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """NaN/inf (e.g. top-1 of an empty split) -> None, tuples -> lists, numpy scalars and arrays -> Python."""
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_text(value: Any) -> str:
    return json.dumps(json_safe(value), indent=2, default=str, allow_nan=False) + "\n"


def write_json(path: str | Path, value: Any) -> None:
    """`value` as strict JSON at `path`, through a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json_text(value))
    os.replace(tmp, path)
