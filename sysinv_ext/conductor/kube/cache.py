"""The conductor's node cache: one LIST, then a WATCH from its resourceVersion, on one thread.

A report looks its node up here (by systemUUID) instead of sending a GET or a LIST, so the
work per report does not grow with the cluster and a flood of reports from unknown hosts
costs the API server nothing. The watch resumes from the last resourceVersion it saw when a
stream ends or breaks; 410 Gone (history compacted) means LIST again; other errors wait a
bounded, doubling back-off. Every node that is new or changed (event, re-LIST, PATCH answer
or the audit's LIST) is passed to ``on_change`` on the watch thread: the manager uses that to
apply labels pending for a host whose node just appeared and to restore a label removed by
hand. ``on_change`` must be quick (the manager hands real work to its own threads).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from oslo_log import log as logging

from sysinv_ext.common import exception
from sysinv_ext.common.memory import release_memory
from sysinv_ext.conductor.kube import KubeClient, Node, WatchExpired

LOG = logging.getLogger(__name__)

WATCH_TIMEOUT = 300  # seconds per WATCH request (the server ends it; we resume at once)
BACKOFF_MIN, BACKOFF_MAX = 0.2, 10.0


class NodeCache:
    """Nodes by systemUUID (lower case) and by name; thread-safe."""

    def __init__(self, client: KubeClient, *, on_change: Callable[[Node], None] | None = None,
                 watch_timeout: int = WATCH_TIMEOUT, backoff_max: float = BACKOFF_MAX) -> None:
        self._client = client
        self._on_change = on_change
        self._watch_timeout = watch_timeout
        self._backoff_max = backoff_max
        self._lock = threading.Lock()
        self._by_uuid: dict[str, Node] = {}
        self._by_name: dict[str, Node] = {}
        self._version = ""
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closer: Callable[[], None] | None = None
        self.lists = 0    # LIST requests sent by the cache (tests, benchmarks)
        self.watches = 0  # WATCH requests sent
        self.events = 0   # events applied

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> NodeCache:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="node-watch", daemon=True)
            self._thread.start()
        return self

    def restart(self) -> NodeCache:
        """Start again after ``stop()`` (``start()`` alone does not: a stopped cache stays
        stopped, so a lazy start cannot undo a stop)."""
        self.stop()
        self._stop.clear()
        self._closer = None
        self._thread = None
        return self.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current request (a WATCH may take until its read times out)."""
        self._stop.set()
        closer = self._closer
        if closer is not None:
            try:
                closer()  # unblock a WATCH waiting for its next event
            except Exception:  # closing a half-dead stream may fail: the thread ends anyway
                LOG.debug("Closing the node watch failed", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def version(self) -> str:
        """resourceVersion of the last LIST or event applied."""
        return self._version

    def wait_synced(self, timeout: float | None = None) -> bool:
        """True once the first LIST is in (at once if it already is)."""
        return self._synced.wait(timeout)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    # -- reads -------------------------------------------------------------------------------
    def get(self, system_uuid: str) -> Node | None:
        with self._lock:
            return self._by_uuid.get(system_uuid)

    def nodes(self) -> list[Node]:
        with self._lock:
            return list(self._by_name.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_name)

    # -- writes ------------------------------------------------------------------------------
    def update(self, node: Node) -> None:
        """A node as the API returned it (PATCH answer): kept unless the cache is newer."""
        if self._apply("MODIFIED", node):
            self._changed([node])

    def merge(self, nodes: Iterable[Node], *, notify: bool = True) -> None:
        """The nodes of a LIST made elsewhere (the audit): each kept unless the cache is newer;
        nodes missing from it are left to the watch (DELETED events)."""
        changed = [node for node in nodes if self._apply("MODIFIED", node)]
        if notify:
            self._changed(changed)

    def _apply(self, kind: str, node: Node) -> bool:
        """Store or drop ``node``; True when the cache changed."""
        with self._lock:
            old = self._by_name.get(node.name)
            if kind == "DELETED":
                if old is None:
                    return False
                del self._by_name[node.name]
                if self._by_uuid.get(old.system_uuid) is old:
                    del self._by_uuid[old.system_uuid]
                return True
            if old is not None and (old == node or not node.newer_than(old)):
                return False
            self._by_name[node.name] = node
            if old is not None and old.system_uuid != node.system_uuid \
                    and self._by_uuid.get(old.system_uuid) is old:
                del self._by_uuid[old.system_uuid]
            if node.system_uuid:
                self._by_uuid[node.system_uuid] = node
            return True

    def _replace(self, nodes: list[Node], version: str) -> list[Node]:
        """The result of our own LIST: the cache becomes exactly this; returns what changed."""
        with self._lock:
            before = self._by_name
            self._by_name = {node.name: node for node in nodes}
            self._by_uuid = {node.system_uuid: node for node in nodes if node.system_uuid}
            self._version = version
        return [node for node in nodes if before.get(node.name) != node]

    def _changed(self, nodes: list[Node]) -> None:
        if self._on_change is None:
            return
        for node in nodes:
            try:
                self._on_change(node)
            except Exception:  # a failing callback must not stop the watch
                LOG.exception("Node change handler failed for node %s", node.name)

    # -- the watch thread --------------------------------------------------------------------
    def _run(self) -> None:
        delay = BACKOFF_MIN
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self.lists += 1
                    nodes, version = self._client.list_nodes_at()
                    changed, count = self._replace(nodes, version), len(nodes)
                    del nodes
                    release_memory()  # the decoded LIST is garbage now
                    self._synced.set()
                    LOG.info("Node cache: %d nodes listed at resourceVersion %s", count, version)
                    self._changed(changed)
                    need_list = False
                started, events = time.monotonic(), self.events
                self._watch()
                if self.events == events and time.monotonic() - started < 1.0:
                    self._stop.wait(delay)  # empty streams ending at once: do not spin
                    delay = min(delay * 2, self._backoff_max)
                else:
                    delay = BACKOFF_MIN  # a stream that ended normally: resume at once
            except WatchExpired as err:
                LOG.info("Node watch from resourceVersion %s expired (%s); listing again",
                         self._version, err)
                need_list = True
            except exception.SysinvExtException as err:  # KubeAPIError: API down, 5xx, drop
                LOG.warning("Node cache: %s; retrying in %.1f s", err, delay)
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self._backoff_max)
            except Exception:  # never let the cache thread die
                LOG.exception("Node cache failed; listing again in %.1f s", delay)
                need_list = True
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self._backoff_max)

    def _watch(self) -> None:
        self.watches += 1
        for kind, node in self._client.watch_nodes(self._version, self._watch_timeout,
                                                   on_open=self._set_closer):
            if self._stop.is_set():
                return
            if node.resource_version:
                self._version = node.resource_version
            self.events += 1
            if self._apply(kind, node) and kind != "DELETED":
                self._changed([node])

    def _set_closer(self, closer: Callable[[], None]) -> None:
        self._closer = closer
        if self._stop.is_set():
            closer()
