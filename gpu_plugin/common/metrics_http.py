"""The ``-metrics-address`` HTTP endpoint of the plugin family: parse the address, serve a registry.

Shared by the plugin and the side programs; the metric definitions live with each program. The
endpoint is prometheus_client's own HTTP server on a daemon thread. Off unless asked for; an
address without a host binds 127.0.0.1 only.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

__all__ = ["MetricsAddressError", "parse_address", "MetricsEndpoint", "serve", "FLAG", "FLAG_HELP"]

LOG = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
FLAG = "metrics-address"
FLAG_HELP = "serve Prometheus metrics on [HOST]:PORT/metrics (\"\" = off; no HOST = 127.0.0.1)"


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


def open_endpoint(address: str, program: str) -> tuple[CollectorRegistry | None, MetricsEndpoint | None]:
    """``-metrics-address``: a fresh registry and its running endpoint; (None, None) when the flag
    is empty, and when the port cannot be bound: that is logged and the program runs on without
    metrics (a taken port must not stop GPUs from being advertised; Prometheus shows it down)."""
    if not address:
        return None, None
    registry = CollectorRegistry()
    try:
        return registry, serve(address, registry, program)
    except OSError as err:
        LOG.error("%s: cannot serve metrics on %s: %s; running without metrics", program, address, err)
        return None, None
