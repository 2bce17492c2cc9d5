"""An in-memory stand-in for the few API-server calls of the DRA plugin (unit tests only).

The real thing is exercised by tests/cluster/test_dra.py against kube-apiserver 1.34; this double
only keeps objects and resourceVersions so the driver's logic (prepare, unprepare, slice
reconcile, retry) can be tested fast.  It does not validate or canonicalise anything.
"""
from __future__ import annotations

import copy
import itertools
from typing import Any

from gpu_plugin.dra.api import ApiError, Conflict, NotFound

__all__ = ["FakeDraApi"]


class FakeDraApi:
    def __init__(self, node: str = "node-1") -> None:
        self.node = node
        self.slices: dict[str, dict[str, Any]] = {}
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.fail_next = 0
        self._rv = itertools.count(1)

    def _maybe_fail(self, what: str) -> None:
        self.calls.append(what)
        if self.fail_next:
            self.fail_next -= 1
            raise ApiError(f"{what}: 503 unavailable", 503)

    def add_claim(self, namespace: str, name: str, uid: str, devices: list[str], *,
                  driver: str = "gpu.intel.com", pool: str | None = None) -> None:
        results = [{"request": "gpu", "driver": driver, "pool": pool or self.node, "device": d}
                   for d in devices]
        self.claims[(namespace, name)] = {"metadata": {"namespace": namespace, "name": name, "uid": uid},
                                          "status": {"allocation": {"devices": {"results": results}}}}

    def list_slices(self, node: str, driver: str) -> list[dict[str, Any]]:
        self._maybe_fail("list")
        return [copy.deepcopy(s) for s in self.slices.values()
                if s["spec"]["nodeName"] == node and s["spec"]["driver"] == driver]

    def create_slice(self, body: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fail("create")
        name = body["metadata"]["name"]
        if name in self.slices:
            raise Conflict(f"create: {name} exists", 409)
        obj = copy.deepcopy(body)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self.slices[name] = obj
        return copy.deepcopy(obj)

    def replace_slice(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fail("replace")
        if name not in self.slices:
            raise NotFound(f"replace: {name}", 404)
        if body["metadata"].get("resourceVersion") != self.slices[name]["metadata"]["resourceVersion"]:
            raise Conflict(f"replace: {name} changed", 409)
        obj = copy.deepcopy(body)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self.slices[name] = obj
        return copy.deepcopy(obj)

    def delete_slice(self, name: str) -> None:
        self._maybe_fail("delete")
        if self.slices.pop(name, None) is None:
            raise NotFound(f"delete: {name}", 404)

    def node_uid(self, node: str) -> str:
        self._maybe_fail("node")
        return "node-uid-1"

    def get_claim(self, namespace: str, name: str) -> dict[str, Any]:
        self._maybe_fail(f"claim {namespace}/{name}")
        try:
            return copy.deepcopy(self.claims[(namespace, name)])
        except KeyError:
            raise NotFound(f"get ResourceClaim {namespace}/{name}: 404", 404) from None
