"""`ExtractConfig`: one extraction run's settings, and the one source of `cmdcl extract`'s options.

Each field's `metadata` gives its command-line option (pipelines/config_options.py reads it): `help`,
`flag` (when not `--field-name`), `parse` (turn the raw option value into the field's value) with
`option_type` (the raw option's type), or `cli: False` (set by the command itself, not an option).
Light on purpose (no numpy, torch, decoders at import): `cmdcl extract --help` builds its options from it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, List, Optional

from cmdcl.core.distributed import ShardSpec
from cmdcl.core.errors import CmdclError
from .datasets.registry import DATASETS, dataset_entry, options_help

if TYPE_CHECKING:
    from .sampler import FrameSampler


def default_workers(requested: Optional[int] = None) -> int:
    """`requested`, else one decode process per core: extraction is decode-bound wherever the encoder is
    fast, and the main process mostly waits (for decoded videos, or for the GPU). Measured on 2 cores:
    2 workers ran 1.96x the naive pipeline, 1 worker 1.05x (docs/BENCHMARKS.md)."""
    return max(1, os.cpu_count() or 1) if requested is None else requested


def comma_list(text: Optional[str]) -> Optional[list[str]]:
    """"train, test" -> ["train", "test"]; None or only commas -> None (every split)."""
    items = [s.strip() for s in text.split(",") if s.strip()] if text else []
    return items or None


def repeated_list(values: Optional[List[str]]) -> Optional[list[str]]:
    """A repeatable option's values as a list, None when it was not given."""
    return list(values) if values else None


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass
class ExtractConfig:
    dataset: str = field(metadata=_help(
        f"{' | '.join(DATASETS)}. Dataset options: {options_help()}."))
    root: str = field(metadata=_help("Dataset folder in its published layout (or a manifest file)."))
    splits: Optional[list[str]] = field(default=None, metadata=_help(
        "Comma-separated splits, e.g. train,test (default all).", parse=comma_list, option_type=str))
    out_dir: str = field(default="feats", metadata=_help(
        "Output folder for shard-kkkkk-of-nnnnn.h5 files.", flag="--out"))
    model: str = field(default="ViT-B-16", metadata=_help(
        "open_clip model name (cmdcl-tiny: a tiny architecture without published weights, for tests); the "
        "activation follows the weights' tag (ViT-B-16 with openai builds ViT-B-16-quickgelu)."))
    pretrained: Optional[str] = field(default=None, metadata=_help(
        "open_clip tag, weights file or folder, hf-hub:ORG/REPO or local-dir:PATH; random (or none): randomly "
        "initialised, features without meaning (tests). Default: the model's published weights, its openai tag "
        "where open_clip has one, else its first tag."))
    cache_dir: Optional[str] = field(default=None, metadata=_help("Weights cache (pre-filled for offline use)."))
    preprocess_tag: Optional[str] = field(default=None, metadata=_help(
        "With a bare weights file: the pretrained tag whose preprocessing (mean/std, resize) and activation it needs."))
    frames: int = field(default=64, metadata=_help("Frames per video (padded + masked when a video is shorter)."))
    sample_fps: Optional[float] = field(default=None, metadata=_help(
        "Sample at this rate (strided down to --frames) instead of uniformly.", flag="--fps"))
    # 4: the grid the default head (cmdcl) reads; it stores 1 + 4*4 = 17 tokens per frame instead of 1.
    patch_grid: int = field(default=4, metadata=_help(
        "Also store G x G pooled patch tokens per frame, (1 + G*G) tokens per frame in all; 0: frame embeddings "
        "only (about 17x smaller files; cmdcl then trains its frame-only head)."))
    patch_layer: int = field(default=-1, metadata=_help(
        "Image-tower block whose patch tokens --patch-grid stores: -1 the last, -2 the penultimate (common with "
        "CLIP), 0 the first, k block k (0-based)."))
    batch_size: int = field(default=256, metadata=_help("Frames per encoder batch."))
    # Programmatic default 4; the CLI default is one per core (default_workers).
    workers: int = field(default=4, metadata=_help(
        "Decode processes (default: one per core; 0 = in-process, no timeout).", parse=default_workers,
        option_type=int))
    decoder: Optional[str] = field(default=None, metadata=_help(
        "pyav | decord | nvdec (GPU, cmdcl[gpu]). Default, per file: decord for AVI when installed, PyAV for "
        "MP4, MOV, MKV, WebM and the rest."))
    seek: str = field(default="exact", metadata=_help(
        "exact | keyframe: take the nearest keyframe of each sampled frame (much less decoding; real timestamps "
        "stored)."))
    fallback: bool = field(default=True, metadata=_help("Decode with PyAV the videos decord cannot open or read."))
    device: str = field(default="auto", metadata=_help("auto | cpu | cuda | cuda:N."))
    precision: str = field(default="auto", metadata=_help(
        "auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16 (weights cast) | amp-fp16 | amp-bf16 (fp32 weights, "
        "autocast)."))
    # Built from --shard k/N or --shard-index/--num-shards or the environment (cmd_extract._shard_spec).
    shard: ShardSpec = field(default_factory=lambda: ShardSpec(0, 1, "default"), metadata={"cli": False})
    timeout_s: float = field(default=300.0, metadata=_help(
        "Seconds one video may take to decode before it fails.", flag="--timeout"))
    strict: bool = field(default=False, metadata=_help(
        "Exit with status 1 when any video failed or is missing on disk.", flag="--strict"))
    templates: Optional[list[str]] = field(default=None, metadata=_help(
        "Prompt template with {} for label texts (repeatable).", flag="--template", parse=repeated_list,
        option_type=List[str]))
    context_vocab: Optional[list[str]] = field(default=None, metadata=_help(
        "Comma-separated context vocabularies stored for zero-shot scene pseudo labels: places365, appearance, "
        "synthetic or a file (docs/FORMAT.md).", parse=comma_list, option_type=str))
    seed: int = field(default=0, metadata=_help("Seed of --pretrained random weights."))
    limit: Optional[int] = field(default=None, metadata=_help(
        "Only the first N videos (sorted by id), for trials."))
    flush_every: int = field(default=16, metadata=_help("Videos per crash-safe part file."))
    retry_failed: bool = field(default=False, metadata=_help(
        "Re-attempt the videos an earlier run of this shard recorded as failed.", flag="--retry-failed"))
    # From the dataset flags (datasets.registry.options_from_flags).
    dataset_options: dict[str, Any] = field(default_factory=dict, metadata={"cli": False})
    progress: bool = field(default=True, metadata=_help("tqdm progress bar."))

    def check(self) -> "ExtractConfig":
        from .decoders import BACKENDS
        from .sampler import SEEK_MODES

        dataset_entry(self.dataset)  # an unknown name fails here, before any model is loaded
        if self.frames < 1:
            raise CmdclError(f"--frames {self.frames}: must be at least 1.")
        if self.batch_size < 1:
            raise CmdclError(f"--batch-size {self.batch_size}: must be at least 1 frame.")
        if self.workers < 0:
            raise CmdclError(f"--workers {self.workers}: must be 0 (decode in this process) or more.")
        if self.patch_grid < 0:
            raise CmdclError(f"--patch-grid {self.patch_grid}: must be 0 (off) or a grid size >= 1.")
        if self.patch_layer != -1 and self.patch_grid <= 0:
            raise CmdclError(f"--patch-layer {self.patch_layer}: only patch tokens come from another block, and "
                             "--patch-grid is 0 (no patch tokens).", fix="add --patch-grid G, or drop --patch-layer.")
        if self.sample_fps is not None and self.sample_fps <= 0:
            raise CmdclError(f"--fps {self.sample_fps}: must be a positive rate (frames per second).")
        if self.timeout_s <= 0:
            raise CmdclError(f"--timeout {self.timeout_s}: must be positive seconds.")
        if self.decoder is not None and self.decoder not in BACKENDS:
            raise CmdclError(f"--decoder {self.decoder!r}: choose {' or '.join(sorted(BACKENDS))}.")
        if self.seek not in SEEK_MODES:
            raise CmdclError(f"--seek {self.seek!r}: choose {' or '.join(SEEK_MODES)}.")
        if self.limit is not None and self.limit < 1:
            raise CmdclError(f"--limit {self.limit}: must be at least 1.")
        if self.flush_every < 1:
            raise CmdclError(f"--flush-every {self.flush_every}: must be at least 1.")
        if self.context_vocab:  # a mistyped vocabulary fails now, not after the model loads
            from .context import SYNTHETIC, read_vocabularies

            if SYNTHETIC in self.context_vocab and self.dataset != "synthetic":
                raise CmdclError(f"--context-vocab {SYNTHETIC}: only for --dataset synthetic.")
            read_vocabularies([v for v in self.context_vocab if v != SYNTHETIC])
        return self

    def sampler(self) -> "FrameSampler":
        from .sampler import FrameSampler

        if self.sample_fps:
            return FrameSampler(self.frames, mode="fps", fps=self.sample_fps, seek=self.seek)
        return FrameSampler(self.frames, mode="uniform", seek=self.seek)
