"""Caller input made safe to log or send back: bounded text, a nesting check, per-cause log limits.

Anything an RPC caller sends (a method name, a request_id, a payload entry) may be megabytes
long or nested a thousand deep; ``repr`` or ``%s`` of it then makes a line as large (or raises
RecursionError). ``short`` is ``reprlib`` with string limits, so the cost is bounded whatever the
input; ``too_deep`` walks iteratively (no recursion) and stops at the limit. ``CauseLimiter``
lets each kind of rejection log a few lines per period and counts the rest, so one caller
cannot flood the log. Knows nothing of transports or payloads.
"""
from __future__ import annotations

import reprlib
import threading
import time
from collections.abc import Mapping
from typing import Any

TEXT_LIMIT = 120  # characters of one caller-supplied value in a log line or an error reply
MAX_DEPTH = 32  # containers inside containers: a real request is under 8 deep

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = TEXT_LIMIT
_REPR.maxother = TEXT_LIMIT
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def short(value: object, limit: int = TEXT_LIMIT) -> str:
    """``value`` in one line of about ``limit`` characters at most: a printable string as
    itself (cut, with its length), control characters escaped, anything else as a bounded repr
    (no recursion, whatever the nesting)."""
    if isinstance(value, str):
        cut = value[:limit]
        text = cut if cut.isprintable() else repr(cut)[1:-1]  # one line, whatever it holds
        return text if len(value) <= limit else f"{text}... ({len(value)} chars)"
    if isinstance(value, (bytes, bytearray)):
        text = repr(bytes(value[:limit]))
        return text if len(value) <= limit else f"{text}... ({len(value)} bytes)"
    text = _REPR.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """True if ``value`` holds lists/tuples/maps nested more than ``limit`` levels deep.

    Iterative, and stops at the first branch over the limit: safe on any decoded payload."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = list(item.keys()) + list(item.values())
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (Mapping, list, tuple)))
    return False


class CauseLimiter:
    """At most ``burst`` log lines per ``period`` seconds for each cause (a short fixed string).

    ``allow(cause)`` -> (log it?, lines held back for that cause since its last line). The
    causes are a fixed set chosen by the code, never caller input, so the map stays small.
    """

    def __init__(self, burst: int = 5, period: float = 60.0) -> None:
        self.burst, self.period = burst, period
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, int]] = {}  # cause -> (start, lines, held)

    def allow(self, cause: str) -> tuple[bool, int]:
        now = time.monotonic()
        with self._lock:
            start, lines, held = self._windows.get(cause, (now, 0, 0))
            if now - start > self.period:
                start, lines = now, 0
            if lines >= self.burst:
                self._windows[cause] = (start, lines, held + 1)
                return False, 0
            self._windows[cause] = (start, lines + 1, 0)
            return True, held


def held_note(held: int) -> str:
    """`` (N similar lines held back)`` for a line that follows suppressed ones, else ''."""
    return f" ({held} similar line(s) held back)" if held else ""
