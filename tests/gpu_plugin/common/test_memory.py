"""common/memory.py: glibc's malloc knobs through ctypes (the plugin's idle RSS, issue 21 item 5)."""
from __future__ import annotations

import gc
import platform

import pytest

from gpu_plugin.common import memory

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="glibc only (elsewhere both are no-ops)")
def test_freed_heap_memory_is_handed_back() -> None:
    blocks = [bytes(2000) + bytes([i % 251]) for i in range(20_000)]  # ~40 MB from malloc's heap
    del blocks
    gc.collect()
    assert memory.release_free_memory() is True


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_arena_limit_is_accepted() -> None:
    assert memory.limit_arenas(2) is True
