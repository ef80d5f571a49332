"""One extraction run over one shard: reader (decode workers) -> mapper (encoder) -> writer (shard sink).

The stages, as in clip-retrieval's inference loop, each timed and each in its own module:

1. `decode_pool`: worker processes open a video, sample F frame indices and decode only those frames,
   resized inside the decoder to the size the model's preprocessing would resize to.
2. `batch_encoder`, in the main process: frames of several videos are cropped, normalised and encoded
   together in batches of `batch_size` frames on the device.
3. `shard_sink`: one `VideoRecord` per video (or a `FailureRecord`) into the crash-safe `ShardWriter`.

This module holds the run's summary and the orchestration (`run_extraction`); its configuration is
`ExtractConfig` (extract/config.py), the stages' types live in their own modules.
"""
from __future__ import annotations

import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from cmdcl.core.distributed import ShardSpec
from cmdcl.core.atomic import DiskFullError
from cmdcl.core.errors import CmdclError, one_line
from cmdcl.core.store import FailureRecord, NoteRecord, ShardWriter, reopen_shard, shard_is_done, shard_name
from .batch_encoder import BatchEncoder
from .config import ExtractConfig
from .datasets.base import VideoItem
from .decode_pool import (DecodedClip, DecodeFailure, DecodePool, DecodeSettings, DecodeTask,
                          decode_inline)
from .decoders import (FallbackDecoder, backend_available, backend_version, default_backend,
                       fallback_order)
from .shard_sink import ShardSink, check_resumable, done_marker

__all__ = ["ExtractSummary", "ExtractionInterrupted", "run_extraction", "shard_items"]


@dataclass
class ExtractSummary:
    shard: str  # "k/N"
    shard_path: str
    videos: int  # videos assigned to this shard
    extracted: int = 0  # stored by this run
    resumed: int = 0  # already stored or failed in part files of an interrupted run
    failed: int = 0  # failed in this run
    partial: int = 0  # stored by this run from only part of the video (corrupt or cut files)
    retried: int = 0  # recorded as failed by an earlier run, attempted again (--retry-failed)
    missing: int = 0  # annotated videos of the dataset (all shards) whose files are not on disk
    missing_ids: list[str] = field(default_factory=list)  # all of them (cmd_extract writes missing.txt)
    already_done: bool = False  # the shard was complete before this run: nothing was done
    failures: list[FailureRecord] = field(default_factory=list)
    notes: list[NoteRecord] = field(default_factory=list)  # partial decodes, rotation, decoder fallbacks
    fallbacks: int = 0  # videos served by PyAV because decord could not
    frames: int = 0  # frames decoded and encoded by this run
    decode_s: float = 0.0  # summed over decode workers
    wait_s: float = 0.0  # main process waiting for decoded videos (high: decode-bound)
    preprocess_s: float = 0.0
    encode_s: float = 0.0
    write_s: float = 0.0
    wall_s: float = 0.0
    workers: int = 0
    encoder: str = ""  # the model and its weights (FrozenEncoder.describe): RANDOM weights said plainly

    def rate(self, seconds: float) -> float:
        return self.frames / seconds if seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failures"] = [asdict(f) for f in self.failures]
        out["notes"] = [asdict(n) for n in self.notes]
        out["frames_per_s"] = self.rate(self.wall_s)
        return out

    def _workers_text(self) -> str:
        return "in-process" if not self.workers else f"{self.workers} worker{'s' if self.workers > 1 else ''}"

    def report(self) -> str:
        if self.already_done:
            return f"shard {self.shard}: {self.shard_path} is already complete ({self.videos} videos); nothing to do."
        lines = [
            f"shard {self.shard}: {self.videos} videos -> {self.shard_path}",
            *([f"  encoder {self.encoder}"] if self.encoder else []),
            f"  extracted {self.extracted}" + (f" ({self.partial} partial)" if self.partial else "")
            + f", resumed {self.resumed}, failed {self.failed}"
            + (f" (retried {self.retried})" if self.retried else "")
            + (f", served by PyAV after decord failed {self.fallbacks}" if self.fallbacks else ""),
            f"  decode            {self.decode_s:8.1f} worker-s  {self.rate(self.decode_s):9.1f} frames/s per worker"
            f" ({self._workers_text()}; main waited {self.wait_s:.1f} s)",
            f"  preprocess+encode {self.preprocess_s + self.encode_s:8.1f} s         "
            f"{self.rate(self.preprocess_s + self.encode_s):9.1f} frames/s",
            f"  write             {self.write_s:8.1f} s",
            f"  total             {self.wall_s:8.1f} s         {self.rate(self.wall_s):9.1f} frames/s",
        ]
        if self.missing:
            lines.append(f"  the dataset lists {self.missing} video(s) missing on disk: not extracted (listed above)")
        for note in self.notes:
            if note.kind == "partial":
                lines.append(f"  PARTIAL {note.video_id} {note.note} ({note.path})")
        kinds = sorted({n.kind for n in self.notes} - {"partial"})
        if kinds:
            counts = ", ".join(f"{k} {sum(n.kind == k for n in self.notes)}" for k in kinds)
            lines.append(f"  notes on stored videos: {counts} (`cmdcl inspect` lists them)")
        for failure in self.failures:
            lines.append(f"  FAILED {failure.video_id} [{failure.stage}] {failure.error} ({failure.path})")
        return "\n".join(lines)


