"""The conductor's Prometheus metrics: reports by outcome, report -> label latency, pending hosts,
audits, the node cache and its watch, and leadership where HA runs.

``ConductorMetrics`` is what the manager, the audit loop and the node cache call (one line per
call site); the base class records nothing, so a conductor without ``[DEFAULT]metrics_address``
pays no Prometheus cost. Knows nothing of Kubernetes or the database.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ConductorMetrics", "NO_CONDUCTOR_METRICS", "conductor_metrics", "REPORT_OUTCOMES",
           "METRIC_NAMES"]

#: applied: the node carries what the host reported; pending: recorded, no node yet;
#: rejected: bad payload; failed: Kubernetes or database error (the audit retries).
REPORT_OUTCOMES = ("applied", "pending", "rejected", "failed")
LABEL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
METRIC_NAMES = ("sysinv_gpu_conductor_reports_total", "sysinv_gpu_conductor_report_to_label_seconds",
                "sysinv_gpu_conductor_pending_hosts", "sysinv_gpu_conductor_audits_total",
                "sysinv_gpu_conductor_audit_patches_total", "sysinv_gpu_conductor_node_cache_nodes",
                "sysinv_gpu_conductor_node_watch_restarts_total", "sysinv_gpu_conductor_leader")


class ConductorMetrics:
    """What the conductor records; this base class records nothing (metrics off)."""

    def reported(self, outcome: str) -> None:
        """One agent report ended with ``outcome`` (one of REPORT_OUTCOMES)."""

    def labelled(self, seconds: float) -> None:
        """A report's labels are on its node, ``seconds`` after the report arrived."""

    def pending_hosts(self, count: int) -> None:
        """Hosts recorded whose node has not been seen yet."""

    def audited(self, ok: bool, patched: int = 0, failed: int = 0) -> None:
        """One audit pass: whether it ran through, and its PATCHes that succeeded / failed."""

    def node_cache(self, size: int) -> None:
        """Nodes currently held by the conductor's node cache."""

    def watch_restarted(self) -> None:
        """The node watch ended (expired, error, timeout) and was started again."""

    def leader(self, is_leader: bool) -> None:
        """This conductor holds (True) or lost / lacks (False) the HA lease."""


NO_CONDUCTOR_METRICS = ConductorMetrics()


class _Recording(ConductorMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        reports = Counter("sysinv_gpu_conductor_reports", "Agent reports by outcome", ["outcome"],
                          registry=registry)
        self._reports = {outcome: reports.labels(outcome) for outcome in REPORT_OUTCOMES}
        self._reports_family = reports
        self._label_seconds = Histogram("sysinv_gpu_conductor_report_to_label_seconds",
                                        "From a report's arrival to its labels being on the node "
                                        "(a pending host's wait for its node included)",
                                        buckets=LABEL_BUCKETS, registry=registry)
        self._pending = Gauge("sysinv_gpu_conductor_pending_hosts",
                              "Hosts that reported but whose Kubernetes node was not seen yet",
                              registry=registry)
        audits = Counter("sysinv_gpu_conductor_audits", "Audit passes by outcome", ["outcome"],
                         registry=registry)
        self._audit_ok, self._audit_failed = audits.labels("ok"), audits.labels("failed")
        patches = Counter("sysinv_gpu_conductor_audit_patches", "Node PATCHes made by audits, by outcome",
                          ["outcome"], registry=registry)
        self._patch_ok, self._patch_failed = patches.labels("ok"), patches.labels("failed")
        self._cache = Gauge("sysinv_gpu_conductor_node_cache_nodes", "Nodes held by the node cache",
                            registry=registry)
        self._restarts = Counter("sysinv_gpu_conductor_node_watch_restarts",
                                 "Node watch restarts (expiry, error, timeout)", registry=registry)
        self._leader = Gauge("sysinv_gpu_conductor_leader",
                             "1 while this conductor holds the HA lease (or runs alone), else 0",
                             registry=registry)

    def reported(self, outcome: str) -> None:
        counter = self._reports.get(outcome) or self._reports_family.labels(outcome)
        counter.inc()

    def labelled(self, seconds: float) -> None:
        self._label_seconds.observe(max(0.0, seconds))

    def pending_hosts(self, count: int) -> None:
        self._pending.set(count)

    def audited(self, ok: bool, patched: int = 0, failed: int = 0) -> None:
        (self._audit_ok if ok else self._audit_failed).inc()
        self._patch_ok.inc(patched)
        self._patch_failed.inc(failed)

    def node_cache(self, size: int) -> None:
        self._cache.set(size)

    def watch_restarted(self) -> None:
        self._restarts.inc()

    def leader(self, is_leader: bool) -> None:
        self._leader.set(1 if is_leader else 0)


def conductor_metrics(registry: CollectorRegistry) -> ConductorMetrics:
    """The conductor's metrics, registered on ``registry``."""
    return _Recording(registry)
