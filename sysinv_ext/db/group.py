"""Group commit: reports written at the same moment share one transaction.

When every host reports at once (a controller restart), each report's database write is a
few round trips and about a millisecond of CPU under the conductor's one interpreter lock,
and that, not PostgreSQL, bounds the burst. ``GroupCommit.record`` keeps the contract of
``db.api.host_record`` (the call returns once the report's rows are committed, all of them or
none) while concurrent callers are written together: the first caller writes at once (no
timer, so a lone report waits for nothing); callers arriving meanwhile queue up, and the next
of them writes everything queued as one ``host_record_many`` transaction. If a shared
transaction fails, each of its writes is retried alone, so one bad write fails only its own
caller. Callers must not queue two writes for one host at once (the conductor's per-host
lock guarantees this).
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from sysinv_ext.common import exception
from sysinv_ext.db import api as db_api

MAX_BATCH = 500  # writes per shared transaction


@dataclass(eq=False)
class _Waiter:
    write: db_api.HostWrite
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False       # woken to write the queue (not yet written)
    error: Exception | None = None


class GroupCommit:
    """Thread-safe; one per engine. ``transactions``/``writes`` count what was committed."""

    def __init__(self, engine: db_api.Engine, *, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.max_batch = max(1, max_batch)
        self._lock = threading.Lock()
        self._queue: deque[_Waiter] = deque()
        self._writing = False
        self.transactions = 0
        self.writes = 0

    def record(self, write: db_api.HostWrite) -> None:
        """Record ``write``; returns after its commit, raises DatabaseError if it failed."""
        me = _Waiter(write)
        with self._lock:
            self._queue.append(me)
            lead = not self._writing
            self._writing = True
        if not lead:
            me.wake.wait()
            if not me.lead:  # written by another caller's transaction
                if me.error is not None:
                    raise me.error
                return
        self._write_queued()
        if me.error is not None:
            raise me.error

    def _write_queued(self) -> None:
        """Write up to ``max_batch`` queued writes (the caller's own is first), then hand the
        writing over to the next queued caller, if any."""
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
        try:
            self._write(batch)
        finally:
            with self._lock:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._writing = False
                else:
                    successor.lead = True
            for waiter in batch[1:]:
                waiter.wake.set()
            if successor is not None:
                successor.wake.set()

    def _write(self, batch: list[_Waiter]) -> None:
        try:
            db_api.host_record_many(self.engine, [w.write for w in batch])
            self._count(1, len(batch))
            return
        except exception.DatabaseError as err:
            if len(batch) == 1:
                batch[0].error = err
                return
        except Exception as err:  # a bug must reach every caller, not leave them waiting
            for waiter in batch:
                waiter.error = err
            return
        for waiter in batch:  # the shared transaction failed: find whose write it was
            try:
                db_api.host_record_many(self.engine, [waiter.write])
                self._count(1, 1)
            except Exception as err:
                waiter.error = err

    def _count(self, transactions: int, writes: int) -> None:
        with self._lock:
            self.transactions += transactions
            self.writes += writes
