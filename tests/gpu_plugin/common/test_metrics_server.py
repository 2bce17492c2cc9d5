"""The metrics endpoint under slow clients (issue 21, items 9 and 13), for both users of the
shared server: the plugin family's ``-metrics-address`` and the sysinv services'
``[DEFAULT]metrics_address``.

Real sockets on 127.0.0.1 (free ports), a real scrape parsed by prometheus_client's parser.
"Slow" clients send a partial request and then one byte now and then, so a per-read timeout
alone would never end them.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from gpu_plugin.common import metrics_http
from gpu_plugin.common.metrics_server import Limits
from tests.scrape import scrape

CAP = 4


def _sysinv_serve(address: str, registry: CollectorRegistry, program: str, limits: Limits) -> Any:
    from sysinv_ext.common import metrics

    return metrics.serve(address, registry, program, limits)


SERVES: dict[str, Callable[..., Any]] = {"plugin": metrics_http.serve, "sysinv": _sysinv_serve}


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _handler_threads() -> int:
    """Threads serving connections (the server's own, and those of a thread-per-connection server)."""
    return sum(1 for t in threading.enumerate() if t.name == "metrics-http" or "process_request" in t.name)


class SlowClients:
    """Connections that sent ``GET /metrics HTTP/1.0\\r\\n`` and then a header byte every 0.2 s."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._dribble, daemon=True)
        self._thread.start()

    def open(self, count: int) -> None:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(b"GET /metrics HTTP/1.0\r\nX-Slow: ")
            self.socks.append(sock)

    def _dribble(self) -> None:
        while not self._stop.wait(0.2):
            for sock in list(self.socks):
                try:
                    sock.send(b"a")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.socks:
            sock.close()


@pytest.fixture(params=sorted(SERVES))
def serve(request: pytest.FixtureRequest) -> Iterator[Callable[[float], Any]]:
    """``serve(request_timeout)``: a running endpoint (of the plugin's or sysinv's serve) with a
    cap of CAP connections, serving a counter ``probe`` = 3."""
    served: list[Any] = []

    def start(request_timeout: float) -> Any:
        registry = CollectorRegistry()
        Counter("probe", "a probe", registry=registry).inc(3)
        limits = Limits(max_connections=CAP, read_timeout=5.0, request_timeout=request_timeout)
        served.append(SERVES[request.param](":0", registry, "test", limits))
        return served[-1]

    try:
        yield start
    finally:
        for endpoint in served:
            endpoint.close()


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(4096)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def test_slow_metrics_connections_beyond_the_cap_are_closed_not_threads(
        serve: Callable[[float], Any]) -> None:
    endpoint = serve(60.0)
    port = endpoint.server.server_address[1]
    before = _handler_threads()
    slow = SlowClients(port)
    try:
        slow.open(CAP - 1)
        _wait(lambda: _handler_threads() - before == CAP - 1, 5, "slow connections being served")
        assert scrape(endpoint.url).value("probe_total") == 3  # a legit scrape still answers
        _wait(lambda: _handler_threads() - before == CAP - 1, 5, "the scrape's connection done")
        slow.open(1)
        _wait(lambda: _handler_threads() - before == CAP, 5, "the cap reached")
        slow.open(20)  # the cap is full; 20 more
        for sock in slow.socks[CAP:]:  # closed by the server at once, with a short 503 where it fit
            sock.settimeout(5)
            reply = _read_all(sock)
            assert reply == b"" or reply.startswith(b"HTTP/1.0 503")
        assert _handler_threads() - before == CAP
        assert endpoint.server.refused == 20
    finally:
        slow.close()


def test_a_client_dribbling_its_request_is_dropped_at_the_request_timeout(
        serve: Callable[[float], Any]) -> None:
    endpoint = serve(2.0)
    port = endpoint.server.server_address[1]
    before = _handler_threads()
    slow = SlowClients(port)
    try:
        slow.open(CAP)  # every slot taken by a client that sends a byte every 0.2 s
        _wait(lambda: _handler_threads() - before == CAP, 5, "slow connections being served")
        # the request timeout (2 s) ends them although each read got data in time
        _wait(lambda: _handler_threads() == before, 10, "slow connections dropped")
        assert scrape(endpoint.url).value("probe_total") == 3
    finally:
        slow.close()
