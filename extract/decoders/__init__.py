"""Video decoders: read a few sampled frames of a video, resized in the decoder, with real timestamps.

One module per backend behind one interface (`base.VideoDecoder`): `decord` (fast batched seeking,
Linux x86_64 and Windows wheels only, unmaintained) and `pyav` (everywhere). `fallback` holds the
policy for a video a backend cannot serve; `probe` what every backend learns before decoding.

Adding a backend: a module with a `VideoDecoder` subclass, plus its line in `BACKENDS` (backends.py).
"""
from __future__ import annotations

from pathlib import Path

from cmdcl.core.errors import one_line
from .base import (FrameCountChanged, SizeSpec, VideoDecodeError, VideoDecoder, VideoMeta,
                   VideoOpenError)
from .backends import BACKENDS, backend_available, backend_version, make_decoder
from .decord import DecordDecoder, decord_available
from .fallback import FALLBACK_ORDER, FallbackDecoder, SampledRead, fallback_order
from .nvdec import NvdecDecoder
from .pyav import PyAVDecoder


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "DEFAULT_BY_CONTAINER", "FALLBACK_ORDER", "DecordDecoder", "FallbackDecoder", "FrameCountChanged", "PyAVDecoder",
           "SampledRead", "SizeSpec", "VideoDecodeError", "VideoDecoder", "VideoMeta", "VideoOpenError",
           "backend_available", "backend_version", "decord_available", "default_backend", "fallback_decoder", "fallback_order",
           "make_decoder", "one_line", "open_video"]


# The fastest correct backend per container (file suffix), measured per decode worker with
# benchmarks/decoder_choice.py (docs/BENCHMARKS.md, "Decoder per container"). PyAV, with its packet
# index and the non-reference-frame skip, beat or tied decord on mp4, mov, mkv and webm. AVI has no
# presentation times, so PyAV decodes it front to back while decord seeks: decord is faster there (its
# misreads of B-frame AVIs show as invalid timestamps and those videos fall back to PyAV). A container
# not listed, or a backend not installed, gets PyAV.
DEFAULT_BY_CONTAINER: dict[str, str] = {"mp4": "pyav", "m4v": "pyav", "mov": "pyav", "mkv": "pyav",
                                        "webm": "pyav", "avi": "decord"}
DEFAULT_BACKEND = "pyav"


def default_backend(path: str | Path | None = None) -> str:
    """The backend for `path`'s container by `DEFAULT_BY_CONTAINER` (without a path: for a container not
    listed), or PyAV when that backend is not installed."""
    suffix = Path(path).suffix.lower().lstrip(".") if path is not None else ""
    backend = DEFAULT_BY_CONTAINER.get(suffix, DEFAULT_BACKEND)
    return backend if backend_available(backend) else "pyav"


def fallback_decoder(backend: str | None, fallback: bool = True, threads: int = 1,
                     path: str | Path | None = None) -> FallbackDecoder:
    """An unopened decoder for `backend` (None: `default_backend(path)`); with `fallback`, one that hands a video it cannot serve on to the
    backends after it (`fallback.FALLBACK_ORDER`). Its `read_sampled` also salvages partly broken videos."""
    backend = backend or default_backend(path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoder {backend!r}; choose from {sorted(BACKENDS)}")
    order = fallback_order(backend) if fallback else [backend]
    if len(order) == 1 and not backend_available(backend):
        raise VideoOpenError(f"{backend} is not installed"
                             + (" (wheels exist only for Linux x86_64 and Windows); use the pyav decoder"
                                if backend == "decord" else ""))
    return FallbackDecoder(threads, order)


def open_video(path: str | Path, backend: str | None = None, fallback: bool = True, size: SizeSpec = None,
               threads: int = 1) -> VideoDecoder:
    """Open `path` with `backend` (a `BACKENDS` name; default: `default_backend(path)`) and return the decoder.

    With `fallback`, a file the backend cannot open or read is served by the next backend of
    `FALLBACK_ORDER` instead; the returned decoder's `name` then says which, and `fallback_reason` why.
    """
    backend = backend or default_backend(path)
    decoder: VideoDecoder = fallback_decoder(backend, fallback, threads)
    if len(decoder.order) == 1:  # nothing to fall back to: the backend itself
        decoder = make_decoder(backend, threads)
    try:
        decoder.open(path, size)
    except BaseException:
        decoder.close()
        raise
    return decoder
