"""A tiny HTTP(S) server standing in for XPU Manager's REST endpoint: ``GET /metrics``.

Emulated: only the Prometheus text body of ``/metrics`` (whatever the test sets) and the HTTP
status; optionally TLS with a given certificate. Counts requests so tests can wait for a scrape.
Used by tests and never by production code.
"""
from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeXpumMetrics:
    """``with FakeXpumMetrics() as xpum: xpum.set_metrics(text); ... xpum.port``."""

    def __init__(self, *, certfile: str | None = None, keyfile: str | None = None) -> None:
        self.body = b""
        self.status = 200
        self.requests = 0
        self._cond = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with fake._cond:
                    status, body = fake.status, fake.body
                if self.path != "/metrics":
                    status, body = 404, b"not found\n"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with fake._cond:
                    fake.requests += 1
                    fake._cond.notify_all()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-xpum", daemon=True)

    def set_metrics(self, text: str, status: int = 200) -> None:
        with self._cond:
            self.body, self.status = text.encode(), status

    def wait_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` requests were answered in total."""
        with self._cond:
            return self._cond.wait_for(lambda: self.requests >= count, timeout)

    def start(self) -> FakeXpumMetrics:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeXpumMetrics:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
