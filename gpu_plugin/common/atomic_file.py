"""Atomic replacement of a small text file, as NFD's features.d needs it.

The new content is written into a fresh temporary *directory* (NFD skips directories while it
reads features.d), synced, made 0644 and then moved over the target with ``os.replace``, so a
reader sees the old file or the new one, never half of either. Shared by the labeler (the
plugin's NFD feature file) and the XPU Manager sidecar.
"""
from __future__ import annotations

import os
import shutil
import tempfile


def replace_file(path: str, text: str, *, tmp_dir: str, prefix: str, name: str) -> None:
    """Write ``text`` to ``tmp_dir/<prefix>XXXX/name``, then move it over ``path``."""
    work = tempfile.mkdtemp(prefix=prefix, dir=tmp_dir)
    try:
        tmp = os.path.join(work, name)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
