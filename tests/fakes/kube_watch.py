"""Watch support of the emulated Kubernetes API server (tests/fakes/kube_api.py).

``EventLog`` keeps the recent changes of every object (ADDED / MODIFIED / DELETED, each with the
store's resourceVersion) so a ``?watch=true&resourceVersion=N`` request can be answered with
the events after N, then streamed live. Like the real server: a version older than the kept
history gets an ERROR event with a 410 Status ("too old resource version") inside a 200
stream; ``compact()`` forgets the history on demand (what etcd compaction does). Watches end
after ``timeoutSeconds``. EMULATED: no bookmarks, no label/field selectors on watches, no
``sendInitialEvents``. Objects are stored by reference: the store never mutates a saved object.
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

    def drop_watches(self) -> None:
        """End every open watch stream (as when an API server instance goes away)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def follow(self, since: int, match: Callable[[Key], bool], deadline: float) -> Iterator[Event | None]:
        """Events after ``since`` matching ``match``, until ``deadline`` (monotonic) or a drop.

        Yields None once when ``since`` is older than the history (the caller sends 410).
        """
        with self._cond:
            generation = self._generation
            if since < self._oldest:
                yield None
                return
        last = since
        while True:
            with self._cond:
                start = bisect.bisect_right(self._events, last, key=lambda e: e.revision)
                batch = [e for e in self._events[start:] if match(e.key)]
                if self._events:
                    last = max(last, self._events[-1].revision)
                if not batch:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or generation != self._generation:
                        return
                    self._cond.wait(min(remaining, 0.5))
                    continue
            yield from batch
            with self._cond:
                if generation != self._generation:
                    return


def event_line(event: Event) -> bytes:
    """One watch event as the API server streams it: a JSON object and a newline."""
    return json.dumps({"type": event.kind, "object": event.obj}).encode() + b"\n"


def gone_line(since: int) -> bytes:
    status = status_body(410, f"too old resource version: {since}", "Expired")
    return json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"