class ExtractionInterrupted(CmdclError):
    """SIGTERM/SIGUSR1 (job pre-emption, time limit): finished videos are saved, re-run to resume."""

    exit_code = 143



def shard_items(items: list[VideoItem], shard: ShardSpec, missing: Sequence[str] = (),
                limit: int | None = None) -> list[VideoItem]:
    """Video i of the sorted list of *annotated* ids (on disk or missing) belongs to shard i % N.

    Missing videos keep their place in the list, so nodes that see different files (a stale mount,
    a download still running) still agree on every video's shard: nothing is lost or done twice.
    `limit` keeps the first N ids of that list (a trial run).
    """
    ids = sorted({*(item.video_id for item in items), *missing})
    if limit:
        ids = ids[:limit]
    mine = set(ids[shard.index::shard.count])
    return sorted((item for item in items if item.video_id in mine), key=lambda item: item.video_id)



def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


class _StopSignals:
    """SIGTERM / SIGUSR1 (SLURM pre-emption, time limits) ask the run to stop after saving."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopSignals":
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGUSR1):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __call__(self) -> bool:
        return self.received is not None

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)



def run_extraction(cfg: ExtractConfig, log: Callable[[str], None] = _say, encoder=None) -> ExtractSummary:
    """Extract this shard's videos into `<out_dir>/shard-kkkkk-of-nnnnn.h5`; resumable, never stops on one video.

    `encoder`: an already loaded `FrozenEncoder` to reuse (benchmarks, tests); it must be `cfg.model`.
    """
    from .datasets.registry import load_dataset

    cfg.check()
    wall_start = time.perf_counter()
    index = load_dataset(cfg.dataset, cfg.root, splits=cfg.splits, **cfg.dataset_options)
    log(index.report())
    # Heavy imports only now: a mistyped dataset or root is reported at once.
    from .preprocess import FramePreprocessor
    from .text import encode_label_texts

    mine = shard_items(index.items, cfg.shard, index.missing, cfg.limit)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / shard_name(cfg.shard.index, cfg.shard.count)
    summary = ExtractSummary(shard=str(cfg.shard), shard_path=str(path), videos=len(mine), workers=cfg.workers,
                             missing=len(index.missing), missing_ids=list(index.missing))
    if shard_is_done(path) and cfg.retry_failed and done_marker(path).get("failures", 1):
        reopen_shard(path)  # its file becomes the first part: stored videos are kept, failed ones redone
        log(f"shard {cfg.shard}: reopened {path} to retry its failed videos")
    if shard_is_done(path):
        return _finished(summary, wall_start, already_done=True)

    encoder = _encoder(cfg, encoder)
    describe = getattr(encoder, "describe", None)
    summary.encoder = describe() if callable(describe) else ""
    # before any video: inside a batch the error would only fail that batch's videos
    if cfg.patch_grid > 0 and hasattr(encoder, "check_patches"):
        encoder.check_patches(cfg.patch_grid, cfg.patch_layer)
    preprocess = FramePreprocessor.from_encoder(encoder, device=getattr(encoder, "device", None))
    text = encode_label_texts(encoder, index.class_names, index.step_names, templates=cfg.templates)
    text.class_ids, text.step_ids = index.class_ids or None, index.step_ids or None
    backend = _backend(cfg, mine, log)
    attrs = _provenance(cfg, encoder, index, mine, backend)
    context = _context(cfg, encoder)
    writer = ShardWriter(path, attrs, text, flush_every=cfg.flush_every, context=context)
    if writer.lock_note:
        log(writer.lock_note)
    sink = ShardSink(writer, summary, log, len(index.class_names), len(index.step_names),
                     input_image=(int(encoder.image_size), str(encoder.resize_mode)))
    finalized = False
    # The CPU encoder keeps all its threads even beside decode workers: capping it at cores - workers
    # made ViT-B-16 extraction 1.8x slower on 2 cores and saved only 3.5% when decode-bound
    # (benchmarks/extract_throughput.py, docs/BENCHMARKS.md).
    try:
        if shard_is_done(path):  # another process finished this shard while we were loading the model
            writer.close()
            if not any(writer.parts_dir.glob("part-*")):
                shutil.rmtree(writer.parts_dir, ignore_errors=True)
            return _finished(summary, wall_start, already_done=True)
        check_resumable(writer, attrs)
        todo = sink.todo(mine, cfg.retry_failed)
        if summary.resumed or summary.retried:
            log(f"shard {cfg.shard}: resuming, {summary.resumed} of {len(mine)} videos already done"
                + (f", retrying {summary.retried} that failed" if summary.retried else ""))
        settings = DecodeSettings(sampler=cfg.sampler(), image_size=encoder.image_size,
                                  resize_mode=encoder.resize_mode, backend=backend, fallback=cfg.fallback)
        batcher = BatchEncoder(encoder, cfg.batch_size, cfg.patch_grid, cfg.patch_layer)
        _stream(cfg, todo, settings, _Mapper(batcher, preprocess, sink, log), wall_start)
        summary.encode_s = batcher.seconds
        sink.finalize()
        finalized = True
    except DiskFullError:
        writer.close()  # its buffered videos cannot be written: the resumed run redoes them
        raise
    finally:
        if not finalized and writer.held:
            try:
                writer.flush()  # keep every finished video for the resume
            finally:
                writer.close()
    return _finished(summary, wall_start)


def _finished(summary: ExtractSummary, wall_start: float, already_done: bool = False) -> ExtractSummary:
    summary.already_done = already_done
    summary.wall_s = time.perf_counter() - wall_start
    return summary


def _encoder(cfg: ExtractConfig, encoder):
    """`encoder` when given (it must be `cfg.model`), else the model loaded as `cfg` asks."""
    import torch

    from .models import load_encoder

    torch.manual_seed(cfg.seed)
    if encoder is None:
        return load_encoder(cfg.model, cfg.pretrained, cache_dir=cfg.cache_dir, device=cfg.device,
                            precision=cfg.precision, seed=cfg.seed, preprocess_tag=cfg.preprocess_tag)
    # open_clip spells ViT-B/16 ViT-B-16; ViT-B-16 with QuickGELU weights is recorded as ViT-B-16-quickgelu.
    if _base_name(encoder.model_name) != _base_name(cfg.model):
        raise ValueError(f"encoder {encoder.model_name!r} passed for model {cfg.model!r}")
    return encoder


def _base_name(model_name: str) -> str:
    from .architecture import QUICKGELU_SUFFIX

    return model_name.replace("/", "-").removesuffix(QUICKGELU_SUFFIX)


def _context(cfg: ExtractConfig, encoder) -> dict:
    """The /context vocabularies of --context-vocab, encoded by the extraction's own model ({} without it)."""
    if not cfg.context_vocab:
        return {}
    from .context import encode_context, read_vocabularies

    world = cfg.root if cfg.dataset == "synthetic" else None
    return encode_context(encoder, read_vocabularies(cfg.context_vocab, world_root=world))


