"""Keep the node's ResourceSlice for ``gpu.intel.com`` equal to what the scan found.

What k8s.io/dynamic-resource-allocation's ``resourceslice`` controller does for a Go driver, cut to
our case: one pool (named after the node, as Intel's driver and kubelet's conventions have it),
one slice, at most 128 devices (the API's per-slice limit; a node has far fewer GPUs and VFs).
:meth:`SlicePublisher.publish` is a level-triggered reconcile, called after every scan and
periodically: LIST the node's slices of the driver, delete any that are not ours, create ours or
update it when its devices differ or someone else changed it (kubelet deletes every slice of the
node when it starts, and the driver's slices when the plugin stays away 30 s).

The slice name is fixed (``<node>-gpu.intel.com``), so a restarted plugin finds and updates its
own slice instead of adding a second one.  The slice is owned by the Node object, so deleting
the node deletes it.  Each change bumps ``spec.pool.generation``, as the scheduler expects.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from gpu_plugin.dra.devices import DRIVER_NAME

LOG = logging.getLogger(__name__)

MAX_DEVICES_PER_SLICE = 128

__all__ = ["SliceApi", "SlicePublisher", "slice_name", "slice_body", "MAX_DEVICES_PER_SLICE"]


class SliceApi(Protocol):
    def list_slices(self, node: str, driver: str) -> list[dict[str, Any]]: ...
    def create_slice(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def replace_slice(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def delete_slice(self, name: str) -> None: ...
    def node_uid(self, node: str) -> str: ...


def slice_name(node: str, driver: str = DRIVER_NAME) -> str:
    return f"{node}-{driver}"


def slice_body(node: str, node_uid: str | None, devices: Sequence[dict[str, Any]], generation: int,
               driver: str = DRIVER_NAME, resource_version: str | None = None) -> dict[str, Any]:
    """The ResourceSlice object for the node's one pool (JSON-ready)."""
    metadata: dict[str, Any] = {"name": slice_name(node, driver)}
    if node_uid:
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid,
                                        "controller": True}]
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": metadata,
        "spec": {"driver": driver, "nodeName": node,
                 "pool": {"name": node, "generation": generation, "resourceSliceCount": 1},
                 "devices": list(devices)},
    }


class SlicePublisher:
    """Reconciles the node's slice; not thread-safe (one publishing thread)."""

    def __init__(self, api: SliceApi, node: str, driver: str = DRIVER_NAME) -> None:
        self.api = api
        self.node = node
        self.driver = driver
        self.name = slice_name(node, driver)
        self._node_uid: str | None = None
        #: (devices we last wrote, the resourceVersion the server gave that write)
        self._last: tuple[list[dict[str, Any]], str] | None = None

    def publish(self, devices: Sequence[dict[str, Any]]) -> bool:
        """Make the API match ``devices``; True if anything was written.  Raises ApiError."""
        devices = list(devices)[:MAX_DEVICES_PER_SLICE]
        existing = self.api.list_slices(self.node, self.driver)
        changed = False
        ours = None
        generation = 0
        for obj in existing:
            generation = max(generation, int(obj.get("spec", {}).get("pool", {}).get("generation", 0)))
            if obj["metadata"]["name"] == self.name and ours is None:
                ours = obj
            else:
                LOG.info("Deleting ResourceSlice %s: not this plugin's", obj["metadata"]["name"][:253])
                self.api.delete_slice(obj["metadata"]["name"])
                changed = True
        if ours is not None and self._last is not None and not changed \
                and ours["metadata"]["resourceVersion"] == self._last[1] and self._last[0] == devices:
            return False
        if ours is None:
            self._node_uid = self.api.node_uid(self.node)  # the Node may have been re-created
            created = self.api.create_slice(slice_body(self.node, self._node_uid, devices, generation + 1,
                                                       self.driver))
            LOG.info("Created ResourceSlice %s with %d device(s)", self.name, len(devices))
            self._last = (devices, created["metadata"]["resourceVersion"])
            return True
        if self._last is None and _same_devices(ours, devices) and not changed:
            # a restarted plugin: the slice already says what we would write
            self._last = (devices, ours["metadata"]["resourceVersion"])
            return False
        if self._node_uid is None:
            self._node_uid = self.api.node_uid(self.node)
        body = slice_body(self.node, self._node_uid, devices, generation + 1, self.driver,
                          ours["metadata"]["resourceVersion"])
        updated = self.api.replace_slice(self.name, body)
        LOG.info("Updated ResourceSlice %s: %d device(s)", self.name, len(devices))
        self._last = (devices, updated["metadata"]["resourceVersion"])
        return True


def _same_devices(obj: dict[str, Any], devices: list[dict[str, Any]]) -> bool:
    """The server's devices say what ours say: names, attributes and taints equal, capacities equal
    as numbers (the API server canonicalises quantities: ``17179869184`` comes back as ``16Gi``)."""
    theirs = obj.get("spec", {}).get("devices") or []
    if len(theirs) != len(devices):
        return False
    for a, b in zip(theirs, devices, strict=True):
        if a.get("name") != b.get("name") or a.get("attributes") != b.get("attributes") \
                or (a.get("taints") or []) != (b.get("taints") or []) \
                or {k: _quantity(v.get("value")) for k, v in (a.get("capacity") or {}).items()} \
                != {k: _quantity(v.get("value")) for k, v in (b.get("capacity") or {}).items()}:
            return False
    return True


_SUFFIXES = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def _quantity(text: object) -> int | None:
    """An integral Kubernetes quantity as a number (``16Gi``, ``1k``, ``17179869184``); None otherwise."""
    if not isinstance(text, str):
        return None
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            number = text[: -len(suffix)]
            return int(number) * _SUFFIXES[suffix] if number.isdigit() else None
    return int(text) if text.isdigit() else None
