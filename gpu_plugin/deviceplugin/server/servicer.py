"""kubelet's DevicePlugin gRPC service over one resource's :class:`DeviceState`.

Converts the plain dataclasses of ``api.py`` to protobuf and maps refusals to gRPC status
codes.  Allocate is the hot unary call: its log line is rate-limited (:class:`AllocationLog`)
and the protobuf form of an unchanged allocation is reused.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import grpc

from gpu_plugin.deviceplugin import api
from gpu_plugin.deviceplugin._api import api_pb2 as pb
from gpu_plugin.deviceplugin._api import api_pb2_grpc as pb_grpc
from gpu_plugin.deviceplugin.devices import DeviceState
from gpu_plugin.deviceplugin.metrics import NO_METRICS, ResourceMetrics

LOG = logging.getLogger(__name__)

_PB_CACHE_SIZE = 1024
#: kubelet dials plugins with grpc-go's default receive limit: a bigger ListAndWatch response is dropped.
KUBELET_MAX_MESSAGE = 4 * 1024 * 1024
_CODES = {api.UnknownDeviceError: grpc.StatusCode.INVALID_ARGUMENT,
          api.UnhealthyDeviceError: grpc.StatusCode.INVALID_ARGUMENT,
          api.AllocationError: grpc.StatusCode.INVALID_ARGUMENT}


def _to_pb_allocation(alloc: api.ContainerAllocation) -> pb.ContainerAllocateResponse:
    return pb.ContainerAllocateResponse(
        envs=dict(alloc.envs), annotations=dict(alloc.annotations),
        mounts=[pb.Mount(container_path=m.container_path, host_path=m.host_path, read_only=m.read_only)
                for m in alloc.mounts],
        devices=[pb.DeviceSpec(container_path=d.container_path, host_path=d.host_path,
                               permissions=d.permissions) for d in alloc.devices],
        cdi_devices=[pb.CDIDevice(name=name) for name in alloc.cdi_devices])


def _list_response(snapshot: Sequence[tuple[str, str, tuple[int, ...]]]) -> pb.ListAndWatchResponse:
    """kubelet's device list, each device added in place (``devices.add``) with one NUMANode list
    per distinct topology: building Device messages and passing them to the constructor copies
    each one again (8,064 IDs: 43 -> 12 ms of CPU before the first ListAndWatch answer)."""
    response = pb.ListAndWatchResponse()
    add = response.devices.add
    topologies: dict[tuple[int, ...], list[pb.NUMANode]] = {}
    for dev_id, health, numa in snapshot:
        device = add(ID=dev_id, health=health)
        if numa:
            nodes = topologies.get(numa)
            if nodes is None:
                nodes = topologies[numa] = [pb.NUMANode(ID=n) for n in numa]
            device.topology.nodes.extend(nodes)
    return response


class AllocationLog:
    """The INFO line of each Allocate, rate-limited by a token bucket so a flood of calls can't
    make logging the main cost of serving them.

    Up to ``burst`` lines at once (every pod start of a busy node), refilled at ``rate`` per
    second; past that a call is logged at DEBUG and the next INFO line says how many were.
    """

    def __init__(self, name: str, burst: int = 20, rate: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._burst = float(burst)
        self._rate = rate
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._suppressed = 0
        self._lock = threading.Lock()

    def allocated(self, device_ids: Sequence[str]) -> None:
        now = self._clock()
        with self._lock:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            info = self._tokens >= 1.0
            if info:
                self._tokens -= 1.0
                suppressed, self._suppressed = self._suppressed, 0
            else:
                self._suppressed += 1
        if info and suppressed:
            LOG.info("%s: allocated %s (%d earlier Allocate calls logged at DEBUG only: rate limit)",
                     self._name, ",".join(device_ids), suppressed)
        elif info:
            LOG.info("%s: allocated %s", self._name, ",".join(device_ids))
        else:
            LOG.debug("%s: allocated %s", self._name, ",".join(device_ids))


class Servicer(pb_grpc.DevicePluginServicer):
    """kubelet's DevicePlugin service over one resource's ``DeviceState``."""

    def __init__(self, state: DeviceState, name: str,
                 on_stream_end: Callable[[float], None] | None = None,
                 metrics: ResourceMetrics = NO_METRICS) -> None:
        self._state = state
        self._metrics = metrics
        self._name = name
        #: called with the stream's age (s) when a ListAndWatch stream ends while serving
        self._on_stream_end = on_stream_end
        self._oversize_logged = -1  #: the device list version last logged as too big for kubelet
        self._log = AllocationLog(name)
        #: The protobuf form of the last allocations (keyed by object identity: DeviceState
        #: returns the same ContainerAllocation object while the devices are unchanged).
        self._pb_cache: dict[int, tuple[api.ContainerAllocation, pb.ContainerAllocateResponse]] = {}

    def _to_pb(self, alloc: api.ContainerAllocation) -> pb.ContainerAllocateResponse:
        cached = self._pb_cache.get(id(alloc))
        if cached is not None and cached[0] is alloc:
            return cached[1]
        message = _to_pb_allocation(alloc)
        if len(self._pb_cache) >= _PB_CACHE_SIZE:
            self._pb_cache.clear()
        self._pb_cache[id(alloc)] = (alloc, message)
        return message

    def _abort(self, context: grpc.ServicerContext, err: Exception) -> NoReturn:
        if isinstance(err, api.DevicePluginError):
            LOG.warning("%s: request refused: %s", self._name, err)
            context.abort(_CODES.get(type(err), grpc.StatusCode.INVALID_ARGUMENT), str(err))
        LOG.error("%s: request failed: %r", self._name, err, exc_info=err)
        context.abort(grpc.StatusCode.INTERNAL, f"{self._name}: internal error: {err}")
        raise AssertionError("context.abort returned")  # pragma: no cover

    def GetDevicePluginOptions(self, request: pb.Empty, context: grpc.ServicerContext) -> Any:
        return options()

    def ListAndWatch(self, request: pb.Empty, context: grpc.ServicerContext) -> Any:
        if not self._state.open_stream():
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{self._name}: too many ListAndWatch streams")
        context.add_callback(self._state.wake)
        LOG.debug("%s: ListAndWatch stream opened", self._name)
        self._metrics.streams(+1)
        started = time.monotonic()
        try:
            sent = -1
            while True:
                update = self._state.wait_change(sent, context.is_active)
                if update is None:
                    return
                sent, snapshot = update
                LOG.debug("%s: sending %d devices to kubelet", self._name, len(snapshot))
                try:
                    response = _list_response(snapshot)
                except Exception as err:  # noqa: BLE001 - ends this stream; the lifecycle re-registers
                    LOG.error("%s: cannot send the device list to kubelet, ending the stream: %r",
                              self._name, err)
                    context.abort(grpc.StatusCode.INTERNAL, f"{self._name}: cannot encode the device list")
                if response.ByteSize() > KUBELET_MAX_MESSAGE and sent != self._oversize_logged:
                    self._oversize_logged = sent
                    LOG.error("%s: %d devices make a %d-byte device list, over kubelet's %d-byte limit: "
                              "kubelet will drop it (advertise fewer, e.g. a lower -shared-dev-num)",
                              self._name, len(snapshot), response.ByteSize(), KUBELET_MAX_MESSAGE)
                yield response
        finally:
            self._state.close_stream()
            self._metrics.streams(-1)
            LOG.debug("%s: ListAndWatch stream closed", self._name)
            if self._on_stream_end is not None and not self._state.closed:
                self._on_stream_end(time.monotonic() - started)

    def Allocate(self, request: pb.AllocateRequest, context: grpc.ServicerContext) -> Any:
        with self._metrics.allocate():
            return self._allocate(request, context)

    def _allocate(self, request: pb.AllocateRequest, context: grpc.ServicerContext) -> Any:
        responses = []
        for creq in request.container_requests:
            try:
                alloc = self._state.allocate(list(creq.devices_ids))
            except Exception as err:  # noqa: BLE001 - mapped to a gRPC status, server keeps serving
                self._abort(context, err)
            self._log.allocated(creq.devices_ids)
            responses.append(self._to_pb(alloc))
        return pb.AllocateResponse(container_responses=responses)

    def GetPreferredAllocation(self, request: pb.PreferredAllocationRequest,
                               context: grpc.ServicerContext) -> Any:
        with self._metrics.preferred():
            return self._preferred(request, context)

    def _preferred(self, request: pb.PreferredAllocationRequest, context: grpc.ServicerContext) -> Any:
        responses = []
        for creq in request.container_requests:
            try:
                ids = self._state.preferred(list(creq.available_deviceIDs),
                                            list(creq.must_include_deviceIDs), creq.allocation_size)
            except Exception as err:  # noqa: BLE001 - mapped to a gRPC status, server keeps serving
                self._abort(context, err)
            responses.append(pb.ContainerPreferredAllocationResponse(deviceIDs=ids))
        return pb.PreferredAllocationResponse(container_responses=responses)

    def PreStartContainer(self, request: pb.PreStartContainerRequest, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                      f"{self._name}: PreStartContainer() should not be called as this device plugin "
                      "doesn't implement it")


def options() -> pb.DevicePluginOptions:
    """The options advertised in RegisterRequest and GetDevicePluginOptions (as upstream)."""
    return pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True)
