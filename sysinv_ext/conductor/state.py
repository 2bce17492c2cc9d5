"""What the conductor wants on each node, kept in memory and written through to the database.

``DesiredState`` mirrors the ``label``/``host`` tables (loaded when a conductor becomes active)
so that a report whose state did not change costs no database access at all, and one that
did change is written in exactly one transaction (shared with reports written at the same
moment: ``db.group.GroupCommit``). Removals are recorded too (value None): the audit
then converges both ways after a crash between the database write and the PATCH. Hosts whose
node was never seen are pending: capped in number and expired after a TTL, so random host
uuids cannot grow the database for ever. ``HostLocks`` orders the work of one host (reports,
watch events, audit PATCHes) while different hosts run concurrently. ``LogLimiter`` turns a
flood of one kind of line into a few lines and a count.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from sysinv_ext.db import api as db_api
from sysinv_ext.db.group import GroupCommit

Desired = Mapping[str, "str | None"]


@dataclass(frozen=True)
class HostEntry:
    """One host's recorded state: desired labels (None = absent), node seen, last report."""

    labels: Mapping[str, str | None] = field(default_factory=dict)
    seen: bool = False
    reported_at: float = 0.0  # time.time()
    version: int = 0          # bumped by every change made through this mirror


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class HostLocks:
    """One lock per host, created on demand and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._slots: dict[str, _Slot] = {}

    @contextmanager
    def hold(self, host: str, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock of ``host``; with ``timeout``, TimeoutError if not had by then."""
        with self._mutex:
            slot = self._slots.setdefault(host, _Slot())
            slot.users += 1
        try:
            if not slot.lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
                raise TimeoutError(f"lock of host {host} busy")
            try:
                yield
            finally:
                slot.lock.release()
        finally:
            with self._mutex:
                slot.users -= 1
                if slot.users == 0:
                    del self._slots[host]


class DesiredState:
    """The mirror. Callers hold the host's lock around ``record``/``mark_seen`` of that host."""

    def __init__(self, engine: db_api.Engine, *, pending_ttl: float, pending_limit: int,
                 refresh_every: float = 3600.0) -> None:
        self.engine = engine
        self.writer = GroupCommit(engine)  # concurrent reports share a transaction
        self.pending_ttl = pending_ttl
        self.pending_limit = pending_limit
        self._refresh_every = min(refresh_every, pending_ttl / 10)
        self._hosts: dict[str, HostEntry] = {}
        self._loaded = False
        self._lock = threading.Lock()

    def load(self) -> int:
        """(Re)read everything from the database (at activation: the peer may have written)."""
        states = db_api.host_state_get_all(self.engine)
        with self._lock:
            self._hosts = {uuid: HostEntry(dict(s.labels), s.seen, s.reported_at.timestamp())
                           for uuid, s in states.items()}
            self._loaded = True
        return len(states)

    def ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()

    def get(self, host: str) -> HostEntry | None:
        return self._hosts.get(host)

    def hosts(self) -> dict[str, HostEntry]:
        with self._lock:
            return dict(self._hosts)

    def pending(self) -> int:
        return sum(1 for entry in self.hosts().values() if not entry.seen)

    def record(self, host: str, desired: Desired, *, seen: bool) -> str:
        """Record a report: "unchanged" (nothing written), "written", or "refused" (a new
        pending host beyond ``pending_limit``: answered, not recorded)."""
        now = time.time()
        entry = self._hosts.get(host)
        if entry is None and not seen and self.pending() >= self.pending_limit:
            return "refused"
        old = entry.labels if entry is not None else {}
        changes = {k: v for k, v in desired.items() if k not in old or old[k] != v}
        becomes_seen = seen and (entry is None or not entry.seen)
        refresh = not seen and (entry is None or now - entry.reported_at > self._refresh_every)
        if entry is not None and not changes and not becomes_seen and not refresh:
            return "unchanged"
        self.writer.record(db_api.HostWrite(
            host, changes, seen=seen,
            reported_at=datetime.fromtimestamp(now, timezone.utc) if refresh or entry is None
            else None))
        base = entry or HostEntry(reported_at=now)
        self._hosts[host] = replace(base, labels={**old, **changes},
                                    seen=base.seen or seen, version=base.version + 1,
                                    reported_at=now if refresh else base.reported_at)
        return "written"

    def refresh(self) -> int:
        """Re-read the database (each audit: rows written by a peer or by hand count too);
        a host changed through this mirror while reading keeps its newer entry. Returns how
        many entries were replaced."""
        before = {host: entry.version for host, entry in self.hosts().items()}
        states = db_api.host_state_get_all(self.engine)
        replaced = 0
        with self._lock:
            for uuid, st in states.items():
                entry = self._hosts.get(uuid)
                fresh = HostEntry(dict(st.labels), st.seen, st.reported_at.timestamp(),
                                  version=entry.version + 1 if entry else 0)
                if entry is None or (entry.version == before.get(uuid) and (
                        dict(entry.labels) != fresh.labels or entry.seen != fresh.seen
                        or abs(entry.reported_at - fresh.reported_at) > 1.0)):
                    self._hosts[uuid] = fresh
                    replaced += 1
            self._loaded = True
        return replaced

    def mark_seen(self, host: str) -> None:
        entry = self._hosts.get(host)
        if entry is not None and not entry.seen:
            db_api.host_mark_seen(self.engine, host)
            self._hosts[host] = replace(entry, seen=True, version=entry.version + 1)

    def drop_keys(self, host: str, keys: set[str]) -> None:
        """Forget records of plugins no longer enabled (the node is not touched)."""
        entry = self._hosts.get(host)
        if entry is None:
            return
        for key in keys:
            db_api.label_delete(self.engine, host, key)
        self._hosts[host] = replace(entry, labels={k: v for k, v in entry.labels.items()
                                                   if k not in keys}, version=entry.version + 1)

    def revalue(self, host: str, values: Mapping[str, str]) -> None:
        """The enabled value of a key changed: present records take the new value."""
        entry = self._hosts.get(host)
        if entry is None:
            return
        db_api.host_record(self.engine, host, values, seen=entry.seen)
        self._hosts[host] = replace(entry, labels={**entry.labels, **values},
                                    version=entry.version + 1)

    def expire(self) -> list[str]:
        """Forget pending hosts whose last report is older than the TTL."""
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=self.pending_ttl)
        if not any(not e.seen and e.reported_at < cutoff.timestamp() for e in self.hosts().values()):
            return []
        gone = db_api.host_expire(self.engine, cutoff)
        with self._lock:
            for host in gone:
                self._hosts.pop(host, None)
        return gone


class LogLimiter:
    """At most ``burst`` lines per ``period`` seconds for one kind of message."""

    def __init__(self, burst: int = 10, period: float = 60.0) -> None:
        self.burst, self.period = burst, period
        self._lock = threading.Lock()
        self._window = 0.0
        self._count = 0
        self.suppressed = 0

    def allow(self) -> tuple[bool, int]:
        """(log this line?, lines suppressed since the last allowed one)."""
        now = time.monotonic()
        with self._lock:
            if now - self._window > self.period:
                self._window, self._count = now, 0
            self._count += 1
            if self._count > self.burst:
                self.suppressed += 1
                return False, 0
            skipped, self.suppressed = self.suppressed, 0
            return True, skipped
