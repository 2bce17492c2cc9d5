"""Runs a plugin's scanner and keeps one device-plugin server per resource type.

The scanner sends whole :data:`~gpu_plugin.deviceplugin.api.DeviceTree` snapshots to
``Manager.notify``; the manager diffs each against the last one, starts a server for a type
that gained devices, updates changed types and stops a type whose devices are all gone.
A scanner failure is reported to the thread running ``Manager.run`` (no exit from threads).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpu_plugin.deviceplugin import api
from gpu_plugin.deviceplugin.metrics import FrameworkMetrics

LOG = logging.getLogger(__name__)


class ResourceServer(Protocol):
    """What the manager needs of a per-resource server (``server.DevicePluginServer``)."""

    def update(self, devices: Mapping[api.DeviceID, api.DeviceInfo]) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


#: ``factory(namespace, resource_type, kubelet_dir, *, kubelet_socket, preferred_allocator, allocator)``
#: (plus ``metrics=`` a ResourceMetrics when the manager was given metrics)
ServerFactory = Callable[..., ResourceServer]


@dataclass(frozen=True)
class TreeDiff:
    """Resource types added (with devices), updated (devices changed) and removed (no devices left)."""

    added: api.DeviceTree = field(default_factory=dict)
    updated: api.DeviceTree = field(default_factory=dict)
    removed: frozenset[api.ResourceType] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def diff_trees(old: api.DeviceTree, new: api.DeviceTree) -> TreeDiff:
    """Compare two snapshots; a type with an empty device map counts as absent."""
    old = {k: v for k, v in old.items() if v}
    new = {k: v for k, v in new.items() if v}
    added = {k: dict(v) for k, v in new.items() if k not in old}
    updated = {k: dict(v) for k, v in new.items() if k in old and old[k] != v}
    removed = frozenset(k for k in old if k not in new)
    return TreeDiff(added, updated, removed)


def _default_factory(namespace: str, resource_type: str, kubelet_dir: str | os.PathLike[str],
                     **kwargs: Any) -> ResourceServer:
    from gpu_plugin.deviceplugin.server import DevicePluginServer
    return DevicePluginServer(namespace, resource_type, kubelet_dir, **kwargs)


class Manager:
    """Owns the scanner thread and the per-resource servers of one plugin (a ``Notifier``)."""

    def __init__(self, namespace: str, scanner: api.Scanner, kubelet_dir: str | os.PathLike[str], *,
                 kubelet_socket: str | os.PathLike[str] | None = None,
                 preferred_allocator: api.PreferredAllocator | None = None,
                 allocator: api.Allocator | None = None,
                 server_factory: ServerFactory | None = None,
                 metrics: FrameworkMetrics | None = None) -> None:
        self.namespace = namespace
        self.metrics = metrics
        self.scanner = scanner
        self.kubelet_dir = kubelet_dir
        self.kubelet_socket = kubelet_socket
        self.preferred_allocator = preferred_allocator
        self.allocator = allocator
        self._factory = server_factory or _default_factory
        self._lock = threading.Lock()
        self._tree: api.DeviceTree = {}
        self._servers: dict[api.ResourceType, ResourceServer] = {}
        self._closed = False
        self._failure: BaseException | None = None

    @property
    def servers(self) -> dict[api.ResourceType, ResourceServer]:
        """A copy of the running servers by resource type."""
        with self._lock:
            return dict(self._servers)

    def notify(self, tree: api.DeviceTree) -> None:
        """Apply a new snapshot: start, update and stop servers as the diff says (thread-safe)."""
        with self._lock:
            if self._closed:
                LOG.debug("%s: snapshot ignored, manager stopped", self.namespace)
                return
            diff = diff_trees(self._tree, tree)
            applied = {k: dict(v) for k, v in tree.items() if v}
            for rtype, devices in diff.added.items():
                if not self._start(rtype, devices):
                    applied.pop(rtype)  # retried with the next snapshot
            for rtype, devices in diff.updated.items():
                LOG.info("%s/%s: %d devices", self.namespace, rtype, len(devices))
                self._servers[rtype].update(devices)
            for rtype in diff.removed:
                LOG.info("%s/%s: no devices left, stopping its server", self.namespace, rtype)
                self._stop_server(rtype)
            self._tree = applied

    def _start(self, rtype: api.ResourceType, devices: dict[api.DeviceID, api.DeviceInfo]) -> bool:
        LOG.info("%s/%s: %d devices, starting its server", self.namespace, rtype, len(devices))
        name = f"{self.namespace}/{rtype}"
        extra = {} if self.metrics is None else {"metrics": self.metrics.resource(name)}
        try:
            server = self._factory(self.namespace, rtype, self.kubelet_dir,
                                   kubelet_socket=self.kubelet_socket,
                                   preferred_allocator=self.preferred_allocator, allocator=self.allocator,
                                   **extra)
            server.update(devices)
            server.start()
        except Exception:
            LOG.exception("%s/%s: cannot start its server", self.namespace, rtype)
            return False
        self._servers[rtype] = server
        return True

    def _stop_server(self, rtype: api.ResourceType) -> None:
        server = self._servers.pop(rtype)
        try:
            server.stop()
        except Exception:
            LOG.exception("%s/%s: stopping its server failed", self.namespace, rtype)

    def _scan(self, stop: threading.Event) -> None:
        try:
            self.scanner.scan(self, stop)
            if not stop.is_set():
                LOG.info("%s: scanner finished; serving the last snapshot", self.namespace)
        except BaseException as err:  # reported to run(), never raised in this thread
            LOG.exception("%s: scanner failed", self.namespace)
            self._failure = err

    def run(self, stop: threading.Event) -> None:
        """Run the scanner thread and serve until ``stop`` is set.

        Raises :class:`~gpu_plugin.deviceplugin.api.ScannerError` if the scanner failed; every
        server is stopped (sockets removed) before returning either way.
        """
        thread = threading.Thread(target=self._scan, args=(stop,), name=f"scan-{self.namespace}",
                                  daemon=True)
        thread.start()
        try:
            while not stop.wait(0.25):
                if self._failure is not None:
                    break
        finally:
            self.close()
            if stop.is_set():
                thread.join(5.0)
        if self._failure is not None:
            raise api.ScannerError(f"{self.namespace}: scanner failed: {self._failure!r}") from self._failure

    def close(self) -> None:
        """Stop every server; later snapshots are ignored."""
        with self._lock:
            self._closed = True
            for rtype in list(self._servers):
                self._stop_server(rtype)
            self._tree = {}
