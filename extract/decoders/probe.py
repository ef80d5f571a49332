"""What can be learnt about a video file before decoding it: file checks, container header, rotation,
truncation, and why an MP4 does not open. Shared by every backend."""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from .base import VideoOpenError

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


