"""Emulated Kubernetes API server: a small real HTTP server for tests and the demo.

Serves discovery, nodes and a few namespaced kinds (serviceaccounts, configmaps, daemonsets, ...)
well enough for the official ``kubernetes`` Python client and ``kubectl apply --validate=false``.
This module owns the HTTP side: lifecycle, request records, fault injection (error statuses,
dropped connections, delays; method ``WATCH`` targets watch requests only), streamed watches
(``?watch=true``, chunked, history and 410 in kube_watch); objects live in kube_store, patch
rules in kube_semantics, what is refused in kube_validation. EMULATED, not Kubernetes: no
auth, no admission, no OpenAPI. tests/kube_contract.py holds the checks this server and the
real kube-apiserver v1.34.1 both pass. No pytest imports.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.kube_semantics import RESOURCES, ApiError, Obj, route, status_body
from tests.fakes.kube_store import KubeStore
from tests.fakes.kube_watch import Bookmark, bookmark_line, event_line, gone_line

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received: method, path (no query), query dict, content type, parsed body."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any


@dataclass
class _Injection:
    method: str
    pattern: re.Pattern[str]
    times: int
    status: int = 0          # 0 = no error response (drop or delay only)
    drop: bool = False
    delay: float = 0.0
    reason: str = ""
    message: str = ""


def write_kubeconfig(path: str | Path, server_url: str) -> Path:
    """Write a kubeconfig (context ``fake``) pointing at ``server_url``; return its path."""
    path = Path(path)
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "fake", "preferences": {},
        "clusters": [{"name": "fake", "cluster": {"server": server_url}}],
        "users": [{"name": "fake", "user": {"token": "fake-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
    return path




class _Server(ThreadingHTTPServer):
    """socketserver prints a traceback for every request that fails; a client that went away
    (a killed conductor, a watch cut short) is normal here and logged at debug only."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            LOG.debug("fake API: client %s went away", client_address)
            return
        super().handle_error(request, client_address)


