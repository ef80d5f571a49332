"""Video decoders: read a few sampled frames of a video, resized in the decoder, with real timestamps.

Two backends behind one interface (`VideoDecoder`): decord (fast batched seeking, Linux x86_64 and
Windows wheels only, unmaintained) and PyAV (everywhere). `open_video` picks one and falls back to
PyAV when decord cannot open or read a file.

Rules every backend follows, because users of such tools hit each of them:
- Frames are decoded straight to the size the encoder needs (`size`), never at full resolution and
  never the whole video: memory is bounded by the number of frames asked for.
- The frame count is counted from the packets, not taken from container metadata (decord #26).
- Every returned frame comes with its presentation time in milliseconds from the stream start.
- Readers are created by the process that uses them (decord readers do not survive a fork).
- Broken files say what is wrong: `VideoOpenError` / `VideoDecodeError` carry a one-line reason, a
  file whose container promises more than it holds is flagged (`VideoMeta.truncated`), and PyAV can
  salvage the cleanly decodable frames of a partly corrupt video (`PyAVDecoder.decodable_indices`,
  `read_tolerant`).
- Rotation metadata (display matrix) is read and reported, never applied: frames come in their coded
  orientation from both backends. decord mis-decodes rotated videos, so it refuses them (PyAV serves).
"""
from __future__ import annotations

import bisect
import errno
import os
import re
import stat
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np

# (height, width), a function of the source (height, width) giving it, or None for the native size.
SizeSpec = Union[tuple[int, int], Callable[[int, int], tuple[int, int]], None]


class VideoOpenError(Exception):
    """The file could not be opened as a video (missing, empty, not a video, no video stream)."""


class VideoDecodeError(Exception):
    """The video opened but the wanted frames could not be decoded."""


class FrameCountChanged(VideoDecodeError):
    """A fallback decoder counts a different number of frames: sample again from its `meta`, then read."""


@dataclass
class VideoMeta:
    num_frames: int  # counted from the packets
    fps: float  # average frame rate
    duration: float  # seconds
    height: int  # source size, before any decoder-side resize
    width: int
    out_height: int  # size of the frames `read` returns
    out_width: int
    rotation: int | None = None  # display rotation, degrees counter-clockwise, when the file has one (not applied)
    backend: str = ""
    truncated: str | None = None  # why the file holds fewer frames than its container declares, when it does

    def as_dict(self) -> dict:
        return asdict(self)


