"""Client of kubelet's pod resources API v1 (``v1.PodResourcesLister.List``) over its unix socket.

The resource manager asks it which containers of which pods already hold devices of our
resources: that is how it tells the container kubelet is allocating now (upstream's
``findAllocationPodCandidates``).  A fresh channel per call with upstream's 5 s timeout and
4 MiB message limit; the only module (with its package) that touches the generated stubs.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from gpu_plugin.rm._api import api_pb2 as pb
from gpu_plugin.rm._api import api_pb2_grpc as pb_grpc
from gpu_plugin.rm.config import POD_RESOURCES_SOCKET

#: Upstream's grpcAddress (k8s.io/kubernetes pkg/kubelet/apis/podresources).
DEFAULT_SOCKET = POD_RESOURCES_SOCKET
TIMEOUT = 5.0
MAX_MESSAGE = 4 * 1024 * 1024


class PodResourcesError(Exception):
    """The pod resources service could not be reached or failed."""


@dataclass(frozen=True)
class PodResources:
    """One pod as kubelet reports it: per container, the resource names it holds devices of."""

    name: str
    namespace: str
    containers: tuple[frozenset[str], ...]

    def allocated_containers(self, resource_names: Sequence[str]) -> int:
        """Containers holding a device of any of ``resource_names``."""
        return sum(1 for held in self.containers if held.intersection(resource_names))


class PodResourcesClient:
    """Lists pod resources from kubelet at ``socket_path``."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = TIMEOUT) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def list(self) -> list[PodResources]:
        """All pods kubelet knows with their device assignments; raises :class:`PodResourcesError`."""
        options = [("grpc.max_receive_message_length", MAX_MESSAGE)]
        try:
            with grpc.insecure_channel(f"unix:{os.fspath(self.socket_path)}", options=options) as channel:
                stub = pb_grpc.PodResourcesListerStub(channel)  # type: ignore[no-untyped-call]
                reply = stub.List(pb.ListPodResourcesRequest(), timeout=self.timeout)
        except grpc.RpcError as err:
            raise PodResourcesError(f"Could not read plugin resources via grpc from {self.socket_path}: "
                                    f"{err.code()}") from None
        return [PodResources(p.name, p.namespace,
                             tuple(frozenset(d.resource_name for d in c.devices) for c in p.containers))
                for p in reply.pod_resources]
