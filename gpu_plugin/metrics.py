"""The GPU plugin family's Prometheus metrics: the scan loop's figures and the HTTP endpoint.

Framework metrics (devices, Allocate, registrations, streams) live in
``gpu_plugin.deviceplugin.metrics``; this module adds what only the GPU plugin knows (sysfs
scans: how many, how long, how many failed) and serves one registry over HTTP for
``-metrics-address``. ``scan``/``policies`` stay pure: plugin.py times them and calls here.
The endpoint is off unless asked for, and an address without a host binds 127.0.0.1 only.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

__all__ = ["MetricsAddressError", "parse_address", "MetricsEndpoint", "serve", "ScanMetrics",
           "NO_SCAN_METRICS", "METRIC_NAMES"]

LOG = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
SCAN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METRIC_NAMES = ("intel_gpu_plugin_scans_total", "intel_gpu_plugin_scan_duration_seconds")


class MetricsAddressError(ValueError):
    """A ``-metrics-address`` that is not ``[HOST]:PORT`` or ``PORT``."""


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); no host = 127.0.0.1."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise MetricsAddressError(f"invalid address {text!r}: want [HOST]:PORT with PORT 0-65535")
    if ":" in host and not text.startswith("["):
        raise MetricsAddressError(f"invalid address {text!r}: write IPv6 hosts as [HOST]:PORT")
    return host or DEFAULT_HOST, int(port_text)


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` HTTP server (prometheus_client's, on a daemon thread)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = str(self.server.server_address[0]), int(self.server.server_address[1])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5.0)


def serve(address: str, registry: CollectorRegistry, program: str) -> MetricsEndpoint:
    """Serve ``registry`` on ``address``; raises OSError if the port cannot be bound."""
    host, port = parse_address(address)
    server, thread = start_http_server(port, host, registry=registry)
    endpoint = MetricsEndpoint(server, thread)
    LOG.info("%s: serving Prometheus metrics on %s", program, endpoint.url)
    return endpoint


class ScanMetrics:
    """What the scan loop records; this base class records nothing (metrics off)."""

    @contextmanager
    def scan(self) -> Iterator[None]:
        """``with metrics.scan():`` around one sysfs scan (an exception counts as failed)."""
        yield


NO_SCAN_METRICS = ScanMetrics()


class _RecordingScan(ScanMetrics):
    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float]) -> None:
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
