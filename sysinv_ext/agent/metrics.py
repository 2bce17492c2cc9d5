"""The agent's Prometheus metrics: GPUs detected, reports sent / failed, last good report time.

``AgentMetrics`` is what the manager calls (one line per call site); the base class records
nothing, so an agent without ``[DEFAULT]metrics_address`` pays no Prometheus cost.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from sysinv_ext.agent.pci import GPU_DRIVERS, PciGpu

__all__ = ["AgentMetrics", "NO_AGENT_METRICS", "agent_metrics"]


class AgentMetrics:
    """What the agent manager records; this base class records nothing (metrics off)."""

    def detected(self, gpus: Iterable[PciGpu]) -> None:
        """The GPUs of the latest sysfs scan."""

    def reported(self, ok: bool) -> None:
        """One report to the conductor succeeded (True) or failed (False)."""


NO_AGENT_METRICS = AgentMetrics()


class _Recording(AgentMetrics):
    def __init__(self, registry: CollectorRegistry, wall_clock: Callable[[], float]) -> None:
        self._gpus = Gauge("sysinv_gpu_agent_gpus", "Intel GPUs detected in sysfs, by driver and "
                           "PCI function kind (pf or vf)", ["driver", "function"], registry=registry)
        reports = Counter("sysinv_gpu_agent_reports", "Reports to the conductor by outcome",
                          ["outcome"], registry=registry)
        self._sent, self._failed = reports.labels("sent"), reports.labels("failed")
        self._last = Gauge("sysinv_gpu_agent_last_report_success_timestamp_seconds",
                           "Unix time of the last report the conductor acknowledged (0: none yet)",
                           registry=registry)
        self._wall_clock = wall_clock

    def detected(self, gpus: Iterable[PciGpu]) -> None:
        counts = {(driver, kind): 0 for driver in sorted(GPU_DRIVERS) for kind in ("pf", "vf")}
        for gpu in gpus:
            key = (gpu.driver, "vf" if gpu.is_vf else "pf")
            counts[key] = counts.get(key, 0) + 1
        for (driver, kind), count in counts.items():
            self._gpus.labels(driver, kind).set(count)

    def reported(self, ok: bool) -> None:
        if ok:
            self._sent.inc()
            self._last.set(self._wall_clock())
        else:
            self._failed.inc()


def agent_metrics(registry: CollectorRegistry, wall_clock: Callable[[], float] = time.time) -> AgentMetrics:
    """The agent's metrics, registered on ``registry``."""
    return _Recording(registry, wall_clock)
