"""The reader stage: decode worker processes, each turning a `DecodeTask` into a `DecodedClip` or a
`DecodeFailure`.

Each worker opens its own decoders (decord readers do not survive a fork); a worker stuck on one
video past `timeout_s` is killed and replaced, and a worker that crashes (decoders segfault on some
files) is replaced too: the video is recorded as failed, the run goes on. Memory stays bounded: at
most `TASKS_PER_WORKER` videos per worker are in flight, each holding only its F sampled frames at
decode size. Which backend serves a video, and the salvage of partly broken ones, is the decoders'
fallback policy (`cmdcl.extract.decoders.fallback`).
"""
from __future__ import annotations

import multiprocessing as mp
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for_connections
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from cmdcl.core.errors import CmdclError, one_line, shorten
from .decoders import VideoDecodeError, VideoMeta, VideoOpenError, default_backend, fallback_decoder
from .sampler import FrameSampler, SampledFrames

TASKS_PER_WORKER = 2  # one decoding, one queued: a worker never waits for the main process


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
    backend: str | None  # None: by the video's container (decoders.default_backend)
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
        from .preprocess import decode_size

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
        backend = settings.backend or default_backend(task.path)
        decoder = fallback_decoder(backend, settings.fallback, settings.threads)
        decoder.open(task.path, _DecodeSize(settings.image_size, settings.resize_mode))
        stage = "decode"
        # --no-fallback with decord: decord or nothing; PyAV may still salvage a file it serves itself.
        got = decoder.read_sampled(settings.sampler, salvage=settings.fallback or backend == "pyav")
        return DecodedClip(key=task.key, frames=got.frames, timestamps_ms=got.timestamps_ms, sampled=got.sampled,
                           meta=got.meta, backend=got.backend, fallback_reason=got.fallback_reason,
                           seconds=time.perf_counter() - start, partial=bool(got.meta.truncated or got.salvaged),
                           notes=_clip_notes(got))
    except (VideoOpenError, VideoDecodeError) as exc:
        error = shorten(one_line(exc, limit=1000, kind=False).replace(f": '{task.path}'", ""), 300)  # the record names the path
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
            self.context.set_forkserver_preload(["cmdcl.extract.decode_pool", "cmdcl.extract.preprocess", "av"])
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
            self._hand_out(pending, retry, stop)
            busy = [w for w in self.workers if w.assigned]
            if not busy or stop():
                return
            now = time.time()
            deadlines = [w.started_at + self.timeout_s - now for w in busy if w.started_at is not None]
            ready = wait_for_connections([w.conn for w in busy], timeout=max(0.05, min(deadlines + [1.0])))
            for worker in [w for w in busy if w.conn in ready]:
                yield from self._receive(worker, retry)
            yield from self._kill_overdue(retry)

    def _hand_out(self, pending: Iterator[DecodeTask], retry: deque, stop: Callable[[], bool]) -> None:
        """Give work to whoever has room, least loaded first; re-queued tasks go first."""
        while not stop():
            worker = min(self.workers, key=lambda w: len(w.assigned))
            if len(worker.assigned) >= TASKS_PER_WORKER:
                return
            task = retry.popleft() if retry else next(pending, None)
            if task is None:
                return
            worker.assigned.append(task)
            try:
                worker.conn.send(task)
            except OSError:  # the worker just died: the wait in `run` sees its closed pipe and re-queues
                pass

    def _receive(self, worker: _Worker, retry: deque) -> Iterator[DecodedClip | DecodeFailure]:
        """One message from `worker`: "start" (it began its first task) or "done"; a closed pipe is a crash."""
        try:
            kind, payload = worker.conn.recv()
        except (EOFError, OSError):  # the worker died: a decoder crashed on this video
            yield from self._on_death(worker, retry)
            return
        if kind == "start":
            worker.started_at = time.time()
            self._deaths_before_start = 0
        else:
            worker.assigned.popleft()
            worker.started_at = None
            yield payload

    def _on_death(self, worker: _Worker, retry: deque) -> Iterator[DecodeFailure]:
        worker.process.join(timeout=5)
        task = worker.assigned[0]
        code = worker.process.exitcode
        started = worker.started_at is not None
        retry.extendleft(reversed(self._replace(worker)))
        if started:
            yield DecodeFailure(task.key, "crash", f"decode worker died (exit code {code})",
                                time.time() - worker.started_at)
            return
        # Died before starting it (failed to launch?): its tasks were re-queued above.
        self._deaths_before_start += 1
        if self._deaths_before_start > 2 * len(self.workers) + 2:
            raise CmdclError(f"decode workers keep dying before decoding anything "
                             f"(last exit code {code}); run with --workers 0 to see why")

    def _kill_overdue(self, retry: deque) -> Iterator[DecodeFailure]:
        """Replace the workers stuck on one video past the timeout; that video fails."""
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

