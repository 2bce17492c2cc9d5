"""``intel-gpu-levelzero``'s Prometheus metrics: requests by method and outcome.

``ok`` = answered without an in-band error, ``error`` = an in-band error code (unknown BDF, a
failing read). The servicer records each answer with one call; the base class records nothing,
so the sidecar without ``-metrics-address`` pays no Prometheus cost.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["LevelzeroMetrics", "NO_LEVELZERO_METRICS", "levelzero_metrics"]


class LevelzeroMetrics:
    """What the servicer records; this base class records nothing (metrics off)."""

    def answered(self, method: str, errorcode: int) -> None:
        """``method`` answered, with ``errorcode`` in-band (0 = ok)."""


NO_LEVELZERO_METRICS = LevelzeroMetrics()


class _Recording(LevelzeroMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter("intel_gpu_levelzero_requests", "Levelzero gRPC requests by method and "
                                 "outcome (error = in-band error code)", ["method", "outcome"],
                                 registry=registry)

    def answered(self, method: str, errorcode: int) -> None:
        self._requests.labels(method, "error" if errorcode else "ok").inc()


def levelzero_metrics(registry: CollectorRegistry) -> LevelzeroMetrics:
    return _Recording(registry)
