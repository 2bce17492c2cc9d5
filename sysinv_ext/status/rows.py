"""What ``sysinv-gpu-status`` shows and judges, as pure functions (no DB, no HTTP).

One ``HostRow`` per host the conductor recorded, plus one per node that carries a managed label
or advertises ``gpu.intel.com/*`` without a record. A row is inconsistent when a host reported
a GPU but its node lacks the label (or there is no node), when a node is labelled but nothing
``gpu.intel.com/*`` is allocatable (plugin not running or not registered), or when a node keeps
the label although its host reported no GPU (or never reported).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

RESOURCE_PREFIX = "gpu.intel.com/"
NOT_LABELLED = "reported but not labelled"
NOTHING_ALLOCATABLE = "labelled but nothing allocatable"
GPU_GONE = "label present but GPU gone"


@dataclass(frozen=True)
class RecordedHost:
    """What the conductor's database holds for one host: desired labels (None = must be absent)."""

    host_uuid: str
    labels: Mapping[str, str | None]
    reported_at: datetime | None = None


@dataclass(frozen=True)
class NodeView:
    """A node as the status command needs it: allocatable holds only ``gpu.intel.com/*``."""

    name: str
    system_uuid: str
    labels: Mapping[str, str] = field(default_factory=dict)
    allocatable: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class HostRow:
    host_uuid: str
    node: str | None
    reported: tuple[str, ...] | None  # label keys the host reported; None: no record at all
    reported_at: datetime | None
    recorded: Mapping[str, str | None]
    on_node: Mapping[str, str]
    allocatable: Mapping[str, int]
    problems: tuple[str, ...] = ()

    @property
    def consistent(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"host_uuid": self.host_uuid, "node": self.node,
                "reported": None if self.reported is None else list(self.reported),
                "reported_at": self.reported_at.isoformat() if self.reported_at else None,
                "label_recorded": dict(self.recorded), "label_on_node": dict(self.on_node),
                "allocatable": dict(self.allocatable), "consistent": self.consistent,
                "problems": list(self.problems)}


def _problems(host: RecordedHost | None, node: NodeView | None, keys: Iterable[str]) -> list[str]:
    found = []
    uuid = host.host_uuid if host else node.system_uuid if node else "?"
    for key in keys:
        want = host.labels.get(key) if host else None
        have = node.labels.get(key) if node else None
        if want is not None and node is None:
            found.append(f"{NOT_LABELLED}: no Kubernetes node has systemUUID {uuid}")
        elif want is not None and have != want:
            found.append(f"{NOT_LABELLED}: node {node.name if node else '?'} lacks {key}={want}")
        if have is not None and want is None:
            why = "never reported" if host is None else "reported no GPU"
            found.append(f"{GPU_GONE}: node {node.name if node else '?'} has {key}={have} "
                         f"but host {uuid} {why}")
        elif have is not None and node is not None and not any(node.allocatable.values()):
            found.append(f"{NOTHING_ALLOCATABLE}: node {node.name} has {key}={have} but no "
                         f"{RESOURCE_PREFIX}* allocatable")
    return found


def build_rows(hosts: Iterable[RecordedHost], nodes: Iterable[NodeView],
               enabled: Mapping[str, str]) -> list[HostRow]:
    """Rows for every recorded host and every unrecorded node with a managed label or GPU
    resource, sorted by node name then host uuid. Managed keys: enabled ones and recorded ones."""
    hosts = list(hosts)
    by_uuid = {node.system_uuid.lower(): node for node in nodes if node.system_uuid}
    keys = sorted(set(enabled) | {k for h in hosts for k in h.labels})
    rows = []
    recorded = set()
    for host in hosts:
        recorded.add(host.host_uuid.lower())
        node = by_uuid.get(host.host_uuid.lower())
        rows.append(_row(host, node, keys))
    for uuid, node in by_uuid.items():
        if uuid in recorded:
            continue
        if any(k in node.labels for k in keys) or any(node.allocatable.values()):
            rows.append(_row(None, node, keys))
    return sorted(rows, key=lambda r: (r.node or "", r.host_uuid))


def _row(host: RecordedHost | None, node: NodeView | None, keys: list[str]) -> HostRow:
    assert host is not None or node is not None
    return HostRow(
        host_uuid=host.host_uuid if host else node.system_uuid,  # type: ignore[union-attr]
        node=node.name if node else None,
        reported=None if host is None else tuple(sorted(k for k, v in host.labels.items() if v is not None)),
        reported_at=host.reported_at if host else None,
        recorded=dict(host.labels) if host else {},
        on_node={k: node.labels[k] for k in keys if node and k in node.labels},
        allocatable=dict(node.allocatable) if node else {},
        problems=tuple(_problems(host, node, keys)))


def _labels(labels: Mapping[str, str | None]) -> str:
    if not labels:
        return "-"
    return ",".join(f"{k}={v}" if v is not None else f"{k} absent" for k, v in sorted(labels.items()))


def render_table(rows: list[HostRow]) -> str:
    """A fixed-width table, one line per row (the last column says ok or INCONSISTENT)."""
    header = ("HOST UUID", "NODE", "GPUS REPORTED", "REPORTED AT", "LABEL RECORDED", "LABEL ON NODE",
              "ALLOCATABLE", "STATUS")
    lines = [header]
    for row in rows:
        reported = "(no record)" if row.reported is None else ",".join(row.reported) or "none"
        alloc = ",".join(f"{k.removeprefix(RESOURCE_PREFIX)}={v}" for k, v in sorted(row.allocatable.items()))
        lines.append((row.host_uuid, row.node or "-", reported,
                      row.reported_at.strftime("%Y-%m-%d %H:%M:%SZ") if row.reported_at else "-",
                      _labels(row.recorded), _labels(row.on_node), alloc or "-",
                      "ok" if row.consistent else "INCONSISTENT"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines) + "\n"


def render_json(rows: list[HostRow]) -> str:
    return json.dumps({"consistent": all(r.consistent for r in rows),
                       "hosts": [r.to_dict() for r in rows]}, indent=2, sort_keys=True) + "\n"
