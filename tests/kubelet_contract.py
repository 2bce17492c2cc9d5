"""The contract between our kubelet double (tests/fakes/kubelet.py) and the real kubelet's
device manager: checks both pass, seen from a device plugin.

A :class:`RecordingPlugin` serves the DevicePlugin service on a unix socket in the kubelet's
device-plugin dir and records every call kubelet makes, in order; the checks register it
through ``kubelet.sock`` (real gRPC) and look at what kubelet asked, in which order, and what
it answered. tests/cluster/test_doubles_contract.py runs them on the fake and on kubelet
v1.34.1 (whose dir is the fixed /var/lib/kubelet/device-plugins); tests/test_fake_kube_contract.py
on the fake alone.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from gpu_plugin.deviceplugin._api import api_pb2 as pb
from gpu_plugin.deviceplugin._api import api_pb2_grpc as pb_grpc


@dataclass
class KubeletTarget:
    """One kubelet under test: its device-plugin dir and how to restart it."""

    kind: str  # "fake" or "real"
    plugin_dir: Path
    restart: Callable[[], None]
    dial_timeout: float = 10.0  # s kubelet spends dialing a registering plugin (kubelet's own: 10)
    plugins: list[RecordingPlugin] = field(default_factory=list)

    def plugin(self) -> RecordingPlugin:
        plugin = RecordingPlugin(self.plugin_dir / f"contract-{uuid.uuid4().hex[:8]}.sock").start()
        self.plugins.append(plugin)
        return plugin

    def register(self, endpoint: str, resource: str, version: str = "v1beta1",
                 timeout: float = 30) -> tuple[grpc.StatusCode | None, str, float]:
        """Register (code None on success, the error's details, seconds taken)."""
        start = time.monotonic()
        with grpc.insecure_channel(f"unix:{os.fspath(self.plugin_dir / 'kubelet.sock')}") as channel:
            try:
                pb_grpc.RegistrationStub(channel).Register(pb.RegisterRequest(
                    version=version, endpoint=endpoint, resource_name=resource,
                    options=pb.DevicePluginOptions(get_preferred_allocation_available=True)),
                    timeout=timeout, wait_for_ready=True)
                return None, "", time.monotonic() - start
            except grpc.RpcError as err:
                return err.code(), str(err.details()), time.monotonic() - start

    def cleanup(self) -> None:
        for plugin in self.plugins:
            plugin.stop()


class RecordingPlugin(pb_grpc.DevicePluginServicer):
    """A device plugin with one healthy device that records kubelet's calls in order."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.endpoint = socket_path.name
        self.resource = f"contract.example.com/{uuid.uuid4().hex[:8]}"
        self._cond = threading.Condition()
        self.calls: list[str] = []
        self._server: grpc.Server | None = None
        self._stopped = threading.Event()

    def start(self) -> RecordingPlugin:
        server = grpc.server(ThreadPoolExecutor(4, thread_name_prefix="contract-plugin"))
        pb_grpc.add_DevicePluginServicer_to_server(self, server)
        server.add_insecure_port(f"unix:{os.fspath(self.socket_path)}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.stop(0).wait(5)
            self._server = None
        self.socket_path.unlink(missing_ok=True)

    def _record(self, call: str) -> None:
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()

    def wait_calls(self, predicate: Callable[[list[str]], bool], timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.calls):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"kubelet's calls {self.calls} never matched")
                self._cond.wait(min(left, 0.1))
            return list(self.calls)

    # -- the DevicePlugin service ---------------------------------------------------------------
    def GetDevicePluginOptions(self, request: pb.Empty,
                               context: grpc.ServicerContext) -> pb.DevicePluginOptions:
        self._record("GetDevicePluginOptions")
        return pb.DevicePluginOptions(get_preferred_allocation_available=True)

    def ListAndWatch(self, request: pb.Empty,
                     context: grpc.ServicerContext) -> Iterator[pb.ListAndWatchResponse]:
        self._record("ListAndWatch")
        try:
            yield pb.ListAndWatchResponse(devices=[pb.Device(ID="dev0", health="Healthy")])
            while context.is_active() and not self._stopped.is_set():
                time.sleep(0.05)
        finally:  # also when kubelet cancels before gRPC asks for the next item (GeneratorExit)
            self._record("ListAndWatch ended")

    def GetPreferredAllocation(self, request: Any,
                               context: grpc.ServicerContext) -> pb.PreferredAllocationResponse:
        self._record("GetPreferredAllocation")
        return pb.PreferredAllocationResponse()

    def Allocate(self, request: Any, context: grpc.ServicerContext) -> pb.AllocateResponse:
        self._record("Allocate")
        return pb.AllocateResponse()


def _ended(calls: list[str]) -> bool:
    return "ListAndWatch ended" in calls


def check_registration_asks_options_before_it_answers_then_opens_list_and_watch(k: KubeletTarget) -> None:
    plugin = k.plugin()
    code, details, _ = k.register(plugin.endpoint, plugin.resource)
    assert code is None, details
    assert plugin.calls[:1] == ["GetDevicePluginOptions"], \
        f"kubelet answered Register before asking the options: {plugin.calls}"
    calls = plugin.wait_calls(lambda c: "ListAndWatch" in c)
    assert calls[:2] == ["GetDevicePluginOptions", "ListAndWatch"], calls


def check_registration_of_an_endpoint_nobody_serves_fails(k: KubeletTarget) -> None:
    code, details, took = k.register(f"nobody-{uuid.uuid4().hex[:8]}.sock", "contract.example.com/nobody")
    assert code == grpc.StatusCode.UNKNOWN, (code, details)
    assert details == "failed to dial device plugin: context deadline exceeded", details
    assert took >= 0.9 * k.dial_timeout, took


def check_registration_with_a_bad_version_or_resource_name_fails(k: KubeletTarget) -> None:
    plugin = k.plugin()
    for version, resource in (("v1alpha", plugin.resource), ("v1beta1", "no-domain"),
                              ("v1beta1", "kubernetes.io/contract")):
        code, details, _ = k.register(plugin.endpoint, resource, version)
        assert code == grpc.StatusCode.UNKNOWN, (version, resource, code, details)
    assert plugin.calls == [], "kubelet never dialed a plugin it refused"


def check_restart_ends_the_stream_and_a_new_registration_is_served(k: KubeletTarget) -> None:
    plugin = k.plugin()
    assert k.register(plugin.endpoint, plugin.resource)[0] is None
    plugin.wait_calls(lambda c: "ListAndWatch" in c)
    k.restart()
    plugin.wait_calls(_ended)
    deadline = time.monotonic() + 60  # the real one: the node may look Ready before the new
    while plugin.socket_path.exists():  # kubelet's device manager has started
        assert time.monotonic() < deadline, "kubelet removes the plugin sockets in its dir on start"
        time.sleep(0.1)
    plugin.stop()
    again = k.plugin()
    code, details, _ = k.register(again.endpoint, plugin.resource)
    assert code is None, details
    assert again.wait_calls(lambda c: "ListAndWatch" in c)[:2] == ["GetDevicePluginOptions", "ListAndWatch"]


KUBELET_CHECKS: list[tuple[str, Callable[[KubeletTarget], None]]] = [
    ("kubelet_register_order", check_registration_asks_options_before_it_answers_then_opens_list_and_watch),
    ("kubelet_register_unserved", check_registration_of_an_endpoint_nobody_serves_fails),
    ("kubelet_register_refused", check_registration_with_a_bad_version_or_resource_name_fails),
    ("kubelet_restart", check_restart_ends_the_stream_and_a_new_registration_is_served),
]
