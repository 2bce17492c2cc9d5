"""kubelet's side of a DRA driver: plugin registration and the DRA gRPC services over unix sockets.

What k8s.io/dynamic-resource-allocation's ``kubeletplugin.Start`` does for a Go driver:

- the service socket ``<plugins dir>/<driver>/dra.sock`` serves ``v1.DRAPlugin`` (what kubelet 1.34
  picks first), ``v1beta1.DRAPlugin`` (same messages; kubelets 1.32-1.33 use it) and
  ``v1alpha1.DRAResourceHealth`` (kubelet 1.34 calls NodeWatchResources only with its alpha
  ResourceHealthStatus gate on; otherwise it is never called);
- the registration socket ``<registry dir>/<driver>-reg.sock`` serves pluginregistration's
  ``Registration``: GetInfo answers type ``DRAPlugin``, the driver name, the service socket's path
  and, as ``supported_versions``, the gRPC services above in ``<package>.<service>`` form (DRA uses
  that field to list services, not API versions).  kubelet's plugin watcher finds the socket by
  inotify, calls GetInfo, connects to the endpoint and NotifyRegistrationStatus's the outcome.

The service socket is started first (kubelet may call as soon as it sees the registration socket).
Both sockets are 0600 in a 0750 directory.  :meth:`PluginServer.ensure_registered` re-creates the
registration socket when it was removed (kubelet never deletes it, an operator or a wiped
plugins_registry may), which kubelet sees as a new plugin.  Only this module imports the stubs.
"""
from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

from gpu_plugin.dra._api import dra_health_pb2 as health_pb
from gpu_plugin.dra._api import dra_health_pb2_grpc as health_grpc
from gpu_plugin.dra._api import dra_v1_pb2 as v1
from gpu_plugin.dra._api import dra_v1_pb2_grpc as v1_grpc
from gpu_plugin.dra._api import dra_v1beta1_pb2 as v1beta1
from gpu_plugin.dra._api import dra_v1beta1_pb2_grpc as v1beta1_grpc
from gpu_plugin.dra._api import pluginregistration_pb2 as reg_pb
from gpu_plugin.dra._api import pluginregistration_pb2_grpc as reg_grpc
from gpu_plugin.dra.api import ClaimRef, DraDriver

LOG = logging.getLogger(__name__)

PLUGIN_TYPE = "DRAPlugin"
SERVICES = ("v1.DRAPlugin", "v1beta1.DRAPlugin", "v1alpha1.DRAResourceHealth")
SERVICE_SOCKET = "dra.sock"
#: what a claim's name/namespace may take of the log line (they come from kubelet, but bound them)
_MAX_LOGGED = 253

__all__ = ["PluginServer", "SERVICES", "PLUGIN_TYPE", "SERVICE_SOCKET"]


def _claims(request: Any) -> list[ClaimRef]:
    return [ClaimRef(namespace=c.namespace, uid=c.uid, name=c.name) for c in request.claims]


class _DraServicer:
    """NodePrepareResources / NodeUnprepareResources for one proto module (v1 or v1beta1)."""

    def __init__(self, driver: DraDriver, pb: Any, version: str) -> None:
        self.driver = driver
        self.pb = pb
        self.version = version

    def NodePrepareResources(self, request: Any, context: grpc.ServicerContext) -> Any:
        claims = _claims(request)
        LOG.debug("%s NodePrepareResources %s", self.version,
                  [f"{c.namespace[:_MAX_LOGGED]}/{c.name[:_MAX_LOGGED]}" for c in claims])
        results = self.driver.prepare(claims)
        response = self.pb.NodePrepareResourcesResponse()
        for uid, result in results.items():
            entry = response.claims[uid]
            if result.error:
                entry.error = result.error
                continue
            for d in result.devices:
                entry.devices.append(self.pb.Device(request_names=list(d.request_names), pool_name=d.pool,
                                                    device_name=d.device, cdi_device_ids=list(d.cdi_ids)))
        return response

    def NodeUnprepareResources(self, request: Any, context: grpc.ServicerContext) -> Any:
        claims = _claims(request)
        LOG.debug("%s NodeUnprepareResources %s", self.version, [c.uid[:_MAX_LOGGED] for c in claims])
        results = self.driver.unprepare(claims)
        response = self.pb.NodeUnprepareResourcesResponse()
        for uid, error in results.items():
            response.claims[uid].error = error
        return response


class _V1Servicer(_DraServicer, v1_grpc.DRAPluginServicer):
    def __init__(self, driver: DraDriver) -> None:
        super().__init__(driver, v1, "v1")


