"""One extraction run over one shard: reader (decode workers) -> encoder (main process) -> writer.

The stages, as in clip-retrieval's inference loop, each timed:

1. decode, in worker processes: open a video, sample F frame indices, decode only those frames,
   resized inside the decoder to the size the model's preprocessing would resize to. Each worker
   opens its own decoders (decord readers do not survive a fork); a worker stuck on one video past
   `timeout_s` is killed and replaced, and a worker that crashes (decoders segfault on some files)
   is replaced too: the video is recorded as failed, the run goes on.
2. preprocess + encode, in the main process: frames of several videos are cropped, normalised and
   encoded together in batches of `batch_size` frames on the device.
3. write: one `VideoRecord` per video (or a `FailureRecord`) into the crash-safe `ShardWriter`.

Memory stays bounded: at most two videos per worker are in flight, each holding only its F
sampled frames at decode size, and the encoder holds at most one batch plus one video.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait as wait_for_connections
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from cmdcl.core.distributed import ShardSpec
from cmdcl.core.errors import CmdclError
from cmdcl.core.store import (COMPATIBILITY_KEYS, FailureRecord, NoteRecord, ShardWriter, VideoRecord, reopen_shard,
                              shard_is_done, shard_name)
from cmdcl.extract.datasets.base import VideoItem
from cmdcl.core.errors import one_line
from cmdcl.extract.decoders import (VideoDecodeError, VideoMeta, VideoOpenError, backend_available, backend_version,
                                    fallback_decoder, decord_available, default_backend)
from cmdcl.extract.sampler import FrameSampler, SampledFrames

TASKS_PER_WORKER = 2  # one decoding, one queued: a worker never waits for the main process


@dataclass
class ExtractConfig:
    dataset: str
    root: str
    out_dir: str = "feats"
    splits: list[str] | None = None  # None: every split
    model: str = "ViT-B-16"
    pretrained: str | None = None  # open_clip tag, weights file, hf-hub:/local-dir: (models.load_encoder)
    cache_dir: str | None = None
    preprocess_tag: str | None = None  # pretrained tag whose preprocessing a bare weights file uses
    frames: int = 64  # F: frames per video
    sample_fps: float | None = None  # sample at this rate (strided to F) instead of F uniform segments
    patch_grid: int = 0  # G > 0 also stores G x G pooled patch tokens per frame
    batch_size: int = 256  # frames per encoder batch
    workers: int = 4  # decode processes; 0 decodes in the main process (debugging, tests; no timeout)
    decoder: str | None = None  # "decord" | "pyav"; None: decord when installed
    fallback: bool = True  # serve a video with PyAV when decord cannot
    device: str = "auto"
    precision: str = "auto"
    shard: ShardSpec = field(default_factory=lambda: ShardSpec(0, 1, "default"))
    timeout_s: float = 300.0  # per video, decoding
    strict: bool = False  # failures make the command exit non-zero
    templates: list[str] | None = None  # prompt templates for label texts (text.encode_label_texts default)
    seed: int = 0
    limit: int | None = None  # first N videos of the sorted dataset (before sharding)
    flush_every: int = 16  # videos per crash-safe part file
    retry_failed: bool = False  # re-attempt videos recorded as failed (resumed or finished shards)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def check(self) -> "ExtractConfig":
        if self.frames < 1:
            raise CmdclError(f"--frames {self.frames}: must be at least 1.")
        if self.batch_size < 1:
            raise CmdclError(f"--batch-size {self.batch_size}: must be at least 1 frame.")
        if self.workers < 0:
            raise CmdclError(f"--workers {self.workers}: must be 0 (decode in this process) or more.")
        if self.patch_grid < 0:
            raise CmdclError(f"--patch-grid {self.patch_grid}: must be 0 (off) or a grid size >= 1.")
        if self.sample_fps is not None and self.sample_fps <= 0:
            raise CmdclError(f"--fps {self.sample_fps}: must be a positive rate (frames per second).")
        if self.timeout_s <= 0:
            raise CmdclError(f"--timeout {self.timeout_s}: must be positive seconds.")
        if self.decoder not in (None, "decord", "pyav", "nvdec"):
            raise CmdclError(f"--decoder {self.decoder!r}: choose decord, pyav or nvdec.")
        if self.limit is not None and self.limit < 1:
            raise CmdclError(f"--limit {self.limit}: must be at least 1.")
        return self

    def sampler(self) -> FrameSampler:
        if self.sample_fps:
            return FrameSampler(self.frames, mode="fps", fps=self.sample_fps)
        return FrameSampler(self.frames, mode="uniform")


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


# ------------------------------------------------------------------------------------------- decoding

@dataclass
class DecodeTask:
    key: int  # position in this run's to-do list
    video_id: str
    path: str


@dataclass
class DecodeSettings:
    """What every worker needs, sent once when it starts."""

    sampler: FrameSampler
    image_size: int
    resize_mode: str
    backend: str
    fallback: bool
    threads: int = 1


@dataclass
class DecodedClip:
    key: int
    frames: np.ndarray  # (V, h, w, 3) uint8, the valid (unpadded) sampled frames
    timestamps_ms: np.ndarray  # (V,)
    sampled: SampledFrames
    meta: VideoMeta
    backend: str
    fallback_reason: str | None
    seconds: float
    partial: bool = False  # only part of the video could be decoded (cut or corrupt file)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (kind, text): see store.NoteRecord


@dataclass
class DecodeFailure:
    key: int
    stage: str  # "open" | "decode" | "timeout" | "crash"
    error: str
    seconds: float


class _DecodeSize:
    """The decode size of a (height, width) video for the model: short side to S, aspect kept."""

    def __init__(self, image_size: int, resize_mode: str):
        self.image_size, self.resize_mode = image_size, resize_mode

    def __call__(self, height: int, width: int) -> tuple[int, int]:
        from cmdcl.extract.preprocess import decode_size

        return decode_size(height, width, self.image_size, self.resize_mode)


def decode_task(task: DecodeTask, settings: DecodeSettings) -> DecodedClip | DecodeFailure:
    """Open, sample and decode one video; never raises (a failure is a value).

    Which backend serves, and the salvage of a partly broken video (F frames sampled among those that
    decode, the clip `partial` with a note saying what was lost), is the decoders' fallback policy.
    Only a video with no clean frame at all fails.
    """
    start = time.perf_counter()
    stage = "open"
    decoder = None
    try:
        decoder = fallback_decoder(settings.backend, settings.fallback, settings.threads)
        decoder.open(task.path, _DecodeSize(settings.image_size, settings.resize_mode))
        stage = "decode"
        # --no-fallback with decord: decord or nothing; PyAV may still salvage a file it serves itself.
        got = decoder.read_sampled(settings.sampler, salvage=settings.fallback or settings.backend == "pyav")
        return DecodedClip(key=task.key, frames=got.frames, timestamps_ms=got.timestamps_ms, sampled=got.sampled,
                           meta=got.meta, backend=got.backend, fallback_reason=got.fallback_reason,
                           seconds=time.perf_counter() - start, partial=bool(got.meta.truncated or got.salvaged),
                           notes=_clip_notes(got))
    except (VideoOpenError, VideoDecodeError) as exc:
        error = one_line(exc, limit=1000, kind=False).replace(f": '{task.path}'", "")[:300]  # the record names the path
        return DecodeFailure(task.key, stage, error, time.perf_counter() - start)
    except Exception as exc:  # a bug or an unexpected library error must not end the run
        return DecodeFailure(task.key, stage, one_line(exc), time.perf_counter() - start)
    finally:
        if decoder is not None:
            decoder.close()


def _clip_notes(got) -> list[tuple[str, str]]:
    """(kind, text) notes stored beside a video: partial decodes, rotation not applied, decoder fallbacks."""
    notes = []
    partial = [reason for reason in (got.meta.truncated, got.salvaged) if reason]
    if partial:
        notes.append(("partial", "; ".join(partial)))
    if got.meta.rotation:
        notes.append(("rotation", f"display rotation {got.meta.rotation} degrees (counter-clockwise) not applied: "
                                  "features are of the frames as stored"))
    if got.fallback_reason is not None:
        notes.append(("fallback", f"decoded by {got.backend}: {got.fallback_reason}"))
    return notes


def _worker_main(conn, settings: DecodeSettings) -> None:
    """Decode loop of one worker process: receive a task, say "start", decode, send the result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and SIGTERM are the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        while True:
            task = conn.recv()
            if task is None:
                return
            conn.send(("start", task.key))
            conn.send(("done", decode_task(task, settings)))
    except (EOFError, OSError, KeyboardInterrupt):  # the parent went away
        return


