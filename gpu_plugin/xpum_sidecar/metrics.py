"""``intel-xpumanager-sidecar``'s Prometheus metrics: rounds by outcome, links, last good round.

Recorded by ``Sidecar.iterate`` (one call per round); the base class records nothing, so the
sidecar without ``-metrics-address`` pays no Prometheus cost.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["SidecarMetrics", "NO_SIDECAR_METRICS", "sidecar_metrics", "OUTCOMES"]

#: written: labels changed and the file was replaced; unchanged: same labels, file left alone;
#: scrape_failed: XPU Manager unreachable or garbage (last good file kept); write_failed.
OUTCOMES = ("written", "unchanged", "scrape_failed", "write_failed")


class SidecarMetrics:
    """What the sidecar records; this base class records nothing (metrics off)."""

    def round(self, outcome: str, links: int | None = None) -> None:
        """One scrape -> label round ended with ``outcome``; ``links`` = Xe Links labelled."""


NO_SIDECAR_METRICS = SidecarMetrics()


class _Recording(SidecarMetrics):
    def __init__(self, registry: CollectorRegistry, wall_clock: Callable[[], float]) -> None:
        rounds = Counter("intel_xpumanager_sidecar_rounds", "Scrape -> label file rounds by outcome",
                         ["outcome"], registry=registry)
        self._rounds = {outcome: rounds.labels(outcome) for outcome in OUTCOMES}
        self._links = Gauge("intel_xpumanager_sidecar_xe_links", "Xe Links in the label file now",
                            registry=registry)
        self._last = Gauge("intel_xpumanager_sidecar_last_success_timestamp_seconds",
                           "Unix time the label file last matched XPU Manager's topology (0: never)",
                           registry=registry)
        self._wall_clock = wall_clock

    def round(self, outcome: str, links: int | None = None) -> None:
        self._rounds[outcome].inc()
        if links is not None:
            self._links.set(links)
            self._last.set(self._wall_clock())


def sidecar_metrics(registry: CollectorRegistry,
                    wall_clock: Callable[[], float] = time.time) -> SidecarMetrics:
    return _Recording(registry, wall_clock)
