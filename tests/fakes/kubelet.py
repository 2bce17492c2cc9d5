"""An emulated kubelet device manager for tests and the demo (a test double, not kubelet).

Real grpcio on real unix sockets: a ``Registration`` server on ``<dir>/kubelet.sock`` records
every RegisterRequest, then — like kubelet — dials the plugin's endpoint in the same dir, asks
GetDevicePluginOptions and keeps a ListAndWatch stream open, remembering the latest device list
per resource.  As kubelet v1.34.1 does (pinned by tests/kubelet_contract.py on both): Register
answers only once the endpoint was dialed (up to ``dial_timeout``, kubelet's 10 s) and asked its
options, so a registration of an endpoint nobody serves fails; every refusal is a plain error
(gRPC UNKNOWN) with kubelet's message; the endpoint is joined to the dir as Go's filepath.Join
does; ``restart()`` removes the sockets in the dir (by file type, whatever their name) but no
other file.  Emulated, not real: no pods, no checkpoint, no grace period (a plugin whose stream
ends is marked all-Unhealthy).
No pytest imports: usable from fixtures and from ``python -m tests.fakes.kubelet DIR``.
"""
from __future__ import annotations

import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from gpu_plugin.deviceplugin._api import api_pb2 as pb
from gpu_plugin.deviceplugin._api import api_pb2_grpc as pb_grpc

SUPPORTED_VERSION = "v1beta1"
DIAL_TIMEOUT = 10.0  # s: kubelet's dial of a registering plugin (grpc.WithBlock, 10 s)


@dataclass(frozen=True)
class Registration:
    """One RegisterRequest as the fake kubelet received it."""

    version: str
    endpoint: str
    resource_name: str
    pre_start_required: bool
    get_preferred_allocation_available: bool
    generation: int
    received_at: float  # time.monotonic()


@dataclass(frozen=True)
class AdvertisedDevice:
    """One device of the latest ListAndWatch response."""

    id: str
    health: str
    numa_nodes: tuple[int, ...] = ()


class PluginClient:
    """Calls a plugin's DevicePlugin service over its unix socket (what kubelet would send)."""

    def __init__(self, socket_path: str | os.PathLike[str], timeout: float = 5.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix:{os.fspath(socket_path)}")
        self.stub = pb_grpc.DevicePluginStub(self.channel)

    def options(self) -> pb.DevicePluginOptions:
        return self.stub.GetDevicePluginOptions(pb.Empty(), timeout=self.timeout)

    def allocate(self, *containers: Sequence[str]) -> pb.AllocateResponse:
        """Allocate; one argument (a list of device IDs) per container."""
        request = pb.AllocateRequest(container_requests=[
            pb.ContainerAllocateRequest(devices_ids=list(ids)) for ids in containers])
        return self.stub.Allocate(request, timeout=self.timeout)

    def preferred(self, available: Sequence[str], must_include: Sequence[str] = (),
                  size: int = 1) -> list[str]:
        """GetPreferredAllocation for one container; returns the preferred IDs."""
        request = pb.PreferredAllocationRequest(container_requests=[pb.ContainerPreferredAllocationRequest(
            available_deviceIDs=list(available), must_include_deviceIDs=list(must_include),
            allocation_size=size)])
        response = self.stub.GetPreferredAllocation(request, timeout=self.timeout)
        return list(response.container_responses[0].deviceIDs)

    def pre_start(self, device_ids: Sequence[str]) -> pb.PreStartContainerResponse:
        return self.stub.PreStartContainer(pb.PreStartContainerRequest(devices_ids=list(device_ids)),
                                           timeout=self.timeout)

    def list_and_watch(self) -> Any:
        """The raw ListAndWatch call (an iterator of responses; ``cancel()`` it when done)."""
        return self.stub.ListAndWatch(pb.Empty())

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> PluginClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Endpoint:
    """kubelet's side of one registered plugin (dialed, options known): the ListAndWatch reader."""

    def __init__(self, owner: FakeKubelet, registration: Registration, client: PluginClient) -> None:
        self.owner = owner
        self.registration = registration
        self.client = client
        self.call: Any = None
        self.cancelled = False
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"fake-kubelet-{registration.resource_name}")
        self.thread.start()

    def _run(self) -> None:
        resource = self.registration.resource_name
        try:
            with self.owner._cond:
                if self.cancelled:
                    return
                self.call = self.client.list_and_watch()
            for response in self.call:
                received_at = time.monotonic()
                devices = {d.ID: AdvertisedDevice(d.ID, d.health,
                                                  tuple(n.ID for n in d.topology.nodes) if d.topology else ())
                           for d in response.devices}
                self.owner._record_devices(self, devices, received_at)
        except (grpc.RpcError, grpc.FutureCancelledError) as err:
            if not self.cancelled:
                self.owner._record_event(f"{resource}: endpoint {self.registration.endpoint} lost: {err!r}")
        finally:
            self.owner._endpoint_ended(self)
            self.client.close()

    def cancel(self) -> None:
        with self.owner._cond:
            self.cancelled = True
            if self.call is not None:
                self.call.cancel()


