"""The sysinv services' Prometheus endpoint: parse ``[DEFAULT]metrics_address`` and serve a registry.

Metric definitions live next to their service (``agent/metrics.py``, ``conductor/metrics.py``);
this module only turns an address into a running HTTP server on a daemon thread. Off unless
the option is set; an address without a host binds 127.0.0.1 only. Parsing and serving are the
plugin family's :mod:`gpu_plugin.common.metrics_http`, with the option's name in the errors.

The server is the plugin family's :mod:`gpu_plugin.common.metrics_server` (one distribution,
no GPU code: a stdlib module over prometheus_client's WSGI app): at most 16 connections at
once, each read and write bounded by 5 s and a request by 10 s; connections beyond the cap are
closed at accept. prometheus_client's own ``start_http_server`` has none of these bounds, and
1,011 slow connections took all of a service's file descriptors (issue 21, item 9).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry

from gpu_plugin.common import metrics_http
from gpu_plugin.common.metrics_http import DEFAULT_HOST, MetricsAddressError, MetricsEndpoint
from gpu_plugin.common.metrics_server import Limits

__all__ = ["DEFAULT_HOST", "MetricsAddressError", "parse_address", "MetricsEndpoint", "serve"]

OPTION = "metrics_address"


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); no host = 127.0.0.1."""
    return metrics_http.parse_address(text.strip(), OPTION)


def serve(address: str, registry: CollectorRegistry, program: str,
          limits: Limits | None = None) -> MetricsEndpoint:
    """Serve ``registry`` on ``address``; raises MetricsAddressError or OSError (port taken)."""
    return metrics_http.serve(address.strip(), registry, program, limits, OPTION)
