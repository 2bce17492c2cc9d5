"""The periodic label audit: what to change (a pure plan) and the thread that runs it.

``plan_audit`` compares the recorded desired state (labels to set, and removals), the enabled
plugins and the nodes of one LIST and returns only what must change: recorded labels missing
or different on their node are re-applied, recorded removals still present are removed again,
records of plugins no longer enabled are forgotten (the node is not touched: keys of plugins
not enabled are never patched), and hosts without a node are counted (one log line per pass,
not one per host). ``AuditLoop`` runs an audit every interval on a thread that stops through
a ``threading.Event``; a failing audit is logged and retried later.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from oslo_log import log as logging

from sysinv_ext.common.exception import SysinvExtException
from sysinv_ext.conductor.kube import Node
from sysinv_ext.conductor.metrics import NO_CONDUCTOR_METRICS, ConductorMetrics
from sysinv_ext.conductor.state import HostEntry

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditPlan:
    """What one audit changes, by host uuid."""

    patches: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    forget: Mapping[str, frozenset[str]] = field(default_factory=dict)   # plugins not enabled
    revalue: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # enabled value changed
    hosts_without_node: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditResult:
    nodes: int
    patched: int
    failed: int
    forgotten: int
    hosts_without_node: int
    expired: int = 0


def host_patch(entry: HostEntry, node: Node, enabled: Mapping[str, str]) -> dict[str, str | None]:
    """The label changes that bring one node in line with its host's record (enabled keys only;
    a record of None, or of a value that is no longer the enabled one, follows ``enabled``)."""
    patch: dict[str, str | None] = {}
    for key, value in entry.labels.items():
        want = enabled.get(key)
        if want is None:
            continue
        target = None if value is None else want
        if node.labels.get(key) != target:
            patch[key] = target
    return patch


def plan_audit(nodes: Mapping[str, Node], hosts: Mapping[str, HostEntry],
               enabled: Mapping[str, str], *, forget_disabled: bool = True) -> AuditPlan:
    """The changes that bring the nodes (by systemUUID) in line with the recorded state.

    With ``forget_disabled`` False (the plugins file is corrupt, so "not enabled" is not
    trustworthy) records of plugins that are not enabled are kept, and left alone.
    """
    patches: dict[str, dict[str, str | None]] = {}
    forget: dict[str, frozenset[str]] = {}
    revalue: dict[str, dict[str, str]] = {}
    orphans: list[str] = []
    for host, entry in hosts.items():
        disabled = frozenset(k for k in entry.labels if k not in enabled)
        if disabled and forget_disabled:
            forget[host] = disabled
        for key, value in entry.labels.items():
            want = enabled.get(key)
            if want is not None and value is not None and value != want:
                revalue.setdefault(host, {})[key] = want
        node = nodes.get(host)
        if node is None:
            if any(k in enabled for k in entry.labels):
                orphans.append(host)
            continue
        patch = host_patch(entry, node, enabled)
        if patch:
            patches[host] = patch
    return AuditPlan(patches=patches, forget=forget, revalue=revalue,
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
