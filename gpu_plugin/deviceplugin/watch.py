"""Watch one directory for files appearing and disappearing (kubelet's device-plugins dir).

Uses Linux inotify through ctypes (libc ``inotify_init1``/``inotify_add_watch``), so a
plugin notices at once when kubelet wipes its socket or re-creates ``kubelet.sock``.
Where inotify is unavailable it falls back to polling the directory listing.
"""
from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import threading
import time
from pathlib import Path

LOG = logging.getLogger(__name__)

IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_MASK = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF
_EVENT = struct.Struct("iIII")

#: Name reported when the whole directory must be re-checked (overflow, dir replaced, polling).
ANY = ""


def _load_libc() -> ctypes.CDLL | None:
    """glibc's soname first: ``ctypes.util.find_library`` runs ``ldconfig -p`` in a subprocess
    (about 40 ms on the plugin's way to its first registration) and its module imports shutil,
    tempfile, bz2 and lzma (~0.7 MB of idle RSS); it is the fallback only."""
    for name in ("libc.so.6", None):
        try:
            if name is None:
                from ctypes.util import find_library

                name = find_library("c") or "libc.so.6"
            libc = ctypes.CDLL(name, use_errno=True)
            libc.inotify_init1.argtypes = [ctypes.c_int]
            libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            return libc
        except (OSError, AttributeError):
            continue
    return None


class DirWatcher:
    """Reports names of entries created, deleted or moved in ``directory``.

    ``wait(timeout)`` blocks until something changed, ``wake()`` was called or the
    timeout passed, and returns the set of changed entry names (``ANY`` = unknown,
    re-check everything; empty set = timeout or wake).  Not thread-safe except for
    ``wake()``, which any thread may call.
    """

    def __init__(self, directory: str | os.PathLike[str], *, poll_interval: float = 0.5,
                 use_inotify: bool = True) -> None:
        self.directory = Path(directory)
        self.poll_interval = poll_interval
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()
        self._closed = False
        self._fd = -1
        self._wd = -1
        self._libc = _load_libc() if use_inotify else None
        if self._libc is not None:
            fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                LOG.warning("%s: inotify unavailable (%s), polling every %.1f s", self.directory,
                            os.strerror(ctypes.get_errno()), poll_interval)
            else:
                self._fd = fd
                self._add_watch()
        self._listing = self._snapshot()

    @property
    def uses_inotify(self) -> bool:
        """True while changes are delivered by inotify rather than polling."""
        return self._fd >= 0 and self._wd >= 0

    def _add_watch(self) -> None:
        assert self._libc is not None
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(self.directory), _MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err != errno.ENOENT:
                LOG.warning("%s: inotify_add_watch failed (%s), polling", self.directory, os.strerror(err))
            self._wd = -1
        else:
            self._wd = wd

    def _snapshot(self) -> dict[str, tuple[int, int]]:
        try:
            with os.scandir(self.directory) as entries:
                result = {}
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    result[entry.name] = (st.st_ino, st.st_ctime_ns)
                return result
        except OSError:
            return {}

    def _poll_diff(self) -> set[str]:
        new = self._snapshot()
        old = self._listing
        self._listing = new
        return {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}

    def wake(self) -> None:
        """Make a pending or the next ``wait()`` return at once."""
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except (BlockingIOError, OSError):
            pass

    def wait(self, timeout: float | None) -> set[str]:
        """Block up to ``timeout`` seconds (None = forever) for changes; return changed names."""
        if self._fd >= 0 and self._wd < 0 and self.directory.is_dir():
            self._add_watch()
            if self._wd >= 0:
                return {ANY}
        if not self.uses_inotify:
            return self._wait_polling(timeout)
        ready, _, _ = select.select([self._fd, self._wake_r], [], [], timeout)
        if self._wake_r in ready:
            self._drain_wake()
        if self._fd not in ready:
            return set()
        return self._read_events()

    def _wait_polling(self, timeout: float | None) -> set[str]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = self.poll_interval
            if deadline is not None:
                step = max(0.0, min(step, deadline - time.monotonic()))
            ready, _, _ = select.select([self._wake_r], [], [], step)
            changed = self._poll_diff()
            if ready:
                self._drain_wake()
                return changed
            if changed:
                return changed
            if deadline is not None and time.monotonic() >= deadline:
                return set()
            if self._fd >= 0 and self._wd < 0 and self.directory.is_dir():
                return {ANY}  # directory is back: the caller's next wait() re-adds the watch

    def _read_events(self) -> set[str]:
        names: set[str] = set()
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return names
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size: offset + _EVENT.size + length]
            offset += _EVENT.size + length
            if mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                names.add(ANY)
                if mask & IN_IGNORED:
                    self._wd = -1
                continue
            names.add(os.fsdecode(raw.rstrip(b"\0")))
        if ANY in names:
            self._listing = self._snapshot()
        return names

    def close(self) -> None:
        """Release the inotify descriptor and the wake pipe."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._fd, self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._fd = -1


def file_identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(inode, ctime ns) of ``path`` without following links, None when it does not exist.

    A file deleted and created again (kubelet restart) gets a new identity even when the
    filesystem reuses the inode number.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_ino, st.st_ctime_ns


class Backoff:
    """Capped exponential backoff: ``initial``, 2×, 4×, … up to ``maximum`` seconds."""

    def __init__(self, initial: float = 0.1, maximum: float = 5.0) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"bad backoff {initial}..{maximum}")
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        """The delay to wait now; the following one doubles (capped)."""
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.initial
