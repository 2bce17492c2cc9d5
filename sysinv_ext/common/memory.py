"""Give freed heap memory back to the operating system after a large, short-lived allocation.

Decoding a LIST of 5,000 nodes allocates tens of MB of JSON text and dicts that are freed a
moment later; glibc keeps such memory in its arenas, so the conductor's RSS would stay at its
peak for good. ``release_memory()`` asks glibc to trim (``malloc_trim(0)``); elsewhere (musl,
macOS) it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_memory() -> None:
    """Collect garbage, then return free heap pages to the OS where glibc allows it."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
