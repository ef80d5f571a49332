"""scripts/compare_feature_files.py: two extractions that stored the same videos in different orders compare
equal, /segments included; a real difference in one video's segments is still found."""
import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np

from cmdcl.core.store import ShardWriter
from store_fixtures import base_attrs, make_record, make_text

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_feature_files.py"


def load_script():
    spec = importlib.util.spec_from_file_location("compare_feature_files", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path: Path, order: list[int], shift: float = 0.0) -> Path:
    segments = {0: [[1, 0.0, 2.0], [2, 2.0, 3.5]], 1: [], 2: [[0, 1.0 + shift, 4.0]]}
    writer = ShardWriter(path, base_attrs(), make_text())
    for i in order:  # as if videos finished in this order
        writer.add(replace(make_record(f"v{i}", "train", i % 3, seed=i), segments=np.asarray(segments[i], np.float32)))
    writer.finalize()
    return path


def test_videos_and_their_segments_are_matched_by_id(tmp_path):
    compare = load_script().compare
    a, b = write(tmp_path / "a.h5", [0, 1, 2]), write(tmp_path / "b.h5", [2, 0, 1])
    diffs, checked = compare(a, b)
    assert diffs == [] and checked > 10
    diffs, _ = compare(a, write(tmp_path / "c.h5", [1, 2, 0], shift=0.5))
    assert diffs == ["segments/table: values differ"]
