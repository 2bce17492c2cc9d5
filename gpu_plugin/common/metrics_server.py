"""A ``/metrics`` HTTP server with a cap on concurrent connections and read/write timeouts.

prometheus_client's ``start_http_server`` runs one thread per connection with no cap and no
timeout: 1,000 slow clients made 1,015 threads and 88 MB RSS in the plugin (90 Mi limit), and
1,011 of them took all of a sysinv service's file descriptors (issue 21, items 9 and 13).  This
module serves the same WSGI app (``prometheus_client.make_wsgi_app``) on the standard library's
``wsgiref`` server, with three bounds prometheus_client does not offer:

- at most ``max_connections`` connections are served at once, each on its own short-lived
  thread; a connection beyond the cap gets a fixed ``503`` (best effort, never blocking) and is
  closed at once by the accept loop: no thread, no buffer, no file descriptor kept;
- every read waits at most ``read_timeout`` and the whole request (line and headers) must arrive
  within ``request_timeout``, so a client sending one byte per second cannot hold a slot;
- every write waits at most ``read_timeout`` (a client that stops reading is dropped).

wsgiref speaks HTTP/1.0 (one request per connection), which is all a Prometheus scrape needs.
Shared by the GPU plugin family (``-metrics-address``) and the sysinv services
(``[DEFAULT]metrics_address``); imported only when an endpoint is started, so a program with
metrics off never loads prometheus_client, http.server or wsgiref.
"""
from __future__ import annotations

import io
import logging
import socket
import sys
import threading
import time
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

__all__ = ["Limits", "BoundedWSGIServer", "start"]

LOG = logging.getLogger(__name__)

_REFUSAL = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: 29\r\n\r\ntoo many metrics connections\n")
_REFUSAL_LOG_INTERVAL = 60.0  # s: at most one warning per interval about refused connections


class Limits:
    """The bounds of one endpoint (defaults: a scrape of a few KB from one or two Prometheus)."""

    def __init__(self, max_connections: int = 16, read_timeout: float = 5.0,
                 request_timeout: float = 10.0) -> None:
        if max_connections < 1 or read_timeout <= 0 or request_timeout <= 0:
            raise ValueError("metrics server limits must be positive")
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self.request_timeout = request_timeout


class _DeadlineReader(io.RawIOBase):
    """The socket as a raw stream whose every read waits at most ``min(read_timeout, time left)``:
    a per-read timeout alone would let a client dribble a 64 KB header line byte by byte."""

    def __init__(self, sock: socket.socket, read_timeout: float, deadline: float) -> None:
        self._sock, self._read_timeout, self._deadline = sock, read_timeout, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not complete within the request timeout")
        self._sock.settimeout(min(self._read_timeout, left))
        return self._sock.recv_into(buffer)


class _NullStream(io.StringIO):
    """wsgiref's error stream: an app error or a client gone mid-write is logged at debug level,
    bounded, instead of a traceback on stderr per connection."""

    def write(self, text: str) -> int:
        if text.strip():
            LOG.debug("metrics endpoint: %s", text.strip()[:200])
        return len(text)


class _Handler(WSGIRequestHandler):
    server: BoundedWSGIServer

    def setup(self) -> None:
        limits = self.server.limits
        super().setup()
        self.connection.settimeout(limits.read_timeout)  # writes too (reads set their own below)
        reader = _DeadlineReader(self.connection, limits.read_timeout,
                                 time.monotonic() + limits.request_timeout)
        self.rfile = io.BufferedReader(reader)

    def get_stderr(self) -> _NullStream:
        return _NullStream()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """No access log (prometheus_client's handler is silent too)."""


class BoundedWSGIServer(WSGIServer):
    """wsgiref's server with at most ``limits.max_connections`` connections served at once."""

    daemon_threads = True
    request_queue_size = 128  #: listen backlog; the accept loop empties it fast (refusal = close)

    def __init__(self, address: tuple[str, int], limits: Limits) -> None:
        family, _, _, _, _ = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM,
                                                flags=socket.AI_PASSIVE)[0]
        self.address_family = family
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self._lock = threading.Lock()
        self.active = 0  #: connections being served now
        self.refused = 0  #: connections closed because the cap was reached (since start)
        self._refused_logged = 0
        self._refusal_logged_at = float("-inf")
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        with self._lock:
            self.active += 1
        try:
            threading.Thread(target=self._serve, args=(request, client_address), daemon=True,
                             name="metrics-http").start()
        except RuntimeError:  # can't start a thread (process limit): treat as over the cap
            self._done()
            self._refuse(request)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception as err:  # a timeout or a client gone: its connection only
            LOG.debug("metrics endpoint: connection from %s ended: %r", client_address, err)
        finally:
            self.shutdown_request(request)
            self._done()

    def _done(self) -> None:
        with self._lock:
            self.active -= 1
        self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        with self._lock:  # counted before the close, so a client seeing the close sees the count
            self.refused += 1
            now = time.monotonic()
            log = now - self._refusal_logged_at >= _REFUSAL_LOG_INTERVAL
            if log:
                count, self._refused_logged = self.refused - self._refused_logged, self.refused
                self._refusal_logged_at = now
        try:
            request.setblocking(False)
            request.send(_REFUSAL)
        except OSError:
            pass
        self.shutdown_request(request)
        if not log:
            return
        LOG.warning("metrics endpoint: %d connection(s) refused: %d already open (the cap); "
                    "a client holding connections open or too many scrapers", count,
                    self.limits.max_connections)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver prints a traceback to stderr here; one bounded debug line instead."""
        LOG.debug("metrics endpoint: error serving %s: %.200r", client_address, sys.exc_info()[1])


def start(host: str, port: int, registry: CollectorRegistry,
          limits: Limits | None = None) -> tuple[BoundedWSGIServer, threading.Thread]:
    """Serve ``registry`` at ``http://host:port/metrics`` on a daemon thread; raises OSError."""
    server = BoundedWSGIServer((host, port), limits or Limits())
    server.set_app(make_wsgi_app(registry))
    thread = threading.Thread(target=server.serve_forever, name="metrics-accept", daemon=True)
    thread.start()
    return server, thread