class _Registrar(pb_grpc.RegistrationServicer):
    def __init__(self, owner: FakeKubelet) -> None:
        self.owner = owner

    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.Empty:
        error = self.owner._register(request)
        if error:  # kubelet returns a Go error: gRPC status UNKNOWN
            context.abort(grpc.StatusCode.UNKNOWN, error)
        if self.owner.before_reply is not None:
            self.owner.before_reply(request.resource_name)
        return pb.Empty()


class FakeKubelet:
    """Emulated kubelet device manager on ``<kubelet_dir>/kubelet.sock`` (see module docstring).

    Thread-safe; every query reflects the current generation (bumped by ``restart()``), while
    ``registrations`` keeps the whole history.  ``before_reply(resource)``, if set, runs after a
    registration is accepted (its stream already being opened, as kubelet does) and before the
    plugin gets the reply: a test can act in that window.  ``before_dial(resource)``, if set,
    runs when a Register arrives, before kubelet dials the plugin's endpoint.
    """

    def __init__(self, kubelet_dir: str | os.PathLike[str], socket_name: str = "kubelet.sock", *,
                 before_reply: Callable[[str], None] | None = None,
                 before_dial: Callable[[str], None] | None = None,
                 dial_timeout: float = DIAL_TIMEOUT) -> None:
        self.kubelet_dir = Path(kubelet_dir)
        self.before_reply = before_reply
        self.before_dial = before_dial
        self.dial_timeout = dial_timeout
        self.socket_path = self.kubelet_dir / socket_name
        self.generation = 0
        self._cond = threading.Condition(threading.RLock())
        self._server: grpc.Server | None = None
        self._registrations: list[Registration] = []
        self._rejected: list[str] = []
        self._events: list[str] = []
        self._endpoints: dict[str, _Endpoint] = {}
        self._devices: dict[str, dict[str, AdvertisedDevice]] = {}
        self._updates: dict[str, int] = {}
        self._updated_at: dict[str, float] = {}  #: resource -> time.monotonic() of its last response
        self._options: dict[str, pb.DevicePluginOptions] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeKubelet:
        self.kubelet_dir.mkdir(parents=True, exist_ok=True)
        server = grpc.server(ThreadPoolExecutor(4, thread_name_prefix="fake-kubelet"))
        pb_grpc.add_RegistrationServicer_to_server(_Registrar(self), server)
        server.add_insecure_port(f"unix:{os.fspath(self.socket_path)}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving kubelet.sock (removed) and drop every plugin stream."""
        if self._server is not None:
            self._server.stop(0).wait(5)
            self._server = None
        with self._cond:
            endpoints = list(self._endpoints.values())
            self._endpoints.clear()
        for endpoint in endpoints:
            endpoint.cancel()
        for endpoint in endpoints:
            endpoint.thread.join(5)

    def restart(self) -> None:
        """Like a kubelet restart: stop, delete every socket in the dir (kubelet's
        CleanupPluginDirectory: sockets by file type, other files kept), start afresh."""
        self.stop()
        for path in self.kubelet_dir.iterdir():
            try:
                if stat.S_ISSOCK(path.stat().st_mode):
                    path.unlink()
            except FileNotFoundError:
                continue
        with self._cond:
            self.generation += 1
            self._devices.clear()
            self._updates.clear()
            self._updated_at.clear()
            self._options.clear()
        self.start()

    def __enter__(self) -> FakeKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop_stream(self, resource: str) -> None:
        """End ``resource``'s ListAndWatch stream as kubelet does when a Recv fails (a message it
        can't read): devices marked Unhealthy, no new stream until the plugin registers again."""
        with self._cond:
            endpoint = self._endpoints.get(resource)
        if endpoint is None:
            raise LookupError(f"fake kubelet: {resource} has no open stream")
        self._record_event(f"{resource}: stream dropped by kubelet")
        endpoint.cancel()
        endpoint.thread.join(5)

    # -- called from gRPC threads ---------------------------------------------------------------
    def _register(self, request: pb.RegisterRequest) -> str:
        """kubelet's Register: check, dial the endpoint, ask its options, then accept ("" ) or
        return kubelet's error text."""
        if request.version != SUPPORTED_VERSION:
            error = (f"requested API version {_go_quote(request.version)} is not supported by kubelet. "
                     f'Supported version is ["{SUPPORTED_VERSION}"]')
        elif "/" not in request.resource_name or request.resource_name.startswith("kubernetes.io/"):
            error = f"the ResourceName {_go_quote(request.resource_name)} is invalid"
        else:
            error = ""
        client: PluginClient | None = None
        if not error and self.before_dial is not None:
            self.before_dial(request.resource_name)
        if not error:
            # filepath.Join(socketDir, endpoint): cleaned, never absolute on its own
            client = PluginClient(os.path.normpath(f"{self.kubelet_dir}/{request.endpoint}"))
            try:
                options = client.stub.GetDevicePluginOptions(pb.Empty(), timeout=self.dial_timeout,
                                                              wait_for_ready=True)
            except grpc.RpcError as err:
                client.close()
                client = None
                error = ("failed to dial device plugin: context deadline exceeded"
                         if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED else
                         f"failed to get device plugin options: {err.details()}")
        with self._cond:
            if error or client is None:
                self._rejected.append(error)
                self._cond.notify_all()
                return error
            self._options[request.resource_name] = options
            reg = Registration(request.version, request.endpoint, request.resource_name,
                               request.options.pre_start_required,
                               request.options.get_preferred_allocation_available,
                               self.generation, time.monotonic())
            self._registrations.append(reg)
            old = self._endpoints.pop(reg.resource_name, None)
            self._endpoints[reg.resource_name] = _Endpoint(self, reg, client)
            self._cond.notify_all()
        if old is not None:
            old.cancel()
        return ""

    def _record_devices(self, endpoint: _Endpoint, devices: dict[str, AdvertisedDevice],
                        received_at: float) -> None:
        resource = endpoint.registration.resource_name
        with self._cond:
            if self._endpoints.get(resource) is not endpoint:
                return
            self._devices[resource] = devices
            self._updated_at[resource] = received_at
            self._updates[resource] = self._updates.get(resource, 0) + 1
            self._cond.notify_all()

    def _record_event(self, text: str) -> None:
        with self._cond:
            self._events.append(text)

    def _endpoint_ended(self, endpoint: _Endpoint) -> None:
        resource = endpoint.registration.resource_name
        with self._cond:
            if self._endpoints.get(resource) is endpoint:
                del self._endpoints[resource]
                self._devices[resource] = {i: AdvertisedDevice(d.id, "Unhealthy", d.numa_nodes)
                                           for i, d in self._devices.get(resource, {}).items()}
            self._cond.notify_all()

    # -- queries ---------------------------------------------------------------------------------
    @property
    def registrations(self) -> list[Registration]:
        """Every accepted registration since construction (all generations)."""
        with self._cond:
            return list(self._registrations)

    @property
    def rejected(self) -> list[str]:
        with self._cond:
            return list(self._rejected)

    def registered(self, resource: str) -> list[Registration]:
        """Registrations of ``resource`` in the current generation."""
        with self._cond:
            return [r for r in self._registrations
                    if r.resource_name == resource and r.generation == self.generation]

    def connected(self, resource: str) -> bool:
        """True while a ListAndWatch stream of ``resource`` is open."""
        with self._cond:
            return resource in self._endpoints

    def devices(self, resource: str) -> dict[str, AdvertisedDevice]:
        """Latest device list of ``resource`` (empty if none received)."""
        with self._cond:
            return dict(self._devices.get(resource, {}))

    def allocatable(self, resource: str) -> int:
        """Healthy device count, what the node would report as allocatable."""
        return sum(1 for d in self.devices(resource).values() if d.health == "Healthy")

    def updates(self, resource: str) -> int:
        """ListAndWatch responses received for ``resource`` in this generation."""
        with self._cond:
            return self._updates.get(resource, 0)

    def updated_at(self, resource: str) -> float | None:
        """``time.monotonic()`` when the latest ListAndWatch response for ``resource`` arrived."""
        with self._cond:
            return self._updated_at.get(resource)

    def options(self, resource: str) -> pb.DevicePluginOptions | None:
        with self._cond:
            return self._options.get(resource)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
        """Block until ``predicate()`` is true; raise TimeoutError naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake kubelet: {what} not reached within {timeout} s")
                self._cond.wait(min(left, 0.05))

    def wait_for_registration(self, resource: str, timeout: float = 5.0, count: int = 1) -> Registration:
        """Wait for the ``count``-th registration of ``resource`` in this generation; return it."""
        self.wait_for(lambda: len(self.registered(resource)) >= count, timeout,
                      f"registration #{count} of {resource}")
        return self.registered(resource)[count - 1]

    def client(self, resource: str) -> PluginClient:
        """A client for the endpoint ``resource`` registered last (close it when done)."""
        regs = self.registered(resource) or [r for r in self.registrations if r.resource_name == resource]
        if not regs:
            raise LookupError(f"fake kubelet: {resource} never registered")
        return PluginClient(self.kubelet_dir / regs[-1].endpoint)


def _go_quote(text: str) -> str:
    """``%q`` of Go's fmt for the plain text a plugin sends (enough for an error message)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main(argv: Iterable[str] | None = None) -> int:
    """Demo: run a fake kubelet in DIR and print registrations and device counts until Ctrl-C."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m tests.fakes.kubelet KUBELET_DIR", file=sys.stderr)
        return 2
    # Ctrl-C ends it even when started with SIGINT ignored: a background job of a non-interactive
    # shell (`make test &`, some CI runners) inherits SIG_IGN, and then Python installs no handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    kubelet = FakeKubelet(args[0]).start()
    print(f"fake kubelet listening on {kubelet.socket_path}", flush=True)
    seen: dict[str, tuple[int, int]] = {}
    try:
        while True:
            for reg in kubelet.registrations:
                key = reg.resource_name
                state = (len(kubelet.registered(key)), kubelet.allocatable(key))
                if seen.get(key) != state:
                    seen[key] = state
                    print(f"{key}: endpoint {reg.endpoint}, allocatable {state[1]}", flush=True)
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        kubelet.stop()


if __name__ == "__main__":
    sys.exit(main())
