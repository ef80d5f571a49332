"""Build feature files directly in the documented format, without running extraction."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cmdcl.core.store import ShardWriter, TextBank, VideoRecord


def make_text(num_classes: int = 3, num_steps: int = 4, dim: int = 8, seed: int = 0) -> TextBank:
    rng = np.random.default_rng(seed)
    return TextBank(
        class_names=[f"class {i}" for i in range(num_classes)],
        class_embeddings=rng.standard_normal((num_classes, dim)).astype(np.float32),
        step_names=[f"step {i}" for i in range(num_steps)],
        step_embeddings=rng.standard_normal((num_steps, dim)).astype(np.float32),
        templates=["a video of {}."],
    )


def make_record(video_id: str, split: str, label: int, frames: int = 6, dim: int = 8, num_classes: int = 3,
                num_steps: int = 4, valid: int | None = None, seed: int = 0, grid: int = 0) -> VideoRecord:
    rng = np.random.default_rng(seed)
    valid = frames if valid is None else valid
    labels = np.zeros(num_classes, np.uint8)
    labels[label] = 1
    index = np.minimum(np.arange(frames), valid - 1)
    return VideoRecord(
        video_id=video_id, split=split, path=f"/videos/{video_id}.mp4", label=label, labels=labels,
        steps=(rng.random(num_steps) > 0.5).astype(np.uint8), fps=25.0, duration=valid / 25.0,
        num_frames=valid, frame_index=index, timestamps_ms=index * 40.0,
        frame_mask=np.arange(frames) < valid,
        features=rng.standard_normal((frames, dim)).astype(np.float16),
        patches=rng.standard_normal((frames, grid * grid, dim)).astype(np.float16) if grid else None,
    )


def base_attrs(frames: int = 6, dim: int = 8, num_classes: int = 3, num_steps: int = 4, grid: int = 0, **extra) -> dict:
    return {"frames": frames, "embed_dim": dim, "num_classes": num_classes, "num_steps": num_steps,
            "patch_grid": grid, "model_name": "tiny", "pretrained": "", "weights_sha256": "", "image_size": 32,
            "preprocess": {"resize": "shortest"}, "sampler": {"kind": "uniform"}, "precision": "fp32",
            "dataset": "test", "shard_index": 0, "num_shards": 1, **extra}


def write_shard(path: Path, ids_splits_labels: list[tuple[str, str, int]], attrs: dict | None = None,
                flush_every: int = 2, grid: int = 0) -> Path:
    attrs = attrs or base_attrs(grid=grid)
    writer = ShardWriter(path, attrs, make_text(attrs["num_classes"], attrs["num_steps"], attrs["embed_dim"]),
                         flush_every=flush_every)
    for i, (vid, split, label) in enumerate(ids_splits_labels):
        writer.add(make_record(vid, split, label, frames=attrs["frames"], dim=attrs["embed_dim"],
                               num_classes=attrs["num_classes"], num_steps=attrs["num_steps"], seed=i,
                               valid=3 if i == 0 else None, grid=attrs.get("patch_grid", 0)))
    writer.finalize()
    return path
