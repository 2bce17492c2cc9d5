"""Give freed heap memory back to the operating system after a large, short-lived allocation.

Decoding a LIST of 5,000 nodes allocates tens of MB of JSON text and dicts that are freed a
moment later; glibc keeps such memory in its arenas, so the conductor's RSS would stay at its
peak for good. ``release_memory()`` asks glibc to trim (``malloc_trim(0)``); elsewhere (musl,
macOS) it does nothing. ``limit_arenas()`` caps glibc's malloc arenas (``mallopt(M_ARENA_MAX)``,
what ``MALLOC_ARENA_MAX`` does): by default each of the conductor's RPC worker threads may get
an arena of its own (up to 8 per core), each keeping freed memory; two arenas cost no
measurable speed here and keep the active conductor's RSS lower. An explicit
``MALLOC_ARENA_MAX`` in the environment wins.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
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


M_ARENA_MAX = -8  # glibc's <malloc.h>


def limit_arenas(count: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``count`` unless ``MALLOC_ARENA_MAX`` is set; True if set."""
    libc = _libc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_ARENA_MAX, count))
