"""The ``-metrics-address`` HTTP endpoint of the plugin family: parse the address, serve a registry.

Shared by the plugin and the side programs; the metric definitions live with each program. The
endpoint is :mod:`.metrics_server` (prometheus_client's WSGI app with a connection cap and
timeouts) on a daemon thread. Off unless asked for; an address without a host binds 127.0.0.1
only. This module is cheap to import: prometheus_client, http.server and wsgiref load only when
an endpoint is started (the plugin runs on every GPU node, mostly with metrics off).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from gpu_plugin.common.metrics_server import BoundedWSGIServer, Limits

__all__ = ["MetricsAddressError", "parse_address", "MetricsEndpoint", "serve", "FLAG", "FLAG_HELP"]

LOG = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
FLAG = "metrics-address"
FLAG_HELP = "serve Prometheus metrics on [HOST]:PORT/metrics (\"\" = off; no HOST = 127.0.0.1)"


class MetricsAddressError(ValueError):
    """A ``-metrics-address`` that is not ``[HOST]:PORT`` or ``PORT``."""


def parse_address(text: str, what: str = "invalid address") -> tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); no host = 127.0.0.1.

    ``what`` starts the error message (the sysinv services name their option there)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise MetricsAddressError(f"{what} {text!r}: want [HOST]:PORT with PORT 0-65535")
    if not bracketed and any(c in host for c in ":[]"):
        raise MetricsAddressError(f"{what} {text!r}: write IPv6 hosts as [HOST]:PORT")
    return host or DEFAULT_HOST, int(port_text)


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` HTTP server (:mod:`.metrics_server`, on a daemon thread)."""

    server: BoundedWSGIServer
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


def serve(address: str, registry: CollectorRegistry, program: str,
          limits: Limits | None = None, what: str = "invalid address") -> MetricsEndpoint:
    """Serve ``registry`` on ``address``; raises MetricsAddressError, or OSError if the port
    cannot be bound."""
    from gpu_plugin.common import metrics_server

    host, port = parse_address(address, what)
    server, thread = metrics_server.start(host, port, registry, limits)
    endpoint = MetricsEndpoint(server, thread)
    LOG.info("%s: serving Prometheus metrics on %s", program, endpoint.url)
    return endpoint


def open_endpoint(address: str, program: str) -> tuple[CollectorRegistry | None, MetricsEndpoint | None]:
    """``-metrics-address``: a fresh registry and its running endpoint; (None, None) when the flag
    is empty, and when the port cannot be bound: that is logged and the program runs on without
    metrics (a taken port must not stop GPUs from being advertised; Prometheus shows it down)."""
    if not address:
        return None, None
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    try:
        return registry, serve(address, registry, program)
    except OSError as err:
        LOG.error("%s: cannot serve metrics on %s: %s; running without metrics", program, address, err)
        return None, None