# Noise in library messages: decord's "[12:00:00] /github/workspace/src/x.cc:218: " and PyAV's "[Errno -1094995529] ".
_MESSAGE_NOISE = re.compile(r"\[\d\d:\d\d:\d\d\] \S+\.(?:cc|h|cpp):\d+: |\[Errno -?\d+\] ")


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` squeezed onto one line, for failure records."""
    text = _MESSAGE_NOISE.sub("", " ".join(str(exc).split())) or "(no message)"
    return f"{type(exc).__name__}: {text}"[:limit]


def _resolve_size(size: SizeSpec, height: int, width: int) -> tuple[int, int]:
    if size is None:
        return height, width
    h, w = size(height, width) if callable(size) else size
    if h < 1 or w < 1:
        raise ValueError(f"decode size must be positive, got {(h, w)}")
    return int(h), int(w)


@dataclass
class _Header:
    """What the container says about its video stream, before anything is decoded."""

    height: int
    width: int
    rotation: int | None
    declared_frames: int | None  # frame count stored in the header (mp4, avi), None when absent (mkv, webm)
    declared_duration: float | None  # seconds the video stream (or a single-stream file) claims to last


def _probe(path: str) -> _Header:
    """The container header of `path`, plus the rotation of its first frame (one frame is decoded)."""
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise VideoOpenError("file has no video stream")
        stream = container.streams.video[0]
        return _Header(stream.codec_context.height, stream.codec_context.width,
                       _first_frame_rotation(container, stream), *_declared_length(container, stream))


def _declared_length(container, stream) -> tuple[int | None, float | None]:
    frames = int(stream.frames) if stream.frames else None
    if stream.duration and stream.time_base:
        return frames, float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:  # otherwise it may be an audio track's length
        return frames, container.duration / 1_000_000  # AV_TIME_BASE
    return frames, None


def _first_frame_rotation(container, stream) -> int | None:
    """Display rotation in degrees (counter-clockwise) of the first decodable frame; None when there is none.

    FFmpeg >= 6 exposes the display matrix only as side data (the old `rotate` tag is gone), and PyAV
    gives it on decoded frames; the tag is still honoured for files written by old muxers.
    """
    degrees: float | None = None
    try:
        for frame in container.decode(stream):
            degrees = frame.rotation
            break
    except Exception:  # a first frame that does not decode is for the decoders to report, not the probe
        pass
    tagged = stream.metadata.get("rotate", "")
    if not degrees and tagged.lstrip("-").isdigit():
        degrees = int(tagged)
    return int(round(degrees)) % 360 or None if degrees else None


def _truncation(num_frames: int, span_s: float, declared_frames: int | None,
                declared_duration: float | None) -> str | None:
    """A reason when the container declares more frames or time than the packets actually hold."""
    if declared_frames and declared_frames > num_frames:
        return f"the file holds {num_frames} of the {declared_frames} frames its header declares"
    if declared_duration and declared_duration - span_s > max(0.5, 0.05 * declared_duration):
        return f"the frames found span {span_s:.2f} s of the {declared_duration:.2f} s the header declares"
    return None


def _check_path(path: str) -> None:
    """Refuse what is not a readable, non-empty regular file, saying which of the usual mistakes it is."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise VideoOpenError("broken symbolic link (its target does not exist)" if os.path.islink(path)
                             else "file does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise VideoOpenError("symbolic link loop (too many levels of symbolic links)") from None
        raise VideoOpenError(f"cannot read the file ({os.strerror(exc.errno or 0)})") from None
    if stat.S_ISDIR(info.st_mode):
        raise VideoOpenError("is a directory, not a video file")
    if not stat.S_ISREG(info.st_mode):
        raise VideoOpenError("not a regular file (a pipe, socket or device)")
    if info.st_size == 0:
        raise VideoOpenError("file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise VideoOpenError("permission denied")


def _mp4_hint(path: str) -> str:
    """For an MP4/MOV that FFmpeg cannot open: whether its index (the moov box) is missing or cut off.

    Recorders and downloaders write moov last, so a file cut short has media data but no index, and
    FFmpeg only says "invalid data". Walks the top-level boxes (a few reads, no decoding).
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            if handle.read(8)[4:8] != b"ftyp":
                return ""
            position, boxes = 0, []
            while position + 8 <= size and len(boxes) < 64:
                handle.seek(position)
                header = handle.read(16)
                length, kind = int.from_bytes(header[:4], "big"), header[4:8].decode("latin-1")
                if length == 1 and len(header) == 16:  # 64-bit size
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:  # box runs to the end of the file
                    length = size - position
                boxes.append(kind)
                if length < 8 or position + length > size:
                    return (f" (mp4 box '{kind}' runs past the end of the file: it was cut short"
                            + (", and its index, the moov box, is missing)" if "moov" not in boxes else ")"))
                position += length
    except OSError:
        return ""
    return " (mp4 has no moov box, its index: the file was cut short)" if "moov" not in boxes else ""


def _check_indices(indices: Sequence[int], num_frames: int) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(idx) and (idx.min() < 0 or idx.max() >= num_frames):
        raise VideoDecodeError(f"frame indices {idx.min()}..{idx.max()} outside the video's {num_frames} frames")
    return idx


class VideoDecoder(ABC):
    """Open one video, then read frames by index: `(frames uint8 (n, h, w, 3), timestamps_ms float64 (n,))`."""

    name: str = ""
    meta: VideoMeta | None = None

    @staticmethod
    @abstractmethod
    def version() -> str: ...

    @abstractmethod
    def open(self, path: str | Path, size: SizeSpec = None) -> VideoMeta: ...

    @abstractmethod
    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None:
        pass

    def __enter__(self) -> "VideoDecoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------- decord

def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


class DecordDecoder(VideoDecoder):
    """decord's VideoReader with decoder-side resize; `get_batch` seeks between the wanted frames."""

    name = "decord"

    def __init__(self, threads: int = 1):
        self.threads = threads
        self._reader = None

    @staticmethod
    def version() -> str:
        import decord

        return decord.__version__

    def open(self, path: str | Path, size: SizeSpec = None) -> VideoMeta:
        import decord

        path = str(path)
        _check_path(path)
        try:
            header = _probe(path)
            if header.rotation:
                # decord applies the display matrix into a buffer of the unrotated size: it returns
                # scrambled frames (or fails) for rotated videos. PyAV decodes them correctly.
                raise VideoOpenError(f"decord cannot decode videos with rotation metadata "
                                     f"({header.rotation} degrees)")
            height, width = header.height, header.width
            out_h, out_w = _resolve_size(size, height, width)
            # decord picks its own size when passed -1; pass both only when resizing.
            kwargs = {} if (out_h, out_w) == (height, width) else {"height": out_h, "width": out_w}
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=self.threads, **kwargs)
            num_frames = len(self._reader)
            fps = float(self._reader.get_avg_fps())
            duration = float(self._reader.get_frame_timestamp(num_frames - 1)[1]) if num_frames else 0.0
        except VideoOpenError:
            raise
        except Exception as exc:  # decord raises bare DECORDError/RuntimeError for everything
            raise VideoOpenError(one_line(exc) + _mp4_hint(path)) from exc
        if num_frames <= 0:
            raise VideoOpenError("decord found no frames")
        self.meta = VideoMeta(num_frames=num_frames, fps=fps, duration=duration, height=height, width=width,
                              out_height=out_h, out_width=out_w, rotation=header.rotation, backend=self.name,
                              truncated=_truncation(num_frames, duration, header.declared_frames,
                                                    header.declared_duration))
        return self.meta

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        if self._reader is None or self.meta is None:
            raise RuntimeError("open() a video before read()")
        idx = _check_indices(indices, self.meta.num_frames)
        if not len(idx):
            return np.zeros((0, self.meta.out_height, self.meta.out_width, 3), np.uint8), np.zeros(0)
        try:
            frames = self._reader.get_batch(idx.tolist()).asnumpy()
            timestamps_ms = np.asarray(self._reader.get_frame_timestamp(idx.tolist()), np.float64)[:, 0] * 1000.0
        except Exception as exc:
            raise VideoDecodeError(one_line(exc)) from exc
        # decord silently returns wrong frames when it cannot trust the container's timestamps
        # (e.g. B-frames in AVI); its timestamps are then garbage, which we can see.
        order = np.argsort(idx, kind="stable")
        if (not np.isfinite(timestamps_ms).all() or timestamps_ms.min() < -1.0
                or (np.diff(timestamps_ms[order]) < 0).any()
                or timestamps_ms.max() > 1000.0 * (self.meta.duration + 1.0)):
            raise VideoDecodeError("decord reports invalid frame timestamps (cannot seek this file reliably)")
        if frames.shape[1:3] != (self.meta.out_height, self.meta.out_width):
            raise VideoDecodeError(f"decord returned frames of size {frames.shape[1:3]}, "
                                   f"expected {(self.meta.out_height, self.meta.out_width)}")
        return np.ascontiguousarray(frames, dtype=np.uint8), timestamps_ms

    def close(self) -> None:
        self._reader = None


# --------------------------------------------------------------------------------------------- PyAV

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
            self._keyframes = [0]
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


# --------------------------------------------------------------------------------------------- choice

BACKENDS: dict[str, type[VideoDecoder]] = {"decord": DecordDecoder, "pyav": PyAVDecoder}


def default_backend() -> str:
    """decord where it is installed (faster seeking), else PyAV."""
    return "decord" if decord_available() else "pyav"


def backend_version(name: str) -> str:
    try:
        return BACKENDS[name].version()
    except ImportError:
        return "unavailable"


class FallbackDecoder(VideoDecoder):
    """decord first; on any failure to open or read, PyAV. `name` says which backend served."""

    def __init__(self, threads: int = 1):
        self.threads = threads
        self.active: VideoDecoder | None = None
        self.fallback_reason: str | None = None  # why decord was not used, when it was not
        self._path: str | None = None
        self._size: SizeSpec = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.active.name if self.active is not None else "decord"

    @staticmethod
    def version() -> str:
        return f"decord {backend_version('decord')} / pyav {backend_version('pyav')}"

    def open(self, path: str | Path, size: SizeSpec = None) -> VideoMeta:
        self._path, self._size = str(path), size
        if decord_available():
            primary = DecordDecoder(self.threads)
            try:
                self.meta = primary.open(path, size)
                self.active = primary
                return self.meta
            except VideoOpenError as exc:
                primary.close()
                self.fallback_reason = f"decord open: {exc}"
        else:
            self.fallback_reason = "decord not installed"
        return self._open_pyav()

    def _open_pyav(self) -> VideoMeta:
        self.active = PyAVDecoder(self.threads)
        self.meta = self.active.open(self._path, self._size)
        return self.meta

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        if self.active is None:
            raise RuntimeError("open() a video before read()")
        try:
            return self.active.read(indices)
        except VideoDecodeError as exc:
            if not isinstance(self.active, DecordDecoder):
                raise
            self.active.close()
            self.fallback_reason = f"decord read: {exc}"
            decord_frames = self.meta.num_frames
            self._open_pyav()
            if self.meta.num_frames != decord_frames:
                # The caller sampled indices from decord's count; they mean different frames now.
                raise FrameCountChanged(f"{self.fallback_reason}; PyAV counts {self.meta.num_frames} frames, "
                                       f"decord {decord_frames}: re-sample and read again") from exc
            return self.active.read(indices)

    def close(self) -> None:
        if self.active is not None:
            self.active.close()


def open_video(path: str | Path, backend: str | None = None, fallback: bool = True, size: SizeSpec = None,
               threads: int = 1) -> VideoDecoder:
    """Open `path` with `backend` ("decord" | "pyav"; default: decord when installed) and return the decoder.

    With `fallback` and backend "decord", a file decord cannot open or read is served by PyAV instead;
    the returned decoder's `name` then says "pyav" and `fallback_reason` says why.
    """
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoder {backend!r}; choose from {sorted(BACKENDS)}")
    if backend == "decord" and fallback:
        decoder: VideoDecoder = FallbackDecoder(threads)
    elif backend == "decord" and not decord_available():
        raise VideoOpenError("decord is not installed (wheels exist only for Linux x86_64 and Windows); "
                             "use the pyav decoder")
    else:
        decoder = BACKENDS[backend](threads)
    try:
        decoder.open(path, size)
    except BaseException:
        decoder.close()
        raise
    return decoder