def _backend(cfg: ExtractConfig, items: Sequence[VideoItem], log: Callable[[str], None]) -> str | None:
    """The backend this run starts every video with: `--decoder`, else the per-container default
    (`decoders.DEFAULT_BY_CONTAINER`): its one backend when it picks the same for every video of the shard,
    None (each video by its container) when not."""
    if cfg.decoder is None:
        chosen = {default_backend(item.path) for item in items} or {default_backend()}
        return chosen.pop() if len(chosen) == 1 else None
    backend = cfg.decoder
    if backend in _UNAVAILABLE and not backend_available(backend):
        why, fix = _UNAVAILABLE[backend]
        if not cfg.fallback:
            raise CmdclError(f"--decoder {backend}: {why}.", fix=fix)
        log(f"{backend} is not available ({why}); decoding with PyAV")
        backend = "pyav"
    return backend


# Optional backends: why one may be missing, and what to do about it under --no-fallback.
_UNAVAILABLE = {
    "decord": ("decord is not installed (wheels exist only for Linux x86_64 and Windows)", "use --decoder pyav."),
    "nvdec": ("needs PyNvVideoCodec and a CUDA GPU",
              "pip install 'cmdcl[gpu]' on a CUDA machine, or use --decoder pyav."),
}


def _decoder_provenance(cfg: ExtractConfig, items: Sequence[VideoItem], backend: str | None) -> dict[str, Any]:
    """Which decoder made the features: one backend, or "auto" with the container -> backend rule applied."""
    if backend is None:
        rule = {Path(item.path).suffix.lower().lstrip("."): default_backend(item.path) for item in items}
        return {"decoder": "auto", "decoder_by_container": dict(sorted(rule.items())),
                "decoder_version": FallbackDecoder.version(), "decoder_fallback": "by container"}
    return {"decoder": backend, "decoder_version": backend_version(backend),
            "decoder_fallback": ",".join(fallback_order(backend)[1:]) if cfg.fallback else ""}