@dataclass(eq=False)
class _Worker:
    process: Any
    conn: Any
    assigned: deque  # DecodeTask, the first one is being decoded once "start" arrived
    started_at: float | None = None


def _start_method() -> str:
    # Never fork: the parent holds torch (maybe CUDA) and HDF5 state that must not be inherited.
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


class DecodePool:
    """Worker processes with per-video timeouts; yields results as they finish (not in task order).

    Each worker talks to the parent over its own pipe, so killing one (timeout) cannot corrupt a
    queue the others share. At most `TASKS_PER_WORKER` tasks are assigned to a worker at a time;
    the tasks of a killed or crashed worker that had not started go back to the front of the line.
    """

    def __init__(self, workers: int, settings: DecodeSettings, timeout_s: float):
        self.settings = settings
        self.timeout_s = timeout_s
        self.context = mp.get_context(_start_method())
        if self.context.get_start_method() == "forkserver":
            # Workers fork from a server that has already imported the decoders: fast restarts.
            self.context.set_forkserver_preload(["cmdcl.extract.runner", "cmdcl.extract.preprocess", "av"])
        self.workers = [self._start_worker() for _ in range(workers)]
        self.restarts = 0
        self._deaths_before_start = 0  # consecutive: workers that die before taking any task are broken

    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self.context.Pipe(duplex=True)
        process = self.context.Process(target=_worker_main, args=(child_conn, self.settings), daemon=True,
                                       name="cmdcl-decode")
        process.start()
        child_conn.close()
        return _Worker(process=process, conn=parent_conn, assigned=deque())

    def _replace(self, worker: _Worker) -> list[DecodeTask]:
        """Kill `worker`, start a fresh one in its place; return its tasks that never started."""
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=10)
        worker.conn.close()
        queued = list(worker.assigned)[1:] if worker.started_at is not None else list(worker.assigned)
        self.workers[self.workers.index(worker)] = self._start_worker()
        self.restarts += 1
        return queued

    def run(self, tasks: Iterable[DecodeTask], stop: Callable[[], bool] = lambda: False
            ) -> Iterator[DecodedClip | DecodeFailure]:
        pending = iter(tasks)
        retry: deque[DecodeTask] = deque()
        while True:
            # Hand out work to whoever has room, least loaded first.
            while not stop():
                worker = min(self.workers, key=lambda w: len(w.assigned))
                if len(worker.assigned) >= TASKS_PER_WORKER:
                    break
                task = retry.popleft() if retry else next(pending, None)
                if task is None:
                    break
                worker.assigned.append(task)
                try:
                    worker.conn.send(task)
                except OSError:  # the worker just died: the wait below sees its closed pipe and re-queues
                    pass
            busy = [w for w in self.workers if w.assigned]
            if not busy:
                return
            if stop():
                return
            now = time.time()
            deadlines = [w.started_at + self.timeout_s - now for w in busy if w.started_at is not None]
            ready = wait_for_connections([w.conn for w in busy], timeout=max(0.05, min(deadlines + [1.0])))
            for worker in [w for w in busy if w.conn in ready]:
                try:
                    kind, payload = worker.conn.recv()
                except (EOFError, OSError):  # the worker died: a decoder crashed on this video
                    worker.process.join(timeout=5)
                    task = worker.assigned[0]
                    code = worker.process.exitcode
                    started = worker.started_at is not None
                    retry.extendleft(reversed(self._replace(worker)))
                    if started:
                        yield DecodeFailure(task.key, "crash", f"decode worker died (exit code {code})",
                                            time.time() - worker.started_at)
                    else:  # died before starting it (failed to launch?): its tasks were re-queued above
                        self._deaths_before_start += 1
                        if self._deaths_before_start > 2 * len(self.workers) + 2:
                            raise CmdclError(f"decode workers keep dying before decoding anything "
                                               f"(last exit code {code}); run with --workers 0 to see why")
                    continue
                if kind == "start":
                    worker.started_at = time.time()
                    self._deaths_before_start = 0
                else:
                    worker.assigned.popleft()
                    worker.started_at = None
                    yield payload
            now = time.time()
            for worker in list(self.workers):
                if worker.started_at is None or now - worker.started_at <= self.timeout_s or worker.conn.poll():
                    continue
                task = worker.assigned[0]
                retry.extendleft(reversed(self._replace(worker)))
                yield DecodeFailure(task.key, "timeout", f"decoding took longer than {self.timeout_s:g} s; "
                                    "worker killed", now - (worker.started_at or now))

    def close(self) -> None:
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.time() + 5
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.time()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.conn.close()
        self.workers = []


