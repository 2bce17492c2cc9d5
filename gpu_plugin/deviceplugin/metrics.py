"""Prometheus metrics of the generic device-plugin framework, labelled by resource name only.

Knows nothing of GPUs: every series carries ``resource`` (e.g. ``gpu.intel.com/i915``). The
framework's call sites each make one call on a :class:`ResourceMetrics` bound to their resource;
with metrics off they get :data:`NO_METRICS`, whose methods do nothing, so the serving path pays
no Prometheus cost at all, not even the import: prometheus_client loads when a
:class:`FrameworkMetrics` is made. The HTTP endpoint is the program's business (cli.py), not ours.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["FrameworkMetrics", "ResourceMetrics", "NO_METRICS", "LATENCY_BUCKETS"]

#: Allocate answers in well under a millisecond here; a slow CDI write or allocator shows above.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
HEALTH_STATES = ("Healthy", "Unhealthy")


class _Timed:
    """Observes the block's duration and counts it by outcome (``ok`` / ``error``)."""

    __slots__ = ("_histogram", "_ok", "_error", "_start")

    def __init__(self, histogram: Histogram, ok: Counter, error: Counter) -> None:
        self._histogram, self._ok, self._error = histogram, ok, error
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._histogram.observe(time.perf_counter() - self._start)
        (self._ok if exc_type is None else self._error).inc()


class ResourceMetrics:
    """The calls the framework makes for one resource; this base class records nothing."""

    def devices(self, healths: Iterable[str]) -> None:
        """The advertised devices now (one health string per device)."""

    def allocate(self) -> AbstractContextManager[None]:
        """``with metrics.allocate():`` around one Allocate call."""
        return nullcontext()

    def preferred(self) -> AbstractContextManager[None]:
        """``with metrics.preferred():`` around one GetPreferredAllocation call."""
        return nullcontext()

    def registered(self, count: int) -> None:
        """Registration number ``count`` with kubelet succeeded (2 and up: re-registrations)."""

    def registration_failed(self) -> None:
        """A registration attempt failed (retried with backoff)."""

    def streams(self, delta: int) -> None:
        """A ListAndWatch stream opened (+1) or closed (-1)."""


NO_METRICS = ResourceMetrics()


class _Recording(ResourceMetrics):
    def __init__(self, family: FrameworkMetrics, resource: str) -> None:
        self._devices = {h: family.devices_gauge.labels(resource, h) for h in HEALTH_STATES}
        self._family, self._resource = family, resource
        alloc_ok, alloc_err = (family.allocate_total.labels(resource, o) for o in ("ok", "error"))
        pref_ok, pref_err = (family.preferred_total.labels(resource, o) for o in ("ok", "error"))
        alloc_seconds = family.allocate_seconds.labels(resource)
        pref_seconds = family.preferred_seconds.labels(resource)
        # a timer per call (a small __slots__ object): handlers of one resource run concurrently
        self._alloc = (alloc_seconds, alloc_ok, alloc_err)
        self._pref = (pref_seconds, pref_ok, pref_err)
        self._registrations = family.registrations_total.labels(resource)
        self._reregistrations = family.reregistrations_total.labels(resource)
        self._registration_failures = family.registration_failures_total.labels(resource)
        self._streams = family.streams_gauge.labels(resource)

    def devices(self, healths: Iterable[str]) -> None:
        counts = dict.fromkeys(HEALTH_STATES, 0)
        for health in healths:
            counts[health] = counts.get(health, 0) + 1
        for health, count in counts.items():
            gauge = self._devices.get(health) or self._family.devices_gauge.labels(self._resource, health)
            gauge.set(count)

    def allocate(self) -> AbstractContextManager[None]:
        return _Timed(*self._alloc)

    def preferred(self) -> AbstractContextManager[None]:
        return _Timed(*self._pref)

    def registered(self, count: int) -> None:
        self._registrations.inc()
        if count > 1:
            self._reregistrations.inc()

    def registration_failed(self) -> None:
        self._registration_failures.inc()

    def streams(self, delta: int) -> None:
        self._streams.inc(delta)


class FrameworkMetrics:
    """The framework's metric families, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.devices_gauge = Gauge("deviceplugin_devices", "Devices advertised to kubelet, by health",
                                   ["resource", "health"], registry=registry)
        self.allocate_total = Counter("deviceplugin_allocate_requests", "Allocate calls by outcome",
                                      ["resource", "outcome"], registry=registry)
        self.allocate_seconds = Histogram("deviceplugin_allocate_duration_seconds",
                                          "Time to answer one Allocate call", ["resource"],
                                          buckets=LATENCY_BUCKETS, registry=registry)
        self.preferred_total = Counter("deviceplugin_preferred_allocation_requests",
                                       "GetPreferredAllocation calls by outcome",
                                       ["resource", "outcome"], registry=registry)
        self.preferred_seconds = Histogram("deviceplugin_preferred_allocation_duration_seconds",
                                           "Time to answer one GetPreferredAllocation call",
                                           ["resource"], buckets=LATENCY_BUCKETS, registry=registry)
        self.registrations_total = Counter("deviceplugin_registrations",
                                           "Successful registrations with kubelet", ["resource"],
                                           registry=registry)
        self.reregistrations_total = Counter("deviceplugin_reregistrations",
                                             "Registrations after the first (kubelet restarted or "
                                             "wiped the socket dir)", ["resource"], registry=registry)
        self.registration_failures_total = Counter("deviceplugin_registration_failures",
                                                   "Failed registration attempts (retried)",
                                                   ["resource"], registry=registry)
        self.streams_gauge = Gauge("deviceplugin_listandwatch_streams",
                                   "ListAndWatch streams open (kubelet keeps one per resource)",
                                   ["resource"], registry=registry)

    def resource(self, resource_name: str) -> ResourceMetrics:
        """The recorder bound to one resource (``namespace/type``)."""
        return _Recording(self, resource_name)
