"""`cmdcl merge`: copy compatible shards into one contiguous file (optionally with some videos moved to
another split: `cmdcl scene-split`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import h5py
import numpy as np

from . import files
from .files import _read_rows
from .layout import _video_fields
from .reader import FeatureSet


def merge_feature_files(inputs: str | Path | Sequence[str | Path], output: str | Path, chunk: int = 512,
                        splits: Mapping[str, str] | None = None) -> dict[str, int]:
    """Copy compatible shards into one contiguous file (refusing mismatched provenance). `splits`: video id ->
    the split it is written under instead of its own (the others keep theirs)."""
    source = FeatureSet(inputs)
    splits = dict(splits or {})
    output = Path(output)
    names = _video_fields(source.attrs)

    def blocks() -> Iterator[dict[str, np.ndarray]]:
        for path in source.paths:
            with h5py.File(path, "r") as f:
                n = f["videos/video_id"].shape[0]
                for start in range(0, n, chunk):
                    block = _read_rows(f, names, start, start + chunk)
                    if splits:
                        block["split"] = np.array([splits.get(v, s) for v, s in zip(block["video_id"], block["split"])],
                                                  dtype=object)
                    yield block

    attrs = {**source.provenance(), "shard_index": 0, "num_shards": 1,
             "merged_from": [str(p) for p in source.paths],
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if splits:
        attrs["splits"] = sorted({splits.get(v, s) for v, s in zip(source.index["video_id"], source.index["split"])})
    tmp = output.with_name(output.name + ".tmp")
    output.parent.mkdir(parents=True, exist_ok=True)
    files._write_file(tmp, attrs, source.text, blocks(), source.failures(), len(source), contiguous=True,
                      notes=source.notes(), context=source.context)
    tmp.rename(output)
    return {"videos": len(source), "failures": len(source.failures()), "inputs": len(source.paths)}
