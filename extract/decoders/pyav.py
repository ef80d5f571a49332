"""PyAV (FFmpeg) backend: works everywhere; seeks with its own packet index, and can salvage the cleanly
decodable frames of a partly corrupt video (`PyAVDecoder.decodable_indices`, `read_tolerant`)."""
from __future__ import annotations

import bisect
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cmdcl.core.errors import one_line
from .base import (SizeSpec, VideoDecodeError, VideoDecoder, VideoMeta, VideoOpenError,
                   _check_indices, _resolve_size)
from .probe import _check_path, _declared_length, _first_frame_rotation, _mp4_hint, _truncation


class _UnreliableTimestamps(Exception):
    """Decoded frames do not map back onto the packet index: seeking cannot be trusted for this file."""


class PyAVDecoder(VideoDecoder):
    """PyAV (FFmpeg) with a packet index: seek to the keyframe before each wanted frame, decode forward.

    `open` demuxes every packet once (no decoding) to count frames and learn their presentation
    times and the keyframes. `read` jumps to the nearest keyframe before a wanted frame only when
    that is ahead of the decoder's position, so dense indices decode in one forward pass. When
    timestamps cannot be trusted (AVI has none; some files have missing or out-of-order ones),
    it decodes sequentially from the start and counts frames instead. Either way it converts only
    the wanted frames, to the output size and rgb24 inside FFmpeg, and keeps nothing else.
    """

    name = "pyav"

    def __init__(self, threads: int = 1):
        self.threads = threads
        self._container = None
        self._stream = None
        self._frames = None  # the live decode generator
        self._position = -1  # index of the last frame the generator produced
        self._target = 0  # the frame the seeking reader is after; packets of earlier frames may skip decoding
        self._pts: list[int] = []  # presentation time of frame i, sorted
        self._index_of_pts: dict[int, int] = {}
        self._keyframes: list[int] = []  # frame indices of keyframes, sorted
        self._start_pts = 0
        self._last_duration = 0  # of the last frame, in stream time base (0: unknown)
        self.sequential = False  # True when the file is decoded front to back instead of seeking

    @staticmethod
    def version() -> str:
        import av

        return av.__version__

    def open(self, path: str | Path, size: SizeSpec = None) -> VideoMeta:
        import av

        path = str(path)
        _check_path(path)
        try:
            self._container = av.open(path)
            if not self._container.streams.video:
                raise VideoOpenError("file has no video stream")
            stream = self._stream = self._container.streams.video[0]
            stream.codec_context.thread_count = self.threads
            if self.threads != 1:
                stream.thread_type = "AUTO"
            height, width = stream.codec_context.height, stream.codec_context.width
            if not height or not width:
                raise VideoOpenError("video stream has no frame size")
            out_h, out_w = _resolve_size(size, height, width)
            self._build_index()
            rotation = _first_frame_rotation(self._container, stream)
            self._container.seek(0, stream=stream, backward=True, any_frame=False)  # rewind for reading
        except VideoOpenError:
            self.close()
            raise
        except Exception as exc:  # av.error.* (InvalidDataError, ...), OSError
            self.close()
            raise VideoOpenError(one_line(exc) + _mp4_hint(path)) from exc
        num_frames = len(self._pts)
        if num_frames == 0:
            self.close()
            raise VideoOpenError("no video packets found")
        time_base = float(stream.time_base) if stream.time_base else 0.0
        duration = self._duration(num_frames, time_base)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else (num_frames / duration if duration > 0 else 0.0)
        if duration <= 0 and fps > 0:
            duration = num_frames / fps
        span = self._span(num_frames, fps, time_base)
        truncated = _truncation(num_frames, span, *_declared_length(self._container, stream))
        if truncated:  # the header's duration describes frames that are not there
            duration = span
        self.meta = VideoMeta(num_frames=num_frames, fps=fps, duration=duration, height=height, width=width,
                              out_height=out_h, out_width=out_w, rotation=rotation, backend=self.name,
                              truncated=truncated)
        return self.meta

    def _build_index(self) -> None:
        """Demux every packet (cheap: no decoding) to count frames and find pts and keyframes."""
        stream = self._stream
        pts, keys, durations, missing_pts = [], [], [], False
        for packet in self._container.demux(stream):
            if packet.size == 0:  # the flush packet at the end
                continue
            if packet.pts is None:
                missing_pts = True
            pts.append(packet.pts if packet.pts is not None else packet.dts)
            keys.append(packet.is_keyframe)
            durations.append(packet.duration or 0)
        # AVI stores no presentation times (PyAV reports decode order), so seeking by pts is unsafe.
        unreliable = (missing_pts or any(p is None for p in pts) or len(set(pts)) != len(pts)
                      or "avi" in self._container.format.name.split(","))
        if unreliable:
            self.sequential = True
            self._pts = list(range(len(pts)))
            self._keyframes = [i for i, key in enumerate(keys) if key] or [0]  # decode order: frames are counted
            self._start_pts = 0
        else:
            order = sorted(range(len(pts)), key=pts.__getitem__)
            self._pts = [pts[i] for i in order]
            self._last_duration = durations[order[-1]] if order else 0
            self._keyframes = [rank for rank, i in enumerate(order) if keys[i]] or [0]
            start = stream.start_time
            self._start_pts = start if start is not None and start <= self._pts[0] else self._pts[0]
        self._index_of_pts = {p: i for i, p in enumerate(self._pts)}
        self._container.seek(0, stream=stream, backward=True, any_frame=False)  # rewind for decoding
        self._frames, self._position = None, -1

    def _duration(self, num_frames: int, time_base: float) -> float:
        stream, container = self._stream, self._container
        if stream.duration and time_base:
            return float(stream.duration * time_base)
        if container.duration:
            return container.duration / 1_000_000  # AV_TIME_BASE
        if not self.sequential and num_frames > 1 and time_base:
            step = (self._pts[-1] - self._pts[0]) / (num_frames - 1)
            return float((self._pts[-1] - self._start_pts + step) * time_base)
        return 0.0

    def _span(self, num_frames: int, fps: float, time_base: float) -> float:
        """Seconds covered by the packets actually present (first presentation time to end of the last frame)."""
        if self.sequential or num_frames < 2 or not time_base:
            return num_frames / fps if fps else 0.0
        step = self._last_duration or float(np.median(np.diff(self._pts)))
        return float((self._pts[-1] - self._start_pts + step) * time_base)

    def _timestamp_ms(self, index: int) -> float:
        if self.sequential:  # constant frame rate is all such containers can express
            return 1000.0 * index / self.meta.fps if self.meta.fps else 0.0
        return 1000.0 * float((self._pts[index] - self._start_pts) * self._stream.time_base)

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        if self._container is None or self.meta is None:
            raise RuntimeError("open() a video before read()")
        idx = _check_indices(indices, self.meta.num_frames)
        wanted = np.unique(idx)
        out = np.empty((len(wanted), self.meta.out_height, self.meta.out_width, 3), np.uint8)
        try:
            if self.sequential:
                self._read_sequential(wanted, out)
            else:
                try:
                    self._read_seeking(wanted, out)
                except _UnreliableTimestamps:
                    self.sequential = True
                    self._read_sequential(wanted, out)
        except VideoDecodeError:
            raise
        except Exception as exc:  # av.error.*: corrupt data, truncated file
            raise VideoDecodeError(one_line(exc)) from exc
        rows = np.searchsorted(wanted, idx)
        timestamps = np.array([self._timestamp_ms(int(i)) for i in idx], np.float64)
        return out[rows], timestamps

    def keyframes(self) -> np.ndarray:
        if self._container is None:
            raise RuntimeError("open() a video before keyframes()")
        return np.asarray(self._keyframes, np.int64)

    def _convert(self, frame) -> np.ndarray:
        return frame.to_ndarray(width=self.meta.out_width, height=self.meta.out_height, format="rgb24",
                                interpolation="BICUBIC")

    def _seek(self, frame_index: int) -> None:
        self._container.seek(self._pts[frame_index], stream=self._stream, backward=True, any_frame=False)
        self._frames, self._position = self._decode_skipping(), -1

    def _decode_skipping(self):
        """Decoded frames from the current demux position, skipping the non-reference frames before `_target`.

        A packet whose frame comes before the wanted one is fed under skip_frame NONREF: FFmpeg drops it
        when no other frame refers to it (B-frames), and still decodes the reference frames the wanted
        one depends on, so the frames returned are the same as from a full decode. The skip is set per
        packet when it is fed, so a wanted frame that comes out only after later packets (B-frame
        reordering) was itself fed under DEFAULT. Wanted frames only move forward between seeks, so a
        skipped frame is never wanted later.
        """
        codec = self._stream.codec_context
        for packet in self._container.demux(self._stream):
            index = self._index_of_pts.get(packet.pts) if packet.size else None  # size 0: the flush packet
            codec.skip_frame = "NONREF" if index is not None and index < self._target else "DEFAULT"
            yield from codec.decode(packet)

    def _next_frame(self, target: int) -> tuple[int, object]:
        try:
            frame = next(self._frames)
        except StopIteration:
            raise VideoDecodeError(f"stream ended before frame {target} of {self.meta.num_frames}") from None
        index = self._index_of_pts.get(frame.pts)
        if index is None or index <= self._position:
            raise _UnreliableTimestamps()
        self._position = index
        return index, frame

    def _read_seeking(self, wanted: np.ndarray, out: np.ndarray) -> None:
        for row, target in enumerate(wanted.tolist()):
            self._target = target
            key = self._keyframes[bisect.bisect_right(self._keyframes, target) - 1]
            if self._frames is None or target <= self._position or key > self._position:
                self._seek(key)
                index, frame = self._next_frame(target)
                if index > target:  # landed past the target: start from the keyframe before instead
                    k = bisect.bisect_left(self._keyframes, key) - 1
                    if k < 0:
                        raise _UnreliableTimestamps()
                    self._seek(self._keyframes[k])
                    index, frame = self._next_frame(target)
                    if index > target:
                        raise _UnreliableTimestamps()
            else:
                index, frame = self._next_frame(target)
            while index < target:
                index, frame = self._next_frame(target)
            if index != target:
                raise _UnreliableTimestamps()
            out[row] = self._convert(frame)

    def _read_sequential(self, wanted: np.ndarray, out: np.ndarray) -> None:
        self._container.seek(0, stream=self._stream, backward=True, any_frame=False)
        self._frames, self._position = None, -1
        self._stream.codec_context.skip_frame = "DEFAULT"
        rows = {int(t): r for r, t in enumerate(wanted.tolist())}
        last = int(wanted[-1]) if len(wanted) else -1
        count = 0
        for count, frame in enumerate(self._container.decode(self._stream)):
            row = rows.get(count)
            if row is not None:
                out[row] = self._convert(frame)
            if count >= last:
                return
        if last >= 0:
            raise VideoDecodeError(f"stream ended after {count + 1} decodable frames, before frame {last} "
                                   f"of {self.meta.num_frames}")

    # Salvage: a partly corrupt file, where some packets fail to decode, still has clean frames.

    def decodable_indices(self) -> np.ndarray:
        """Indices of the frames that decode cleanly; decodes the whole video once and keeps no frame.

        A frame counts when it decodes without error and FFmpeg does not flag it corrupt, and no packet
        failed since the last keyframe: frames predicted from a broken one are garbage (concealed, not
        reported) until the next keyframe, so they are skipped too.
        """
        if self._container is None or self.meta is None:
            raise RuntimeError("open() a video before decodable_indices()")
        found: list[int] = []
        self._decode_tolerant(lambda index, frame: found.append(index))
        return np.asarray(found, np.int64)

    def read_tolerant(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """`read` for a partly corrupt file: decode front to back, skipping broken packets.

        Every index must be one that `decodable_indices` returned; one that does not decode raises.
        """
        if self._container is None or self.meta is None:
            raise RuntimeError("open() a video before read_tolerant()")
        idx = _check_indices(indices, self.meta.num_frames)
        wanted = np.unique(idx)
        rows = {int(t): r for r, t in enumerate(wanted.tolist())}
        out = np.empty((len(wanted), self.meta.out_height, self.meta.out_width, 3), np.uint8)
        converted: set[int] = set()

        def keep(index: int, frame) -> None:
            row = rows.get(index)
            if row is not None:
                out[row] = self._convert(frame)
                converted.add(index)

        if len(wanted):
            self._decode_tolerant(keep, last=int(wanted[-1]))
        lost = sorted(set(rows) - converted)
        if lost:
            raise VideoDecodeError(f"frames {lost[:5]} did not decode cleanly")
        timestamps = np.array([self._timestamp_ms(int(i)) for i in idx], np.float64)
        return out[np.searchsorted(wanted, idx)], timestamps

    def _decode_tolerant(self, visit: Callable[[int, object], None], last: int | None = None) -> None:
        """Decode packets in file order, skipping those that fail; `visit(index, frame)` each clean frame."""
        import av

        self._container.seek(0, stream=self._stream, backward=True, any_frame=False)
        self._frames, self._position = None, -1
        self._stream.codec_context.skip_frame = "DEFAULT"
        clean, count, previous = False, -1, -1
        try:
            for packet in self._container.demux(self._stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    clean = False
                    if self.sequential:  # no timestamps: frames are counted, and a lost packet is a lost frame
                        count += 1
                    continue
                for frame in frames:
                    count += 1
                    index = count if self.sequential else self._index_of_pts.get(frame.pts)
                    if frame.is_corrupt:
                        clean = False
                        continue
                    if frame.key_frame:
                        clean = True
                    if not clean or index is None or index <= previous or index >= self.meta.num_frames:
                        continue
                    previous = index
                    visit(index, frame)
                    if last is not None and index >= last:
                        return
        except av.error.FFmpegError:  # the demuxer gave up (e.g. a cut file): keep what was found
            pass
        finally:
            self._container.seek(0, stream=self._stream, backward=True, any_frame=False)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._stream, self._frames = None, None, None

