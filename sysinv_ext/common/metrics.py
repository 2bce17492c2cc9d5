"""The sysinv services' Prometheus endpoint: parse ``[DEFAULT]metrics_address`` and serve a registry.

Metric definitions live next to their service (``agent/metrics.py``, ``conductor/metrics.py``);
this module only turns an address into a running HTTP server on a daemon thread. Off unless
the option is set; an address without a host binds 127.0.0.1 only.

The server is the plugin family's :mod:`gpu_plugin.common.metrics_server` (one distribution,
no GPU code: a stdlib module over prometheus_client's WSGI app): at most 16 connections at
once, each read and write bounded by 5 s and a request by 10 s; connections beyond the cap are
closed at accept. prometheus_client's own ``start_http_server`` has none of these bounds, and
1,011 slow connections took all of a service's file descriptors (issue 21, item 9).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from oslo_log import log as logging
from prometheus_client import CollectorRegistry

from gpu_plugin.common import metrics_server
from gpu_plugin.common.metrics_server import BoundedWSGIServer, Limits

__all__ = ["MetricsAddressError", "parse_address", "MetricsEndpoint", "serve"]

LOG = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"


class MetricsAddressError(ValueError):
    """A metrics_address that is not ``[HOST]:PORT`` or ``PORT``."""


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); no host = 127.0.0.1."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host, port_text = "", text.strip()
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise MetricsAddressError(f"metrics_address {text!r}: want [HOST]:PORT with PORT 0-65535")
    if ":" in host and not bracketed:
        raise MetricsAddressError(f"metrics_address {text!r}: write IPv6 hosts as [HOST]:PORT")
    return host or DEFAULT_HOST, int(port_text)


@dataclass
class MetricsEndpoint:
    server: BoundedWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = str(self.server.server_address[0]), int(self.server.server_address[1])
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5.0)


def serve(address: str, registry: CollectorRegistry, program: str,
          limits: Limits | None = None) -> MetricsEndpoint:
    """Serve ``registry`` on ``address``; raises MetricsAddressError or OSError (port taken)."""
    host, port = parse_address(address)
    server, thread = metrics_server.start(host, port, registry, limits)
    endpoint = MetricsEndpoint(server, thread)
    LOG.info("%s: serving Prometheus metrics on %s", program, endpoint.url)
    return endpoint
