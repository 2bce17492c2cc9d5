"""The conductor's Prometheus metrics: reports by outcome, report -> label latency, pending hosts,
audits, the node cache and its watch, and leadership where HA runs.

Events are pushed by their call sites (one line each: a report ended, labels landed, an audit
ran); state is pulled at scrape time from a ``ConductorGauges`` of callables (node cache size,
watch restarts, pending hosts, leader), so nothing has to remember to update a gauge. The base
class records nothing: a conductor without ``[DEFAULT]metrics_address`` pays no Prometheus cost.
Knows nothing of Kubernetes or the database.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sysinv_ext.common import exception

__all__ = ["ConductorMetrics", "ConductorGauges", "NO_CONDUCTOR_METRICS", "conductor_metrics",
           "REPORT_OUTCOMES", "outcome_of"]

#: applied: the node carries what the host reported; pending: recorded, no node yet;
#: rejected: bad payload; failed: Kubernetes or database error (the audit retries).
REPORT_OUTCOMES = ("applied", "pending", "rejected", "failed")
LABEL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def outcome_of(err: exception.SysinvExtException) -> str:
    """The report outcome a failed report counts as."""
    if isinstance(err, exception.InvalidPayload):
        return "rejected"
    if isinstance(err, exception.HostNotFound):
        return "pending"
    return "failed"


@dataclass(frozen=True)
class ConductorGauges:
    """Where the state gauges are read from, at each scrape."""

    node_cache: Callable[[], int]
    watch_restarts: Callable[[], int]
    pending_hosts: Callable[[], int]
    leader: Callable[[], bool]


class ConductorMetrics:
    """What the conductor records; this base class records nothing (metrics off)."""

    def reported(self, outcome: str) -> None:
        """One agent report ended with ``outcome`` (one of REPORT_OUTCOMES)."""

    def labelled(self, seconds: float) -> None:
        """A report's labels are on its node, ``seconds`` after the report arrived."""

    def audited(self, ok: bool, patched: int = 0, failed: int = 0) -> None:
        """One audit pass: whether it ran through, and its PATCHes that succeeded / failed."""

    def observe(self, gauges: ConductorGauges) -> None:
        """Read node cache size, watch restarts, pending hosts and leadership from ``gauges``."""


NO_CONDUCTOR_METRICS = ConductorMetrics()


class _StateCollector(Collector):
    def __init__(self, gauges: ConductorGauges) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        g = self._gauges
        yield GaugeMetricFamily("sysinv_gpu_conductor_node_cache_nodes", "Nodes held by the node cache",
                                value=g.node_cache())
        yield CounterMetricFamily("sysinv_gpu_conductor_node_watch_restarts",
                                  "Node watch restarts (stream ended, expired or failed)",
                                  value=g.watch_restarts())
        yield GaugeMetricFamily("sysinv_gpu_conductor_pending_hosts",
                                "Hosts that reported but whose Kubernetes node was not seen yet",
                                value=g.pending_hosts())
        yield GaugeMetricFamily("sysinv_gpu_conductor_leader",
                                "1 while this conductor is the active one (HA lease held, or alone)",
                                value=1 if g.leader() else 0)


class _Recording(ConductorMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        reports = Counter("sysinv_gpu_conductor_reports", "Agent reports by outcome", ["outcome"],
                          registry=registry)
        self._reports = {outcome: reports.labels(outcome) for outcome in REPORT_OUTCOMES}
        self._label_seconds = Histogram("sysinv_gpu_conductor_report_to_label_seconds",
                                        "From a report's arrival to its labels being on the node",
                                        buckets=LABEL_BUCKETS, registry=registry)
        audits = Counter("sysinv_gpu_conductor_audits", "Audit passes by outcome", ["outcome"],
                         registry=registry)
        self._audit_ok, self._audit_failed = audits.labels("ok"), audits.labels("failed")
        patches = Counter("sysinv_gpu_conductor_audit_patches", "Node PATCHes made by audits, by outcome",
                          ["outcome"], registry=registry)
        self._patch_ok, self._patch_failed = patches.labels("ok"), patches.labels("failed")

    def reported(self, outcome: str) -> None:
        self._reports[outcome].inc()

    def labelled(self, seconds: float) -> None:
        self._label_seconds.observe(max(0.0, seconds))

    def audited(self, ok: bool, patched: int = 0, failed: int = 0) -> None:
        (self._audit_ok if ok else self._audit_failed).inc()
        self._patch_ok.inc(patched)
        self._patch_failed.inc(failed)

    def observe(self, gauges: ConductorGauges) -> None:
        self._registry.register(_StateCollector(gauges))


def conductor_metrics(registry: CollectorRegistry) -> ConductorMetrics:
    """The conductor's metrics, registered on ``registry``."""
    return _Recording(registry)