def decode_inline(tasks: Iterable[DecodeTask], settings: DecodeSettings, stop: Callable[[], bool] = lambda: False
                  ) -> Iterator[DecodedClip | DecodeFailure]:
    """workers=0: decode in this process, one video at a time (no timeout)."""
    for task in tasks:
        if stop():
            return
        yield decode_task(task, settings)


# ------------------------------------------------------------------------------------------- encoding

@dataclass(eq=False)  # compared by identity: fields hold arrays
class _Pending:
    """A decoded video whose frames are being encoded."""

    item: VideoItem
    clip: DecodedClip
    pixels: Any  # (V, 3, S, S) preprocessed tensor, dropped once encoded
    features: np.ndarray  # (V, D) float32
    patches: np.ndarray | None  # (V, G*G, D) float32
    encoded: int = 0  # frames encoded so far


class BatchEncoder:
    """Collects preprocessed frames of several videos and encodes them `batch_size` frames at a time."""

    def __init__(self, encoder, batch_size: int, patch_grid: int):
        self.encoder = encoder
        self.batch_size = batch_size
        self.patch_grid = patch_grid
        self.queue: deque[_Pending] = deque()
        self.queued_frames = 0
        self.seconds = 0.0

    def add(self, pending: _Pending) -> None:
        self.queue.append(pending)
        self.queued_frames += len(pending.features)

    def ready(self) -> bool:
        return self.queued_frames >= self.batch_size

    def encode_batch(self) -> tuple[list[_Pending], list[tuple[_Pending, str]]]:
        """Encode up to `batch_size` queued frames; return (videos now complete, videos that failed)."""
        import torch

        segments: list[tuple[_Pending, int, int]] = []
        room = self.batch_size
        for pending in self.queue:
            take = min(room, len(pending.features) - pending.encoded)
            segments.append((pending, pending.encoded, take))
            room -= take
            if room == 0:
                break
        start = time.perf_counter()
        try:
            pixels = torch.cat([p.pixels[s:s + n] for p, s, n in segments])
            out = self.encoder.encode_frames(pixels, patch_grid=self.patch_grid)
            features, patches = out if self.patch_grid > 0 else (out, None)
            features = _as_numpy(features)
            patches = _as_numpy(patches) if patches is not None else None
            if not np.isfinite(features).all() or (patches is not None and not np.isfinite(patches).all()):
                raise FloatingPointError("encoder produced NaN/inf features")
        except Exception as exc:  # e.g. out of memory: fail the videos of this batch, keep going
            error = one_line(exc)
            failed = []
            for pending, _, _ in segments:
                if pending in self.queue:
                    self.queue.remove(pending)
                    self.queued_frames -= len(pending.features) - pending.encoded
                    failed.append((pending, error))
            self.seconds += time.perf_counter() - start
            return [], failed
        self.seconds += time.perf_counter() - start
        row = 0
        for pending, s, n in segments:
            pending.features[s:s + n] = features[row:row + n]
            if patches is not None:
                pending.patches[s:s + n] = patches[row:row + n]
            pending.encoded += n
            row += n
        self.queued_frames -= row
        complete = []
        while self.queue and self.queue[0].encoded == len(self.queue[0].features):
            done = self.queue.popleft()
            done.pixels = None
            complete.append(done)
        return complete, []


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _multi_hot(indices: Iterable[int], size: int, what: str, video_id: str) -> np.ndarray:
    out = np.zeros(size, np.uint8)
    for i in indices:
        if not 0 <= i < size:
            raise CmdclError(f"video {video_id}: {what} index {i} outside the dataset's {size} {what}s.")
        out[i] = 1
    return out


