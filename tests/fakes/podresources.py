"""Emulated kubelet pod APIs: pod resources v1 (``v1.PodResourcesLister``) and HTTPS ``/pods``.

FakePodResources: a real grpcio server on a unix socket; ``set_pod(namespace, name,
[{resource: [ids]}, ...])`` records which devices each container holds, as kubelet would
after Allocate, and ``List`` answers from that.  EMULATED, not kubelet: no CPU/memory/DRA
data, ``Get`` only for known pods, ``GetAllocatableResources`` empty; ``fail_next`` injects
errors.  FakeKubeletPodsAPI: see its docstring.  No pytest imports.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from gpu_plugin.rm._api import api_pb2 as pb
from gpu_plugin.rm._api import api_pb2_grpc as pb_grpc

#: container name -> resource name -> device IDs
ContainerDevices = Mapping[str, Sequence[str]]


class _Servicer(pb_grpc.PodResourcesListerServicer):
    def __init__(self, owner: FakePodResources) -> None:
        self.owner = owner

    def _check(self, context: grpc.ServicerContext) -> None:
        with self.owner.lock:
            self.owner.calls += 1
            if self.owner.failures:
                self.owner.failures -= 1
                context.abort(self.owner.failure_code, "injected failure")

    def List(self, request: pb.ListPodResourcesRequest, context: grpc.ServicerContext) -> Any:
        self._check(context)
        with self.owner.lock:
            return pb.ListPodResourcesResponse(pod_resources=[self.owner.message(k) for k in self.owner.pods])

    def Get(self, request: pb.GetPodResourcesRequest, context: grpc.ServicerContext) -> Any:
        self._check(context)
        with self.owner.lock:
            key = (request.pod_namespace, request.pod_name)
            if key not in self.owner.pods:
                context.abort(grpc.StatusCode.NOT_FOUND, f"pod {request.pod_name} not found")
            return pb.GetPodResourcesResponse(pod_resources=self.owner.message(key))

    def GetAllocatableResources(self, request: pb.AllocatableResourcesRequest,
                                context: grpc.ServicerContext) -> Any:
        self._check(context)
        return pb.AllocatableResourcesResponse()


class FakePodResources:
    """``start()`` serves on ``<short tmp dir>/kubelet.sock`` (or ``socket_path``); ``stop()`` removes it."""

    def __init__(self, socket_path: str | None = None) -> None:
        self._tmp = None if socket_path else tempfile.mkdtemp(prefix="podres-", dir="/tmp")
        self.socket_path = socket_path or os.path.join(self._tmp or "", "kubelet.sock")
        self.lock = threading.Lock()
        #: (namespace, name) -> list of containers (name, {resource: [ids]})
        self.pods: dict[tuple[str, str], list[tuple[str, dict[str, list[str]]]]] = {}
        self.calls = 0
        self.failures = 0
        self.failure_code = grpc.StatusCode.UNAVAILABLE
        self._server: grpc.Server | None = None

    def set_pod(self, namespace: str, name: str,
                containers: Sequence[ContainerDevices | tuple[str, ContainerDevices]] = ({},)) -> None:
        """Record a pod; each container is ``{resource: [ids]}`` or ``(name, {resource: [ids]})``."""
        entries = []
        for i, c in enumerate(containers):
            cname, devices = c if isinstance(c, tuple) else (f"c{i}", c)
            entries.append((cname, {r: list(ids) for r, ids in devices.items()}))
        with self.lock:
            self.pods[(namespace, name)] = entries

    def remove_pod(self, namespace: str, name: str) -> None:
        with self.lock:
            self.pods.pop((namespace, name), None)

    def fail_next(self, times: int = 1, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        with self.lock:
            self.failures, self.failure_code = times, code

    def message(self, key: tuple[str, str]) -> pb.PodResources:
        containers = [pb.ContainerResources(
            name=cname, devices=[pb.ContainerDevices(resource_name=r, device_ids=ids)
                                 for r, ids in devs.items()])
            for cname, devs in self.pods[key]]
        return pb.PodResources(namespace=key[0], name=key[1], containers=containers)

    def start(self) -> FakePodResources:
        server = grpc.server(ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_PodResourcesListerServicer_to_server(_Servicer(self), server)  # type: ignore[no-untyped-call]
        if server.add_insecure_port(f"unix:{self.socket_path}") == 0:
            raise RuntimeError(f"cannot bind {self.socket_path}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0).wait()
            self._server = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        elif os.path.exists(self.socket_path):
            os.unlink(self.socket_path)

    def __enter__(self) -> FakePodResources:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeKubeletPodsAPI:
    """Emulated kubelet HTTPS ``GET /pods`` (port 10250 in a cluster; here 127.0.0.1:random).

    A self-signed cert for DNS name ``node_name`` (made with the ``openssl`` CLI) is written to
    ``cert_path``; requests must carry ``Authorization: Bearer <token>`` (``token_path``) or get
    401.  ``pods`` is the list of pod JSON objects served; ``status`` forces an error status,
    ``delay`` slows every answer (for client timeouts).  EMULATED: no other kubelet endpoint.
    """

    def __init__(self, directory: str, node_name: str, token: str = "fake-token") -> None:
        import subprocess

        self.node_name, self.token = node_name, token
        self.cert_path = os.path.join(directory, "kubelet.crt")
        self.key_path = os.path.join(directory, "kubelet.key")
        self.token_path = os.path.join(directory, "token")
        with open(self.token_path, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-keyout", self.key_path, "-out", self.cert_path, "-subj", f"/CN={node_name}",
                        "-addext", f"subjectAltName=DNS:{node_name}"], check=True, capture_output=True)
        self.pods: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0
        self.requests = 0
        self._httpd: Any = None

    def start(self) -> FakeKubeletPodsAPI:
        import json
        import ssl
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                owner.requests += 1
                if owner.delay:
                    time.sleep(owner.delay)
                if self.headers.get("Authorization") != f"Bearer {owner.token}":
                    code, body = 401, {"kind": "Status", "code": 401}
                elif self.path != "/pods":
                    code, body = 404, {"kind": "Status", "code": 404}
                elif owner.status != 200:
                    code, body = owner.status, {"kind": "Status", "code": owner.status}
                else:
                    code, body = 200, {"kind": "PodList", "apiVersion": "v1", "items": owner.pods}
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._httpd = httpd
        return self

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