class _V1beta1Servicer(_DraServicer, v1beta1_grpc.DRAPluginServicer):
    def __init__(self, driver: DraDriver) -> None:
        super().__init__(driver, v1beta1, "v1beta1")


_HEALTH = {True: health_pb.HEALTHY, False: health_pb.UNHEALTHY, None: health_pb.UNKNOWN}


class _HealthServicer(health_grpc.DRAResourceHealthServicer):
    def __init__(self, driver: DraDriver) -> None:
        self.driver = driver

    def NodeWatchResources(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        LOG.info("kubelet opened the dra-health stream")
        for devices in self.driver.health_updates(context.is_active):
            yield health_pb.NodeWatchResourcesResponse(devices=[
                health_pb.DeviceHealth(
                    device=health_pb.DeviceIdentifier(pool_name=d.pool, device_name=d.device),
                    health=_HEALTH[d.healthy], last_updated_time=d.updated)
                for d in devices])


class _RegistrationServicer(reg_grpc.RegistrationServicer):
    def __init__(self, driver_name: str, endpoint: str) -> None:
        self.driver_name = driver_name
        self.endpoint = endpoint
        self.registered = threading.Event()
        self.last_error = ""

    def GetInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        LOG.info("kubelet asked for the plugin info (GetInfo)")
        return reg_pb.PluginInfo(type=PLUGIN_TYPE, name=self.driver_name, endpoint=self.endpoint,
                                 supported_versions=list(SERVICES))

    def NotifyRegistrationStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.plugin_registered:
            LOG.info("Registered with kubelet as DRA driver %s", self.driver_name)
            self.last_error = ""
            self.registered.set()
        else:
            self.last_error = request.error[:1000]
            LOG.error("kubelet refused the registration: %s", self.last_error)
            self.registered.clear()
        return reg_pb.RegistrationStatusResponse()


def _listen(server: grpc.Server, path: str) -> None:
    """Bind ``path`` (a stale socket file removed first), 0600."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    server.add_insecure_port("unix://" + path)
    server.start()
    os.chmod(path, 0o600)


class PluginServer:
    """Serves the DRA services and registers them with kubelet (see the module docstring)."""

    def __init__(self, driver: DraDriver, driver_name: str, plugins_dir: str, registry_dir: str) -> None:
        self.driver = driver
        self.driver_name = driver_name
        self.plugin_dir = os.path.join(plugins_dir, driver_name)
        self.endpoint = os.path.join(self.plugin_dir, SERVICE_SOCKET)
        self.registry_dir = registry_dir
        self.registration_socket = os.path.join(registry_dir, f"{driver_name}-reg.sock")
        self._service: grpc.Server | None = None
        self._registrar: grpc.Server | None = None
        self._reg_inode: int | None = None
        self.registration = _RegistrationServicer(driver_name, self.endpoint)
        self._lock = threading.Lock()

    def start(self) -> None:
        os.makedirs(self.plugin_dir, mode=0o750, exist_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="dra-grpc"))
        add: list[tuple[Any, Any]] = [
            (v1_grpc.add_DRAPluginServicer_to_server, _V1Servicer(self.driver)),
            (v1beta1_grpc.add_DRAPluginServicer_to_server, _V1beta1Servicer(self.driver)),
            (health_grpc.add_DRAResourceHealthServicer_to_server, _HealthServicer(self.driver)),
        ]
        for register, servicer in add:
            register(servicer, server)
        _listen(server, self.endpoint)
        self._service = server
        LOG.info("DRA services %s at %s", ", ".join(SERVICES), self.endpoint)
        self._start_registrar()

    def _start_registrar(self) -> None:
        os.makedirs(self.registry_dir, mode=0o750, exist_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="dra-reg"))
        reg_grpc.add_RegistrationServicer_to_server(self.registration, server)  # type: ignore[no-untyped-call]
        _listen(server, self.registration_socket)
        self._registrar = server
        self._reg_inode = os.lstat(self.registration_socket).st_ino
        LOG.info("Registration socket %s", self.registration_socket)

    def ensure_registered(self) -> None:
        """Re-create the registration socket if it was removed or replaced."""
        with self._lock:
            try:
                if os.lstat(self.registration_socket).st_ino == self._reg_inode:
                    return
            except FileNotFoundError:
                pass
            LOG.warning("Registration socket %s went away; serving it again", self.registration_socket)
            if self._registrar is not None:
                self._registrar.stop(grace=None)
            self.registration.registered.clear()
            self._start_registrar()

    def stop(self) -> None:
        """Stop both servers and remove the sockets (kubelet deregisters when the socket goes)."""
        for server, path in ((self._registrar, self.registration_socket), (self._service, self.endpoint)):
            if server is not None:
                server.stop(grace=1).wait()
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._registrar = self._service = None
