"""The advertised devices of one resource and the decisions made over them (no gRPC).

Holds the current device map, a version bumped only when what kubelet sees (IDs, health,
NUMA nodes) changes, a Condition that wakes ListAndWatch streams, and the Allocate /
GetPreferredAllocation logic (validation, default merge, optional plugin allocators).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import cast

from gpu_plugin.deviceplugin import api

LOG = logging.getLogger(__name__)

#: What kubelet sees of one device: (ID, health, NUMA nodes).
Advertised = tuple[str, str, tuple[int, ...]]
_MERGE_CACHE_SIZE = 1024
#: kubelet's NUMANode.ID is an int64; a negative node means none.
_NUMA_RANGE = range(0, 2**63)


def _advertised(resource: str, devices: Mapping[api.DeviceID, api.DeviceInfo]) -> tuple[Advertised, ...]:
    """kubelet's view, in natural ID order.  A NUMA node kubelet can't take (negative, past int64)
    is left out of that device's topology: one bad device must not end the whole stream."""
    out = []
    bad: list[str] = []
    # Devices share a handful of NUMA tuples: each distinct one is checked once (checking every
    # device's doubled the cost of a device-list update: 8,064 IDs, 14 -> 29 ms of CPU).
    checked: dict[tuple[int, ...], tuple[int, ...]] = {}
    for dev_id, info in sorted(devices.items(), key=lambda kv: _natural_key(kv[0])):
        nodes = tuple(info.numa_nodes)
        numa = checked.get(nodes)
        if numa is None:
            numa = checked[nodes] = tuple(n for n in nodes if n in _NUMA_RANGE)
        if len(numa) != len(nodes):
            bad.append(dev_id)
        out.append((dev_id, info.health.value, numa))
    if bad:
        LOG.warning("%s: %d device(s) (first %s) have a NUMA node kubelet can't take (negative or past "
                    "int64); left out of their topology", resource, len(bad), bad[0][:64])
    return tuple(out)


def _natural_key(device_id: str) -> tuple[object, ...]:
    """Order ``card2`` before ``card10`` (digits compared as numbers)."""
    parts: list[object] = []
    num = ""
    text = ""
    for ch in device_id:
        if ch.isdigit():
            if text:
                parts.append((1, text))
                text = ""
            num += ch
        else:
            if num:
                parts.append((0, int(num)))
                num = ""
            text += ch
    if num:
        parts.append((0, int(num)))
    if text:
        parts.append((1, text))
    return tuple(parts)


def merge_allocation(infos: Sequence[api.DeviceInfo]) -> api.ContainerAllocation:
    """Default Allocate: union of the devices' nodes, mounts, CDI names (deduplicated, in
    order) and envs/annotations (later devices win on equal keys)."""
    nodes: dict[api.DeviceSpec, None] = {}
    mounts: dict[api.Mount, None] = {}
    cdi: dict[str, None] = {}
    envs: dict[str, str] = {}
    annotations: dict[str, str] = {}
    for info in infos:
        nodes.update(dict.fromkeys(info.nodes))
        mounts.update(dict.fromkeys(info.mounts))
        cdi.update(dict.fromkeys(info.cdi_devices))
        envs.update(info.envs)
        annotations.update(info.annotations)
    return api.ContainerAllocation(devices=tuple(nodes), mounts=tuple(mounts), envs=envs,
                                   annotations=annotations, cdi_devices=tuple(cdi))


