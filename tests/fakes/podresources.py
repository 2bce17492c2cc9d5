"""An emulated kubelet pod resources API v1 (``v1.PodResourcesLister``) on a real unix socket.

Real grpcio server for tests and the demo: ``set_pod(namespace, name, [{resource: [ids]}, ...])``
records which devices each container of a pod holds, as kubelet would after Allocate; ``List``
answers from that.  EMULATED, not kubelet: no CPU/memory/DRA data, ``Get`` only for known pods,
``GetAllocatableResources`` empty.  ``fail_next(code)`` makes the next calls fail.
No pytest imports.
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
            name=cname, devices=[pb.ContainerDevices(resource_name=r, device_ids=ids) for r, ids in devs.items()])
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
