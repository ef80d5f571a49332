"""The backend table: `--decoder` name -> backend class, and the questions asked of it.

A module of its own so that the fallback policy (fallback.py) can reach the table without importing the
package that imports it.
"""
from __future__ import annotations

from .base import VideoDecoder
from .decord import DecordDecoder
from .nvdec import NvdecDecoder
from .pyav import PyAVDecoder

BACKENDS: dict[str, type[VideoDecoder]] = {"decord": DecordDecoder, "pyav": PyAVDecoder, "nvdec": NvdecDecoder}


def backend_available(name: str) -> bool:
    return BACKENDS[name].available()


def backend_version(name: str) -> str:
    try:
        return BACKENDS[name].version()
    except ImportError:
        return "unavailable"


def make_decoder(name: str, threads: int = 1) -> VideoDecoder:
    """A fresh, unopened decoder of backend `name`."""
    if name not in BACKENDS:
        raise ValueError(f"unknown decoder {name!r}; choose from {sorted(BACKENDS)}")
    return BACKENDS[name](threads)
