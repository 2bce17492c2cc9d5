"""The periodic label audit: what to change (a pure plan) and the thread that runs it.

``plan_audit`` compares the recorded labels, the enabled plugins and one LIST of nodes and
returns only the PATCHes needed: recorded labels missing or different on their node are
re-applied, records of plugins no longer enabled are forgotten (the node is not touched: keys
of plugins not enabled are never patched). ``AuditLoop`` runs an audit every interval on a
thread that stops through a ``threading.Event``; a failing audit is logged and retried later.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from oslo_log import log as logging

from sysinv_ext.common.exception import SysinvExtException
from sysinv_ext.conductor.kube import Node
from sysinv_ext.conductor.metrics import NO_CONDUCTOR_METRICS, ConductorMetrics
from sysinv_ext.db.api import LabelRecord

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditPlan:
    """What one audit changes."""

    patches: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # node name -> labels
    forget: tuple[LabelRecord, ...] = ()            # records of plugins no longer enabled
    revalue: tuple[LabelRecord, ...] = ()           # records whose enabled value changed
    hosts_without_node: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditResult:
    nodes: int
    patched: int
    failed: int
    forgotten: int
    hosts_without_node: int


def plan_audit(nodes: Mapping[str, Node], records: Iterable[LabelRecord],
               enabled: Mapping[str, str], *, forget_disabled: bool = True) -> AuditPlan:
    """The changes that bring the nodes (by systemUUID) in line with the records.

    With ``forget_disabled`` False (the plugins file is corrupt, so "not enabled" is not
    trustworthy) records of plugins that are not enabled are kept, and left alone.
    """
    patches: dict[str, dict[str, str]] = {}
    forget: list[LabelRecord] = []
    revalue: list[LabelRecord] = []
    orphans: set[str] = set()
    for record in records:
        want = enabled.get(record.label_key)
        if want is None:
            if forget_disabled:
                forget.append(record)
            continue
        if record.label_value != want:
            revalue.append(record)
        node = nodes.get(record.host_uuid)
        if node is None:
            orphans.add(record.host_uuid)
            continue
        if node.labels.get(record.label_key) != want:
            patches.setdefault(node.name, {})[record.label_key] = want
    return AuditPlan(patches=patches, forget=tuple(forget), revalue=tuple(revalue),
                     hosts_without_node=tuple(sorted(orphans)))


class AuditLoop:
    """Calls ``audit()`` at start and then every ``interval`` seconds until ``stop()``."""

    def __init__(self, audit: Callable[[], object], interval: float,
                 stop_event: threading.Event | None = None,
                 metrics: ConductorMetrics = NO_CONDUCTOR_METRICS) -> None:
        self._audit = audit
        self._metrics = metrics
        self.interval = interval
        self.stop_event = stop_event or threading.Event()
        self._thread = threading.Thread(target=self._run, name="label-audit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self.stop_event.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                result = self._audit()
                self._metrics.audited(True, getattr(result, "patched", 0), getattr(result, "failed", 0))
            except SysinvExtException as err:  # Kubernetes or database unavailable: expected
                self._metrics.audited(False)
                LOG.warning("Label audit failed, retrying in %s s: %s", self.interval, err)
            except Exception:  # the audit must outlive any single failure
                self._metrics.audited(False)
                LOG.exception("Label audit failed; retrying in %s s", self.interval)
            if self.stop_event.wait(self.interval):
                break
