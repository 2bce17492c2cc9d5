"""Builds ``hosts.Host`` records from sysinv's database and the Kubernetes nodes.

Imported by the sysinv glue only: it reads sysinv objects (ihost rows with ``id``,
``hostname``, ``personality``, ``subfunctions``; pci_device rows with ``pvendor_id``,
``pclass_id``, ``driver``) and kubernetes client V1Node objects, duck-typed, so it imports
neither sysinv nor kubernetes itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from k8sapp_intel_gpu_plugin.checks import Lease
from k8sapp_intel_gpu_plugin.hosts import Host, gpu_drivers, subfunctions


def node_labels(nodes: Iterable[Any]) -> dict[str, dict[str, str]]:
    return {n.metadata.name: dict(n.metadata.labels or {}) for n in nodes}


def node_taints(nodes: Iterable[Any]) -> dict[str, frozenset[str]]:
    return {
        n.metadata.name: frozenset(f"{t.key}:{t.effect}" for t in ((n.spec and n.spec.taints) or []))
        for n in nodes
    }


def hosts(dbapi: Any, nodes: Iterable[Any] = ()) -> list[Host]:
    nodes = list(nodes)
    labels, taints = node_labels(nodes), node_taints(nodes)
    result = []
    for ihost in dbapi.ihost_get_list():
        if not ihost.hostname:
            continue
        pci = [(d.pvendor_id, d.pclass_id, d.driver) for d in dbapi.pci_device_get_all(hostid=ihost.id)]
        result.append(
            Host(
                hostname=ihost.hostname,
                personality=ihost.personality or "",
                subfunctions=subfunctions(ihost.subfunctions),
                labels=labels.get(ihost.hostname, {}),
                gpu_drivers=gpu_drivers(pci),
                taints=taints.get(ihost.hostname, frozenset()),
            )
        )
    return result


def lease(obj: Any) -> Lease:
    """A coordination.k8s.io/v1 V1Lease -> ``checks.Lease``."""
    spec = obj.spec
    renew = spec.renew_time or spec.acquire_time
    if renew is not None and renew.tzinfo is None:
        renew = renew.replace(tzinfo=timezone.utc)
    return Lease(
        holder=spec.holder_identity or "",
        renew_time=renew,
        duration_seconds=float(spec.lease_duration_seconds or 15),
    )


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
