"""Tiny feature files for head tests, written in the documented store format (via ShardWriter).

The "temporal order" world: every class is a script of the same atomic actions in a different order,
each video shows the steps as contiguous frame segments of random length, so the bag of steps (and the
mean frame embedding) carries no class information: only order does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cmdcl.core.store import ShardWriter, TextBank, VideoRecord

# Four scripts over the same four steps (each class starts with a different step, and no two share an order).
ORDER_SCRIPTS = ((0, 1, 2, 3), (3, 2, 1, 0), (1, 0, 3, 2), (2, 3, 0, 1))


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def world_attrs(frames: int, dim: int, num_classes: int, num_steps: int, grid: int = 0, **extra) -> dict:
    return {"frames": frames, "embed_dim": dim, "num_classes": num_classes, "num_steps": num_steps,
            "patch_grid": grid, "model_name": "tiny-world", "pretrained": "synthetic", "weights_sha256": "",
            "image_size": 32, "preprocess": {"resize": "shortest"}, "sampler": {"kind": "uniform"},
            "precision": "fp16", "dataset": "order-world", "shard_index": 0, "num_shards": 1, **extra}


def write_records(path: Path, records: Sequence[VideoRecord], text: TextBank, attrs: dict) -> Path:
    writer = ShardWriter(path, attrs, text, flush_every=64)
    for record in records:
        writer.add(record)
    writer.finalize()
    return path


def _segments(rng: np.random.Generator, valid: int, parts: int) -> np.ndarray:
    """Step index of each of `valid` frames: `parts` contiguous segments of random length >= 1."""
    cuts = np.sort(rng.choice(np.arange(1, valid), size=parts - 1, replace=False))
    return np.searchsorted(cuts, np.arange(valid), side="right")


def step_segments(frame_steps: np.ndarray, seconds_per_frame: float = 1.0) -> np.ndarray:
    """[step, start_s, end_s] of each contiguous run of frames showing one step (frame i at i seconds)."""
    starts = np.flatnonzero(np.r_[True, frame_steps[1:] != frame_steps[:-1]])
    ends = np.r_[starts[1:], len(frame_steps)]
    return np.stack([frame_steps[starts], starts, ends], axis=1).astype(np.float32) * [1, seconds_per_frame,
                                                                                      seconds_per_frame]


def order_world(path: Path, train_per_class: int = 40, test_per_class: int = 20, val_per_class: int = 0,
                frames: int = 8, dim: int = 16, noise: float = 0.3, grid: int = 0, seed: int = 0,
                extra_splits: Sequence[str] = (), scripts: Sequence[Sequence[int]] = ORDER_SCRIPTS,
                context: int = 0, segments: bool = True) -> Path:
    """Write the order world to `path`; splits train/test (+ val, + extra_splits with test's size). context > 0:
    each video's context factor "room" is its class on train and test (confounded), (class + i) % context on
    the other splits; segments False: no /segments stored."""
    rng = np.random.default_rng(seed)
    num_classes, num_steps = len(scripts), 1 + max(max(s) for s in scripts)
    step_vectors = unit(rng.standard_normal((num_steps, dim)))
    text = TextBank(
        class_names=[f"script {'-'.join(map(str, s))}" for s in scripts],
        class_embeddings=unit(rng.standard_normal((num_classes, dim))).astype(np.float32),
        step_names=[f"step {i}" for i in range(num_steps)],
        step_embeddings=unit(step_vectors + 0.1 * rng.standard_normal((num_steps, dim))).astype(np.float32),
        templates=["a video of {}."],
    )
    counts = {"train": train_per_class, "val": val_per_class, "test": test_per_class,
              **{s: test_per_class for s in extra_splits}}
    records = []
    for split, per_class in counts.items():
        for i in range(per_class):
            for cls, script in enumerate(scripts):
                valid = frames if i % 5 else frames - 2  # some videos are padded
                script_steps = np.asarray(script)[_segments(rng, valid, len(script))]
                clean = step_vectors[script_steps]
                feats = unit(clean + noise * rng.standard_normal(clean.shape))
                feats = np.concatenate([feats, np.repeat(feats[-1:], frames - valid, axis=0)])
                patches = None
                if grid:
                    patches = unit(feats[:, None, :] + noise * rng.standard_normal((frames, grid * grid, dim)))
                index = np.minimum(np.arange(frames), valid - 1)
                labels = np.zeros(num_classes, np.uint8)
                labels[cls] = 1
                steps = np.zeros(num_steps, np.uint8)
                steps[list(script)] = 1
                records.append(VideoRecord(
                    video_id=f"{split}-{cls}-{i:03d}", split=split, path=f"/videos/{split}-{cls}-{i:03d}.mp4",
                    label=cls, labels=labels, steps=steps, fps=1.0, duration=float(valid), num_frames=valid,
                    frame_index=index, timestamps_ms=index * 1000.0, frame_mask=np.arange(frames) < valid,
                    features=feats.astype(np.float16),
                    patches=patches.astype(np.float16) if patches is not None else None,
                    segments=step_segments(script_steps) if segments else np.zeros((0, 3), np.float32),
                    confounders={"room": (cls if split in ("train", "test") else cls + i) % context}
                    if context else {}))
    return write_records(path, records, text, world_attrs(frames, dim, num_classes, num_steps, grid))


def multilabel_world(path: Path, videos: dict[str, int] | None = None, num_classes: int = 5, frames: int = 6,
                     dim: int = 16, noise: float = 0.3, seed: int = 0) -> Path:
    """Multi-label videos (label -1): each frame shows one of the video's 1-3 actions.

    As in Charades, the atomic actions are the classes themselves (steps = labels, same texts).
    """
    rng = np.random.default_rng(seed)
    videos = videos or {"train": 60, "test": 30}
    class_vectors = unit(rng.standard_normal((num_classes, dim)))
    text = TextBank(class_names=[f"action {i}" for i in range(num_classes)],
                    class_embeddings=class_vectors.astype(np.float32),
                    step_names=[f"action {i}" for i in range(num_classes)],
                    step_embeddings=class_vectors.astype(np.float32), templates=["{}"])
    records = []
    for split, count in videos.items():
        for i in range(count):
            present = rng.choice(num_classes, size=rng.integers(1, 4), replace=False)
            labels = np.zeros(num_classes, np.uint8)
            labels[present] = 1
            shown = class_vectors[rng.choice(present, size=frames)]
            feats = unit(shown + noise * rng.standard_normal(shown.shape))
            records.append(VideoRecord(
                video_id=f"{split}-{i:03d}", split=split, path=f"/videos/{split}-{i:03d}.mp4", label=-1,
                labels=labels, steps=labels.copy(), fps=1.0, duration=float(frames), num_frames=frames,
                frame_index=np.arange(frames), timestamps_ms=np.arange(frames) * 1000.0,
                frame_mask=np.ones(frames, bool), features=feats.astype(np.float16)))
    return write_records(path, records, text, world_attrs(frames, dim, num_classes, num_classes, dataset="multilabel-world"))