def _pad_rows(valid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(V, ...) rows of the valid frames -> (F, ...) with padded rows copying the last valid row."""
    out = np.empty((len(mask), *valid.shape[1:]), dtype=valid.dtype)
    count = int(mask.sum())
    out[:count] = valid
    out[count:] = valid[count - 1]
    return out


def build_record(pending: _Pending, num_classes: int, num_steps: int) -> VideoRecord:
    item, clip = pending.item, pending.clip
    mask = clip.sampled.mask
    patches = None
    if pending.patches is not None:
        patches = _pad_rows(pending.patches, mask).astype(np.float16)
    return VideoRecord(
        video_id=item.video_id, split=item.split, path=item.path, label=int(item.label),
        labels=_multi_hot(item.labels, num_classes, "class", item.video_id),
        steps=_multi_hot(item.steps, num_steps, "step", item.video_id),
        fps=float(clip.meta.fps), duration=float(clip.meta.duration), num_frames=int(clip.meta.num_frames),
        frame_index=clip.sampled.indices.astype(np.int64),
        timestamps_ms=_pad_rows(np.asarray(clip.timestamps_ms, np.float64), mask),
        frame_mask=mask.astype(bool),
        features=_pad_rows(pending.features, mask).astype(np.float16),
        patches=patches,
        partial=bool(clip.partial),
    )


# ------------------------------------------------------------------------------------------- the run

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


def _comparable(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, np.generic):
        value = value.item()
    return str("" if value is None else value)


def _check_resumable(writer: ShardWriter, attrs: dict[str, Any]) -> None:
    """Refuse to append to part files that an earlier run wrote with different settings."""
    import h5py

    parts = sorted(writer.parts_dir.glob("part-*.h5"))
    if not parts:
        return
    with h5py.File(parts[0], "r") as f:
        old = dict(f.attrs)
    for key in (*COMPATIBILITY_KEYS, "shard_index", "num_shards"):
        if key in old and key in attrs and _comparable(old[key]) != _comparable(attrs[key]):
            raise CmdclError(
                f"{writer.parts_dir}: an interrupted run wrote this shard with {key}={_comparable(old[key])}, "
                f"this run has {key}={_comparable(attrs[key])}.",
                fix=f"re-run with the same settings to resume, or delete {writer.parts_dir} to start over.")


def _done_marker(path: Path) -> dict[str, Any]:
    """The `.done` marker of a finished shard: {"videos": N, "failures": M} ({} when unreadable)."""
    try:
        return json.loads(path.with_name(path.name + ".done").read_text())
    except (OSError, ValueError):
        return {}


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
    from cmdcl.extract.datasets.registry import load_dataset

    cfg.check()
    wall_start = time.perf_counter()
    index = load_dataset(cfg.dataset, cfg.root, splits=cfg.splits, **cfg.dataset_options)
    log(index.report())
    # Heavy imports only now: a mistyped dataset or root is reported at once.
    import torch
    from tqdm import tqdm

    from cmdcl.core.version import code_version
    from cmdcl.extract.models import load_encoder
    from cmdcl.extract.preprocess import FramePreprocessor
    from cmdcl.extract.text import encode_label_texts

    mine = shard_items(index.items, cfg.shard, index.missing, cfg.limit)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / shard_name(cfg.shard.index, cfg.shard.count)
    summary = ExtractSummary(shard=str(cfg.shard), shard_path=str(path), videos=len(mine), workers=cfg.workers,
                             missing=len(index.missing))
    if shard_is_done(path) and cfg.retry_failed and _done_marker(path).get("failures", 1):
        reopen_shard(path)  # its file becomes the first part: stored videos are kept, failed ones redone
        log(f"shard {cfg.shard}: reopened {path} to retry its failed videos")
    if shard_is_done(path):
        summary.already_done = True
        summary.wall_s = time.perf_counter() - wall_start
        return summary

    torch.manual_seed(cfg.seed)
    if encoder is None:
        encoder = load_encoder(cfg.model, cfg.pretrained, cache_dir=cfg.cache_dir, device=cfg.device,
                               precision=cfg.precision, seed=cfg.seed, preprocess_tag=cfg.preprocess_tag)
    elif encoder.model_name.replace("/", "-") != cfg.model.replace("/", "-"):  # open_clip spells ViT-B/16 ViT-B-16
        raise ValueError(f"encoder {encoder.model_name!r} passed for model {cfg.model!r}")
    preprocess = FramePreprocessor.from_encoder(encoder, device=getattr(encoder, "device", None))
    text = encode_label_texts(encoder, index.class_names, index.step_names, templates=cfg.templates)
    sampler = cfg.sampler()
    backend = cfg.decoder or default_backend()
    if backend == "decord" and not decord_available():
        if not cfg.fallback:
            raise CmdclError("--decoder decord: decord is not installed (wheels exist only for Linux x86_64 and "
                             "Windows).", fix="use --decoder pyav.")
        log("decord is not installed; decoding with PyAV")
        backend = "pyav"
    if backend == "nvdec" and not backend_available("nvdec"):
        if not cfg.fallback:
            raise CmdclError("--decoder nvdec: needs PyNvVideoCodec and a CUDA GPU.",
                             fix="pip install 'cmdcl[gpu]' on a CUDA machine, or use --decoder pyav.")
        log("nvdec is not available (PyNvVideoCodec or a CUDA GPU missing); decoding with PyAV")
        backend = "pyav"
    num_classes, num_steps = len(index.class_names), len(index.step_names)
    attrs = {
        **encoder.provenance(),
        "decoder": backend,
        "decoder_version": backend_version(backend),
        "decoder_fallback": "pyav" if cfg.fallback and backend == "decord" else "",
        "sampler": sampler.as_dict(),
        "frames": cfg.frames,
        "patch_grid": cfg.patch_grid,
        "embed_dim": int(encoder.embed_dim),
        "num_classes": num_classes,
        "num_steps": num_steps,
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
    attrs = {k: str(v) if isinstance(v, str) else v for k, v in attrs.items()}
    writer = ShardWriter(path, attrs, text, flush_every=cfg.flush_every)
    finalized = False
    pool: DecodePool | None = None
    # The CPU encoder keeps all its threads even beside decode workers: capping it at cores - workers
    # made ViT-B-16 extraction 1.8x slower on 2 cores and saved only 3.5% when decode-bound
    # (benchmarks/extract_throughput.py, docs/BENCHMARKS.md).
    try:
        if shard_is_done(path):  # another process finished this shard while we were loading the model
            writer.close()
            if not any(writer.parts_dir.glob("part-*")):
                shutil.rmtree(writer.parts_dir, ignore_errors=True)
            summary.already_done = True
            summary.wall_s = time.perf_counter() - wall_start
            return summary
        _check_resumable(writer, attrs)
        done_ids = writer.done_ids(include_failed=not cfg.retry_failed)
        todo = [item for item in mine if item.video_id not in done_ids]
        summary.resumed = len(mine) - len(todo)
        if cfg.retry_failed:
            summary.retried = len({item.video_id for item in todo} & (writer.done_ids() - done_ids))
        if summary.resumed or summary.retried:
            log(f"shard {cfg.shard}: resuming, {summary.resumed} of {len(mine)} videos already done"
                + (f", retrying {summary.retried} that failed" if summary.retried else ""))
        settings = DecodeSettings(sampler=sampler, image_size=encoder.image_size, resize_mode=encoder.resize_mode,
                                  backend=backend, fallback=cfg.fallback)
        tasks = (DecodeTask(key, item.video_id, item.path) for key, item in enumerate(todo))
        batcher = BatchEncoder(encoder, cfg.batch_size, cfg.patch_grid)
        grid_cells = cfg.patch_grid * cfg.patch_grid

        with _StopSignals() as stop, tqdm(total=len(todo), unit="video", disable=not cfg.progress,
                                          desc=f"shard {cfg.shard}", file=sys.stderr) as bar:
            def write(record: VideoRecord | None = None, failure: FailureRecord | None = None,
                      notes: Iterable[tuple[str, str]] = ()) -> None:
                start = time.perf_counter()
                if record is not None:
                    for kind, text in notes:  # before the record: a part never holds a video without its notes
                        note = NoteRecord(record.video_id, record.path, kind, text)
                        writer.add_note(note)
                        summary.notes.append(note)
                        if kind == "partial":
                            log(f"PARTIAL {record.video_id} {text}")
                    writer.add(record)
                    summary.extracted += 1
                    summary.partial += int(record.partial)
                    summary.frames += int(record.frame_mask.sum())
                else:
                    writer.add_failure(failure)
                    summary.failures.append(failure)
                    summary.failed += 1
                    log(f"FAILED {failure.video_id} [{failure.stage}] {failure.error}")
                summary.write_s += time.perf_counter() - start
                bar.update(1)
                bar.set_postfix(frames_s=f"{summary.rate(time.perf_counter() - wall_start):.0f}",
                                failed=summary.failed, refresh=False)

            def drain(force: bool) -> None:
                while batcher.queue and (batcher.ready() or force):
                    complete, failed = batcher.encode_batch()
                    for pending in complete:
                        write(build_record(pending, num_classes, num_steps), notes=pending.clip.notes)
                    for pending, error in failed:
                        write(failure=FailureRecord(pending.item.video_id, pending.item.path, "encode", error))

            if cfg.workers > 0 and backend != "nvdec":  # NVDEC frames are CUDA tensors: decoded in this process
                pool = DecodePool(cfg.workers, settings, cfg.timeout_s)
                results = pool.run(tasks, stop)
            else:
                results = decode_inline(tasks, settings, stop)
            waited = time.perf_counter()
            for result in results:
                summary.wait_s += time.perf_counter() - waited
                item = todo[result.key]
                summary.decode_s += result.seconds
                if isinstance(result, DecodeFailure):
                    write(failure=FailureRecord(item.video_id, item.path, result.stage, result.error))
                else:
                    if result.backend != backend:
                        summary.fallbacks += 1
                        log(f"{item.video_id}: decoded with {result.backend} ({result.fallback_reason})")
                    start = time.perf_counter()
                    try:
                        pixels = preprocess(result.frames)
                    except Exception as exc:
                        write(failure=FailureRecord(item.video_id, item.path, "preprocess", one_line(exc)))
                        continue
                    finally:
                        summary.preprocess_s += time.perf_counter() - start
                    count = len(result.frames)
                    batcher.add(_Pending(
                        item=item, clip=result, pixels=pixels,
                        features=np.zeros((count, encoder.embed_dim), np.float32),
                        patches=np.zeros((count, grid_cells, encoder.embed_dim), np.float32) if grid_cells else None,
                    ))
                    result.frames = None  # the preprocessed copy is all that is needed now
                    drain(force=False)
                waited = time.perf_counter()
            if stop():
                raise ExtractionInterrupted(
                    f"shard {cfg.shard}: stopped by signal {stop.received}; {summary.extracted} videos saved.",
                    fix="re-run the same command to resume.")
            drain(force=True)
        summary.encode_s = batcher.seconds

        start = time.perf_counter()
        writer.finalize()
        finalized = True
        summary.write_s += time.perf_counter() - start
    finally:
        if pool is not None:
            pool.close()
        if not finalized:
            try:
                writer.flush()  # keep every finished video for the resume
            finally:
                writer.close()
    summary.wall_s = time.perf_counter() - wall_start
    return summary
