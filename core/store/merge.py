"""`cmdcl merge`: copy compatible shards into one contiguous file."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from . import files
from .files import _read_rows
from .layout import _video_fields
from .reader import FeatureSet


def merge_feature_files(inputs: str | Path | Sequence[str | Path], output: str | Path, chunk: int = 512) -> dict[str, int]:
    """Copy compatible shards into one contiguous file (refusing mismatched provenance)."""
    source = FeatureSet(inputs)
    output = Path(output)
    names = _video_fields(source.attrs)

    def blocks() -> Iterator[dict[str, np.ndarray]]:
        for path in source.paths:
            with h5py.File(path, "r") as f:
                n = f["videos/video_id"].shape[0]
                for start in range(0, n, chunk):
                    yield _read_rows(f, names, start, start + chunk)

    attrs = {**source.provenance(), "shard_index": 0, "num_shards": 1,
             "merged_from": [str(p) for p in source.paths],
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = output.with_name(output.name + ".tmp")
    output.parent.mkdir(parents=True, exist_ok=True)
    files._write_file(tmp, attrs, source.text, blocks(), source.failures(), len(source), contiguous=True,
                notes=source.notes())
    tmp.rename(output)
    return {"videos": len(source), "failures": len(source.failures()), "inputs": len(source.paths)}
