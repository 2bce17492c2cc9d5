"""Watch support of the emulated Kubernetes API server (tests/fakes/kube_api.py).

``EventLog`` keeps the recent changes of every object (ADDED / MODIFIED / DELETED, each with the
store's resourceVersion) so a ``?watch=true&resourceVersion=N`` request can be answered with
the events after N, then streamed live. Like the real server: a version older than the kept
history gets an ERROR event with a 410 Status ("too old resource version") inside a 200
stream; ``compact()`` forgets the history on demand (what etcd compaction does). Watches end
after ``timeoutSeconds``. With ``allowWatchBookmarks`` a BOOKMARK (the kind's apiVersion/kind and
only ``metadata.resourceVersion``, the latest revision) comes when kube-apiserver v1.34.1's
watch cache sends one: 2 s before the watch's timeout (none when ``timeoutSeconds`` <= 2) and
about every minute. EMULATED: no label/field selectors on watches, no ``sendInitialEvents``.
Objects are stored by reference: the store never mutates a saved object.
"""
from __future__ import annotations

import bisect
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tests.fakes.kube_semantics import Key, Obj, status_body

DEFAULT_HISTORY = 50_000  # events kept; older versions get 410 Gone
BOOKMARK_EVERY = 60.0  # s between two bookmarks of a watch without a near timeout (the cacher's)
BOOKMARK_BEFORE_TIMEOUT = 2.0  # s: the last bookmark comes this long before the watch's timeout


@dataclass(frozen=True)
class Bookmark:
    """A BOOKMARK to send: the revision the watch has reached."""

    revision: int


@dataclass(frozen=True)
class Event:
    revision: int
    kind: str      # ADDED, MODIFIED, DELETED
    key: Key
    obj: Obj


class EventLog:
    """Thread-safe recent history of changes; watchers wait on it for new events."""

    def __init__(self, history: int = DEFAULT_HISTORY) -> None:
        self._cond = threading.Condition()
        self._history = history
        self._events: list[Event] = []  # increasing revisions
        self._oldest = 0  # watches from a version below this are too old
        self._generation = 0

    def append(self, revision: int, kind: str, key: Key, obj: Obj) -> None:
        with self._cond:
            self._events.append(Event(revision, kind, key, obj))
            if len(self._events) > 2 * self._history:
                self._trim(len(self._events) - self._history)
            self._cond.notify_all()

    def _trim(self, count: int) -> None:
        self._oldest = max(self._oldest, self._events[count - 1].revision)
        del self._events[:count]

    def compact(self, revision: int) -> None:
        """Forget every event up to ``revision``: watches from older versions get 410."""
        with self._cond:
            count = bisect.bisect_right(self._events, revision, key=lambda e: e.revision)
            del self._events[:count]
            self._oldest = max(self._oldest, revision)

    @property
    def oldest(self) -> int:
        """The oldest version a watch may start from (older ones get 410)."""
        with self._cond:
            return self._oldest

    def drop_watches(self) -> None:
        """End every open watch stream (as when an API server instance goes away)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def follow(self, since: int, match: Callable[[Key], bool], deadline: float,
               bookmarks: bool = False) -> Iterator[Event | Bookmark | None]:
        """Events after ``since`` matching ``match``, until ``deadline`` (monotonic) or a drop;
        with ``bookmarks``, a Bookmark when the real server's watch cache would send one.

        Yields None once when ``since`` is older than the history (the caller sends 410).
        """
        with self._cond:
            generation = self._generation
            if since < self._oldest:
                yield None
                return
        last = since
        now = time.monotonic()
        next_bookmark = min(now + BOOKMARK_EVERY, deadline - BOOKMARK_BEFORE_TIMEOUT) \
            if bookmarks else float("inf")
        if next_bookmark <= now:
            next_bookmark = float("inf")
        while True:
            with self._cond:
                start = bisect.bisect_right(self._events, last, key=lambda e: e.revision)
                batch: list[Event | Bookmark] = [e for e in self._events[start:] if match(e.key)]
                if self._events:
                    last = max(last, self._events[-1].revision)
                now = time.monotonic()
                if now >= next_bookmark:
                    batch.append(Bookmark(last))
                    following = min(now + BOOKMARK_EVERY, deadline - BOOKMARK_BEFORE_TIMEOUT)
                    next_bookmark = following if following > now else float("inf")
                if not batch:
                    remaining = deadline - now
                    if remaining <= 0 or generation != self._generation:
                        return
                    self._cond.wait(max(0.0, min(remaining, next_bookmark - now, 0.5)))
                    continue
            yield from batch
            with self._cond:
                if generation != self._generation:
                    return


def event_line(event: Event) -> bytes:
    """One watch event as the API server streams it: a JSON object and a newline."""
    return json.dumps({"type": event.kind, "object": event.obj}).encode() + b"\n"


def bookmark_line(bookmark: Bookmark, api_version: str, kind: str) -> bytes:
    """A BOOKMARK event: an object of the watched kind holding only its resourceVersion."""
    obj = {"kind": kind, "apiVersion": api_version,
           "metadata": {"resourceVersion": str(bookmark.revision)}}
    return json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n"


def gone_line(since: int, oldest: int) -> bytes:
    """The ERROR event of a watch from a version older than the history (kube-apiserver's
    watch cache names the oldest version it still has in parentheses)."""
    status = status_body(410, f"too old resource version: {since} ({oldest})", "Expired")
    return json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"
