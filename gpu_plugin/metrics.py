"""The GPU plugin's own Prometheus metrics: the sysfs scan loop (how many, how long, failed).

Framework metrics (devices, Allocate, registrations, streams) live in
``gpu_plugin.deviceplugin.metrics``, the HTTP endpoint of ``-metrics-address`` in
``gpu_plugin.common.metrics_http`` (shared with the side programs). ``scan``/``policies``
stay pure: plugin.py times them and calls here. prometheus_client loads only when
:func:`scan_metrics` is called (metrics on).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["ScanMetrics", "NO_SCAN_METRICS", "scan_metrics"]

SCAN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ScanMetrics:
    """What the scan loop records; this base class records nothing (metrics off)."""

    @contextmanager
    def scan(self) -> Iterator[None]:
        """``with metrics.scan():`` around one sysfs scan (an exception counts as failed)."""
        yield


NO_SCAN_METRICS = ScanMetrics()


class _RecordingScan(ScanMetrics):
    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float]) -> None:
        from prometheus_client import Counter, Histogram

        scans = Counter("intel_gpu_plugin_scans", "sysfs scans by outcome", ["outcome"],
                        registry=registry)
        self._ok, self._failed = scans.labels("ok"), scans.labels("failed")
        self._seconds = Histogram("intel_gpu_plugin_scan_duration_seconds", "Time of one sysfs scan",
                                  buckets=SCAN_BUCKETS, registry=registry)
        self._clock = clock

    @contextmanager
    def scan(self) -> Iterator[None]:
        start = self._clock()
        try:
            yield
        except BaseException:
            self._failed.inc()
            raise
        finally:
            self._seconds.observe(self._clock() - start)
        self._ok.inc()


def scan_metrics(registry: CollectorRegistry, clock: Callable[[], float] = time.perf_counter) -> ScanMetrics:
    """The scan loop's metrics, registered on ``registry``."""
    return _RecordingScan(registry, clock)