class FakeKubeAPI:
    """The emulated API server. ``start()``/``stop()`` or use it as a context manager.

    ``url`` is ``http://127.0.0.1:PORT``; ``write_kubeconfig(path)`` points clients at it.
    ``requests`` / ``patches`` hold every RecordedRequest / every PATCH, in arrival order.
    Namespaces default, kube-system, kube-public and kube-node-lease exist from the start.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._lock = threading.RLock()
        self.store = KubeStore()
        self._injections: list[_Injection] = []
        self._httpd: _Server | None = None
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self.requests: list[RecordedRequest] = []
        self.patches: list[RecordedRequest] = []
        self.patch_applied: list[float] = []  # time.perf_counter() when each PATCH was stored

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeKubeAPI:
        """Serve (again): a restarted server keeps its port and its objects, as after an outage."""
        httpd = _Server(self._address, _make_handler(self))
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._address = (self._address[0], int(httpd.server_address[1]))
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-kube-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open (keep-alive) connection, like a crashed API server."""
        self.store.events.drop_watches()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:
            connections, self._connections = set(self._connections), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("fake API server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig for this server (call after ``start()``)."""
        return write_kubeconfig(path, self.url)

    # -- seeding and inspection (test side, no HTTP) -----------------------------------------
    def add_node(self, name: str, system_uuid: str, labels: dict[str, str] | None = None) -> Obj:
        """Create a Node whose ``status.nodeInfo.systemUUID`` is ``system_uuid``."""
        return self.put_object({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": dict(labels or {})},
            "status": {"nodeInfo": {
                "systemUUID": system_uuid, "machineID": system_uuid.replace("-", "").lower(),
                "bootID": str(uuid.uuid4()), "architecture": "amd64", "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 11 (bullseye)", "kernelVersion": "5.10.0-6-amd64",
                "containerRuntimeVersion": "containerd://1.7.0", "kubeletVersion": "v1.32.4",
                "kubeProxyVersion": "v1.32.4"}, "capacity": {}, "allocatable": {}},
        })

    def put_object(self, obj: Obj) -> Obj:
        """Create or replace any served object from its apiVersion/kind/metadata."""
        return self.store.put_object(obj)

    def get_object(self, api_version: str, plural: str, name: str, namespace: str = "") -> Obj | None:
        return self.store.get_object(api_version, plural, name, namespace)

    def list_objects(self, api_version: str, plural: str) -> list[Obj]:
        return self.store.list_objects(api_version, plural)

    def get_node(self, name: str) -> Obj | None:
        return self.get_object("v1", "nodes", name)

    def node_labels(self, name: str) -> dict[str, str]:
        node = self.get_node(name)
        if node is None:
            raise KeyError(name)
        return dict(node["metadata"].get("labels") or {})

    def delete_node(self, name: str) -> bool:
        return self.store.delete_object(("", "v1", "nodes", "", name)) is not None

    def drop_watches(self) -> None:
        """End every open watch stream now (the client sees a normal end of stream)."""
        self.store.events.drop_watches()

    def compact(self) -> int:
        """Forget the event history: a watch resumed from any older version gets 410 Gone."""
        revision = self.store.revision
        self.store.events.compact(revision)
        return revision

    def watch_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if _is_watch(r.method, r.query)]

    def list_requests(self, path: str = "/api/v1/nodes") -> list[RecordedRequest]:
        """Collection GETs of ``path`` that were not watches (LISTs)."""
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and r.path == path
                    and not _is_watch(r.method, r.query)]

    def clear_records(self) -> None:
        with self._lock:
            self.requests.clear()
            self.patches.clear()
            self.patch_applied.clear()

    # -- fault injection ---------------------------------------------------------------------
    def inject(self, method: str, path_regex: str, status: int = 500, times: int = 1,
               reason: str = "", message: str = "") -> None:
        """The next ``times`` matching requests get a Status ``status`` ("*" matches any method)."""
        self._add(_Injection(method, re.compile(path_regex), times, status=status, reason=reason,
                             message=message or f"injected failure ({status})"))

    def inject_drop(self, method: str, path_regex: str, times: int = 1, after: float = 0.0) -> None:
        """The next ``times`` matching requests: connection closed without any response (after
        ``after`` seconds: a request that hangs, then fails, never applied)."""
        self._add(_Injection(method, re.compile(path_regex), times, drop=True, delay=after))

    def inject_delay(self, method: str, path_regex: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` matching requests are answered normally after ``seconds``."""
        self._add(_Injection(method, re.compile(path_regex), times, delay=seconds))

    def clear_injections(self) -> None:
        with self._lock:
            self._injections.clear()

    def _add(self, injection: _Injection) -> None:
        with self._lock:
            self._injections.append(injection)

    def _take_injection(self, method: str, path: str) -> _Injection | None:
        with self._lock:
            for inj in self._injections:
                if inj.times > 0 and inj.method in ("*", method) and inj.pattern.search(path):
                    inj.times -= 1
                    return inj
        return None


def _make_handler(api: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes: without TCP_NODELAY every response
        # waits ~40 ms for the client's delayed ACK
        disable_nagle_algorithm = True
        timeout = 30

        def setup(self) -> None:
            super().setup()
            with api._lock:
                api._connections.add(self.connection)

        def finish(self) -> None:
            with api._lock:
                api._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            ctype = self.headers.get("Content-Type", "")
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            query = parse_qs(url.query)
            record = RecordedRequest(self.command, url.path, query, ctype, body)
            with api._lock:
                api.requests.append(record)
                if self.command == "PATCH":
                    api.patches.append(record)
            watch = _is_watch(self.command, query)
            injection = api._take_injection("WATCH" if watch else self.command, url.path)
            if injection is not None:
                time.sleep(injection.delay)
                if injection.drop:
                    self.close_connection = True
                    return
                if injection.status:
                    reason = injection.reason or ApiError(injection.status, "").reason
                    self._reply(injection.status, status_body(injection.status, injection.message, reason))
                    return
            if watch:
                self._watch(url.path, query)
                return
            try:
                if isinstance(body, str):
                    raise ApiError(400, "request body is not valid JSON")
                code, payload = api.store.handle(self.command, url.path, query, ctype, body)
                if self.command == "PATCH":
                    with api._lock:
                        api.patch_applied.append(time.perf_counter())
            except ApiError as exc:
                code, payload = exc.code, status_body(exc.code, exc.message, exc.reason, exc.details)
            self._reply(code, payload)

        def _watch(self, path: str, query: dict[str, list[str]]) -> None:
            key, subresource = route([p for p in path.split("/") if p])
            if key is None or key[4] or subresource:
                self._reply(404, status_body(404, "the server could not find the requested resource",
                                             "NotFound", {}))
                return
            version = query.get("resourceVersion", ["0"])[0] or "0"
            if not version.isdigit():  # the real server: 500 without a reason
                self._reply(500, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": f'resourceVersion: Invalid value: "{version[:100]}": '
                                  f'strconv.ParseUint: parsing "{version[:100]}": invalid syntax',
                                  "code": 500})
                return
            since = int(version)
            try:
                timeout = float(query.get("timeoutSeconds", ["1800"])[0])
            except ValueError:
                self._reply(400, status_body(400, "bad timeoutSeconds", "BadRequest"))
                return
            bookmarks = query.get("allowWatchBookmarks", [""])[0] in ("true", "1")
            kind = RESOURCES[key[:3]][0]
            api_version = f"{key[0]}/{key[1]}" if key[0] else key[1]
            deadline = time.monotonic() + timeout
            initial, start = api.store.snapshot(key) if since == 0 else ([], since)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            # the connection stays open after the stream's last chunk, as kube-apiserver's does
            # (HTTP/1.1 keep-alive): closing it without "Connection: close" let a client reuse it
            # from its pool and fail with RemoteDisconnected on its next request
            try:
                for obj in initial:
                    self._chunk(json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n")
                for event in api.store.events.follow(start, lambda k: _same_collection(k, key),
                                                     deadline, bookmarks):
                    if event is None:
                        self._chunk(gone_line(since, api.store.events.oldest))
                    elif isinstance(event, Bookmark):
                        self._chunk(bookmark_line(event, api_version, kind))
                    else:
                        self._chunk(event_line(event))
                self._chunk(b"")
            except OSError:  # the client went away mid-stream
                self.close_connection = True
                return

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _reply(self, code: int, payload: Obj) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
            LOG.debug("fake-kube-api: %s", format % args)

    return Handler


def _is_watch(method: str, query: dict[str, list[str]]) -> bool:
    return method == "GET" and query.get("watch", [""])[0] in ("true", "1")


def _same_collection(key: tuple[str, str, str, str, str], watched: tuple[str, str, str, str, str]) -> bool:
    return key[:3] == watched[:3] and (not watched[3] or key[3] == watched[3])


def main(argv: list[str] | None = None) -> int:
    """Run the fake API server in the foreground (for demos): prints its URL, writes a kubeconfig."""
    parser = argparse.ArgumentParser(description="emulated Kubernetes API server (tests/demo only)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", default="fake-kubeconfig.yaml")
    parser.add_argument("--node", action="append", default=[], metavar="NAME=SYSTEM_UUID")
    args = parser.parse_args(argv)
    # Ctrl-C ends it even when started with SIGINT ignored (inherited by a background job of a
    # non-interactive shell; Python then installs no KeyboardInterrupt handler).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    api = FakeKubeAPI(port=args.port).start()
    for spec in args.node:
        name, _, system_uuid = spec.partition("=")
        api.add_node(name, system_uuid)
    api.write_kubeconfig(args.kubeconfig)
    print(f"fake Kubernetes API at {api.url}; kubeconfig {args.kubeconfig}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
