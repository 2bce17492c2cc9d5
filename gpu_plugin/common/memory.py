"""Keep a long-running process's idle RSS low: glibc malloc settings and trimming.

The GPU plugin runs on every GPU node, mostly idle, under a 90 Mi limit. glibc gives each thread
that allocates its own malloc arena (up to 8 per core), and keeps freed memory of a burst (the
start-up scan, a big device-list update) in them. :func:`limit_arenas` caps the arenas before
the threads start; :func:`release_free_memory` hands freed pages back to the kernel
(``malloc_trim``) after a burst. Measured on the plugin idle with 2 GPUs: about 1 MB less RSS.
Both are no-ops where libc is not glibc. Through ctypes: Python has no binding for either.
"""
from __future__ import annotations

import ctypes
import logging

__all__ = ["limit_arenas", "release_free_memory"]

LOG = logging.getLogger(__name__)
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


def limit_arenas(count: int) -> bool:
    """At most ``count`` malloc arenas (call before threads start); False if not glibc."""
    return bool(_LIBC is not None and _LIBC.mallopt(_M_ARENA_MAX, count))


def release_free_memory() -> bool:
    """Return free heap pages to the kernel; True if glibc released something."""
    if _LIBC is None:
        return False
    released = bool(_LIBC.malloc_trim(0))
    LOG.debug("malloc_trim: %s", "memory released" if released else "nothing to release")
    return released