class DeviceState:
    """Thread-safe device map of one resource type, shared by all its gRPC handlers."""

    def __init__(self, resource: api.ResourceType, max_streams: int, *,
                 preferred_allocator: api.PreferredAllocator | None = None,
                 allocator: api.Allocator | None = None) -> None:
        self.resource = resource
        self._max_streams = max_streams
        self._preferred_allocator = preferred_allocator
        self._allocator = allocator
        self._cond = threading.Condition()
        self._devices: dict[api.DeviceID, api.DeviceInfo] = {}
        self._snapshot: tuple[Advertised, ...] = ()
        self._version = 0
        self._streams = 0
        self._opened = 0  #: streams opened so far (the lifecycle tells a lost stream from a replaced one)
        self._closed = False
        #: device IDs -> (the device map it was merged from, the merge): a repeated Allocate of
        #: the same IDs returns the same object until update() replaces the map.
        self._merged: dict[tuple[str, ...], tuple[dict[api.DeviceID, api.DeviceInfo],
                                                  api.ContainerAllocation]] = {}

    # -- device map and ListAndWatch ---------------------------------------------------------
    def update(self, devices: Mapping[api.DeviceID, api.DeviceInfo]) -> bool:
        """Replace the device map; return True (and wake streams) if kubelet's view changed."""
        snapshot = _advertised(self.resource, devices)
        with self._cond:
            self._devices = dict(devices)
            if snapshot == self._snapshot and self._version:
                return False
            self._snapshot = snapshot
            self._version += 1
            self._cond.notify_all()
            return True

    def devices(self) -> dict[api.DeviceID, api.DeviceInfo]:
        with self._cond:
            return dict(self._devices)

    def open_stream(self) -> bool:
        with self._cond:
            if self._streams >= self._max_streams or self._closed:
                return False
            self._streams += 1
            self._opened += 1
            return True

    def close_stream(self) -> None:
        with self._cond:
            self._streams -= 1

    @property
    def streams(self) -> int:
        with self._cond:
            return self._streams

    @property
    def opened(self) -> int:
        with self._cond:
            return self._opened

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """End every ListAndWatch stream (server stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_change(self, seen: int, active: Callable[[], bool]) -> tuple[int, tuple[Advertised, ...]] | None:
        """Block until the version differs from ``seen``; None once closed or ``active()`` is False."""
        with self._cond:
            while not self._closed and active() and self._version == seen:
                self._cond.wait(1.0)
            if self._closed or not active():
                return None
            return self._version, self._snapshot

    # -- Allocate / GetPreferredAllocation ----------------------------------------------------
    def _lookup(self, devices: Mapping[api.DeviceID, api.DeviceInfo], device_ids: Sequence[str], *,
                healthy: bool) -> list[api.DeviceInfo]:
        infos = []
        for dev_id in device_ids:
            info = devices.get(cast(api.DeviceID, dev_id))
            if info is None:
                raise api.UnknownDeviceError(self.resource, dev_id)
            if healthy and info.health is not api.Health.HEALTHY:
                raise api.UnhealthyDeviceError(self.resource, dev_id)
            infos.append(info)
        return infos

    def allocate(self, device_ids: Sequence[str]) -> api.ContainerAllocation:
        """One container request: refuse unknown/unhealthy IDs, then allocator or default merge."""
        if not device_ids:
            raise api.AllocationError(f"{self.resource}: allocation request without device IDs")
        with self._cond:
            devices = self._devices  # replaced, never mutated, by update(): safe to read unlocked
        infos = self._lookup(devices, device_ids, healthy=True)
        if self._allocator is not None:
            ids = cast(list[api.DeviceID], list(device_ids))
            result = self._allocator.allocate(self.resource, ids, MappingProxyType(devices))
            if result is not None:
                return result
        key = tuple(device_ids)
        cached = self._merged.get(key)
        if cached is not None and cached[0] is devices:
            return cached[1]
        merged = merge_allocation(infos)
        if len(self._merged) >= _MERGE_CACHE_SIZE:
            self._merged.clear()
        self._merged[key] = (devices, merged)
        return merged

    def preferred(self, available: Sequence[str], must_include: Sequence[str], size: int) -> list[str]:
        """One container's preferred IDs: the plugin's policy, else must-include then first available."""
        with self._cond:
            devices = self._devices
        for dev_id in (*available, *must_include):
            if dev_id not in devices:
                raise api.UnknownDeviceError(self.resource, dev_id)
        if size < 0:
            raise api.AllocationError(f"{self.resource}: negative allocation size {size}")
        if self._preferred_allocator is not None:
            return list(self._preferred_allocator.preferred_allocation(
                self.resource, cast(list[api.DeviceID], list(available)),
                cast(list[api.DeviceID], list(must_include)), size))
        chosen = list(dict.fromkeys([*must_include, *available]))
        if size > len(chosen):
            raise api.AllocationError(f"{self.resource}: {size} devices requested, "
                                      f"only {len(chosen)} available")
        return chosen[:size]
