"""Applying recorded labels to nodes off the report's path: per host in order, coalesced, retried.

A report records what its host wants (database), then asks for that host to be applied and
waits for it at most a bound (``ConductorManager.report_timeout``): with every API request
hanging, a report used to wait for its PATCH and its retries (3 x 5 s) and, behind the per-host
lock, for the PATCHes of earlier reports; 5 of 20 reports timed out at the caller's 30 s
(issue 21 item 15). Now the answer comes within the bound whatever the API does, and the
labels land when the API answers.

``HostApplier`` runs ``apply(host)`` on a bounded pool. Per host there is at most one run at a
time; requests that arrive during a run are all covered by one more run after it. ``apply``
reads the host's latest record, so the node always ends at the last report, in report order,
and a burst of reports of one host costs one PATCH. A run that fails with a retriable error
(the API did not answer) is retried with a doubling back-off (``RETRY_MIN`` to ``RETRY_MAX``)
for at most ``RETRY_FOR`` seconds, or at once when a new request for the host arrives; past
that the periodic audit converges the host. A ``Ticket`` tells a waiting report how its run
ended.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

WORKERS = 16       # hosts applied at once
RETRY_MIN, RETRY_MAX = 0.5, 5.0  # s: back-off between two runs of a host whose run failed
RETRY_FOR = 60.0   # s: a failing host is retried this long; then the audit (every 60 s) owns it


@dataclass(eq=False)
class Ticket:
    """One request; ``done`` is set when a run that started after the request has ended."""

    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: Exception | None = None

    def wait(self, timeout: float | None) -> bool:
        return self.done.wait(timeout)


@dataclass(eq=False)
class _Host:
    waiting: list[Ticket] = field(default_factory=list)  # covered by the next run
    wake: threading.Event = field(default_factory=threading.Event)


class HostApplier:
    """Thread-safe. ``apply(host)`` returns a result or raises; ``retriable`` errors are retried."""

    def __init__(self, apply: Callable[[str], Any], *, retriable: tuple[type[Exception], ...],
                 workers: int = WORKERS, retry_for: float = RETRY_FOR,
                 retry_min: float = RETRY_MIN, retry_max: float = RETRY_MAX) -> None:
        self._apply = apply
        self._retriable = retriable
        self._retry_for, self._retry_min, self._retry_max = retry_for, retry_min, retry_max
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="label-apply")
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}  # hosts with a run queued or running
        self._closed = threading.Event()

    def request(self, host: str) -> Ticket:
        """Apply ``host`` (again) soon; the ticket is done once a run covering it has ended."""
        ticket = Ticket()
        with self._lock:
            if self._closed.is_set():
                ticket.error = RuntimeError("closing")
                ticket.done.set()
                return ticket
            state = self._hosts.get(host)
            if state is None:
                state = self._hosts[host] = _Host()
                state.waiting.append(ticket)
                try:
                    self._pool.submit(self._run, host, state)
                except RuntimeError:  # pool shut down meanwhile
                    del self._hosts[host]
                    ticket.error = RuntimeError("closing")
                    ticket.done.set()
                return ticket
            state.waiting.append(ticket)
            state.wake.set()  # a run sleeping before its retry goes at once
        return ticket

    def busy(self, host: str | None = None) -> bool:
        """Whether ``host`` (any host, when None) has a run queued, running or waiting to retry."""
        with self._lock:
            return bool(self._hosts) if host is None else host in self._hosts

    def close(self) -> None:
        """Stop retrying; queued runs end without running; waiting tickets get an error."""
        with self._lock:
            self._closed.set()
            states = list(self._hosts.values())
        for state in states:
            state.wake.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for state in states:
            for ticket in state.waiting:
                if ticket.error is None and not ticket.done.is_set():
                    ticket.error = RuntimeError("closing")
                ticket.done.set()

    def _run(self, host: str, state: _Host) -> None:
        delay, failing_since, retry = self._retry_min, None, False
        while True:
            with self._lock:
                tickets, state.waiting = state.waiting, []
                state.wake.clear()
                if self._closed.is_set() or (not tickets and not retry):
                    del self._hosts[host]
                    for ticket in tickets:
                        ticket.error = ticket.error or RuntimeError("closing")
                        ticket.done.set()
                    return
            result, error = None, None
            try:
                result = self._apply(host)
            except Exception as err:  # handed to every waiting report; logged by retry below
                error = err
            for ticket in tickets:
                ticket.result, ticket.error = result, error
                ticket.done.set()
            retry = isinstance(error, self._retriable)
            if not retry:
                delay, failing_since = self._retry_min, None
                continue
            now = time.monotonic()
            failing_since = failing_since if failing_since is not None else now
            if now - failing_since > self._retry_for:
                LOG.warning("Labels of host %s not applied for %.0f s (%s); the audit retries",
                            host, now - failing_since, error)
                retry, delay, failing_since = False, self._retry_min, None
                continue
            state.wake.wait(delay)  # a new request for the host, or close(), ends the wait
            delay = min(delay * 2, self._retry_max)
