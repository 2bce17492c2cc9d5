"""Atomic replacement of a small text file, as NFD's features.d needs it.

The new content is written into a fresh temporary *directory* (NFD skips directories while it
reads features.d), synced, made 0644 and then moved over the target with ``os.replace``, so a
reader sees the old file or the new one, never half of either. Shared by the labeler (the
plugin's NFD feature file) and the XPU Manager sidecar.

``write_beside`` is the same for directories whose readers skip hidden files or other suffixes
(CDI's spec dirs read ``*.yaml``/``*.json`` only): a hidden temporary file beside the target.
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


def write_beside(path: str, text: str, *, mode: int | None = 0o644, dir_mode: int = 0o755,
                 prefix: str = ".", fsync: bool = False) -> None:
    """Write ``text`` to a hidden ``<prefix>XXXX.tmp`` file in ``path``'s directory (made
    ``dir_mode`` if missing), set ``mode`` (None keeps mkstemp's 0600), sync it if asked, then move
    it over ``path``; the temporary file never outlives a failure."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=dir_mode, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