def _provenance(cfg: ExtractConfig, encoder, index, items: Sequence[VideoItem], backend: str | None
                ) -> dict[str, Any]:
    """The shard's attributes: everything that makes its features what they are (checked on resume and merge)."""
    from cmdcl.core.version import code_version

    attrs = {
        **encoder.provenance(),
        **_decoder_provenance(cfg, items, backend),
        "sampler": cfg.sampler().as_dict(),
        "frames": cfg.frames,
        "patch_grid": cfg.patch_grid,
        "patch_layer": cfg.patch_layer,
        "embed_dim": int(encoder.embed_dim),
        "num_classes": len(index.class_names),
        "num_steps": len(index.step_names),
        "multilabel": bool(index.multilabel),
        "dataset": cfg.dataset,
        "dataset_root": str(Path(cfg.root).resolve()),
        "splits": sorted(cfg.splits) if cfg.splits else sorted(index.split_sizes()),
        "code_version": code_version(),
        "shard_index": cfg.shard.index,
        "num_shards": cfg.shard.count,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
    }
    # HDF5 attributes take plain scalars and str; str subclasses (torch's TorchVersion) would not store.
    return {k: str(v) if isinstance(v, str) else v for k, v in attrs.items()}


@dataclass
class _Mapper:
    """Decoded clips -> preprocessed pixels -> encoded batches -> the sink."""

    batcher: BatchEncoder
    preprocess: Callable
    sink: ShardSink
    log: Callable[[str], None]

    def clip(self, item: VideoItem, result: DecodedClip | DecodeFailure) -> None:
        summary = self.sink.summary
        summary.decode_s += result.seconds
        if isinstance(result, DecodeFailure):
            self.sink.failure(item, result.stage, result.error)
            return
        if result.fallback_reason is not None:  # the backend it started with could not serve it
            summary.fallbacks += 1
            self.log(f"{item.video_id}: decoded with {result.backend} ({result.fallback_reason})")
        start = time.perf_counter()
        try:
            pixels = self.preprocess(result.frames)
        except Exception as exc:
            self.sink.failure(item, "preprocess", one_line(exc))
            return
        finally:
            summary.preprocess_s += time.perf_counter() - start
        self.batcher.add_clip(item, result, pixels)
        result.frames = None  # the preprocessed copy is all that is needed now
        self.drain(force=False)

    def drain(self, force: bool) -> None:
        """Encode full batches (all queued frames with `force`) and store the videos they complete."""
        while self.batcher.queue and (self.batcher.ready() or force):
            complete, failed = self.batcher.encode_batch()
            for pending in complete:
                self.sink.video(pending)
            for pending, error in failed:
                self.sink.failure(pending.item, "encode", error)


def _stream(cfg: ExtractConfig, todo: list[VideoItem], settings: DecodeSettings, mapper: _Mapper,
            wall_start: float) -> None:
    """Decode `todo` (in worker processes, or here with workers=0) and map every result into the sink."""
    from tqdm import tqdm

    summary = mapper.sink.summary
    tasks = (DecodeTask(key, item.video_id, item.path) for key, item in enumerate(todo))
    # NVDEC frames are CUDA tensors: they are decoded in this process, not sent through worker pipes.
    in_process = cfg.workers == 0 or settings.backend == "nvdec"
    pool = None if in_process else DecodePool(cfg.workers, settings, cfg.timeout_s)
    try:
        with _StopSignals() as stop, tqdm(total=len(todo), unit="video", disable=not cfg.progress,
                                          desc=f"shard {cfg.shard}", file=sys.stderr) as bar:
            def progress() -> None:
                bar.update(1)
                bar.set_postfix(frames_s=f"{summary.rate(time.perf_counter() - wall_start):.0f}",
                                failed=summary.failed, refresh=False)

            mapper.sink.on_write = progress
            results = pool.run(tasks, stop) if pool is not None else decode_inline(tasks, settings, stop)
            waited = time.perf_counter()
            for result in results:
                summary.wait_s += time.perf_counter() - waited
                mapper.clip(todo[result.key], result)
                waited = time.perf_counter()
            if stop():
                raise ExtractionInterrupted(
                    f"shard {cfg.shard}: stopped by signal {stop.received}; {summary.extracted} videos saved.",
                    fix="re-run the same command to resume.")
            mapper.drain(force=True)
    finally:
        if pool is not None:
            pool.close()
