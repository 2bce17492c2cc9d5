"""The lifecycle of one resource's device-plugin server: serve, register, re-serve.

Serves ``<namespace>-<type>.sock`` in the kubelet dir (service in ``servicer.py``),
registers with kubelet (retrying with backoff), and serves + registers again when kubelet
wipes the dir or re-creates ``kubelet.sock`` (see ``watch.py``).
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from gpu_plugin.deviceplugin import api
from gpu_plugin.deviceplugin._api import api_pb2 as pb
from gpu_plugin.deviceplugin._api import api_pb2_grpc as pb_grpc
from gpu_plugin.deviceplugin.devices import DeviceState
from gpu_plugin.deviceplugin.metrics import NO_METRICS, ResourceMetrics
from gpu_plugin.deviceplugin.server.servicer import Servicer, options
from gpu_plugin.deviceplugin.watch import ANY, Backoff, DirWatcher, file_identity

LOG = logging.getLogger(__name__)

KUBELET_SOCKET = "kubelet.sock"
MAX_SOCKET_PATH = api.MAX_SOCKET_PATH
#: How often a registration in flight checks that the plugin's own socket is still there (s).
REGISTER_CHECK_INTERVAL = 0.05


def socket_is_live(path: str | os.PathLike[str], timeout: float = 1.0) -> bool:
    """True when something accepts connections on the unix socket ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.fspath(path))
        return True
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            LOG.warning("%s: probing socket failed: %s", path, err)
        return False
    finally:
        sock.close()


class DevicePluginServer:
    """Serves one resource type (``<namespace>/<resource_type>``) to kubelet.

    ``update()`` may be called before or after ``start()``; ``start()`` returns at once and a
    supervisor thread serves, registers, and re-serves/re-registers on kubelet restarts until
    ``stop()``.  Serving or registration failures are logged and retried with capped backoff.
    """

    def __init__(self, namespace: str, resource_type: str, kubelet_dir: str | os.PathLike[str], *,
                 kubelet_socket: str | os.PathLike[str] | None = None,
                 preferred_allocator: api.PreferredAllocator | None = None,
                 allocator: api.Allocator | None = None, max_streams: int = 8, unary_workers: int = 4,
                 backoff: tuple[float, float] = (0.1, 5.0), poll_interval: float = 0.5,
                 use_inotify: bool = True, register_timeout: float = 5.0,
                 stream_grace: tuple[float, float] = (2.0, 60.0),
                 metrics: ResourceMetrics = NO_METRICS) -> None:
        self.resource_name = f"{namespace}/{resource_type}"
        self.endpoint = f"{namespace}-{resource_type}.sock"
        self.kubelet_dir = Path(kubelet_dir)
        self.socket_path = self.kubelet_dir / self.endpoint
        self.kubelet_socket = Path(kubelet_socket) if kubelet_socket else self.kubelet_dir / KUBELET_SOCKET
        self._name = f"{self.resource_name} ({self.socket_path})"
        self._state = DeviceState(api.ResourceType(resource_type), max_streams,
                                  preferred_allocator=preferred_allocator, allocator=allocator)
        self._metrics = metrics
        self._workers = max_streams + unary_workers
        self._backoff = backoff
        self._poll_interval = poll_interval
        self._use_inotify = use_inotify
        self._register_timeout = register_timeout
        self._stop = threading.Event()
        self._registered = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: DirWatcher | None = None
        self._grpc: grpc.Server | None = None
        self._own_id: tuple[int, int] | None = None
        self._kubelet_id: tuple[int, int] | None = None
        self.registrations = 0
        self._attempts = 0  # registrations begun: kubelet may open the stream before Register returns
        self.last_error: api.DevicePluginError | None = None
        # A lost ListAndWatch stream: (when to check, streams opened, registrations begun) at the loss.
        self._lost: tuple[float, int, int] | None = None
        self._lost_lock = threading.Lock()
        self._relist = Backoff(*stream_grace)

    # -- public API ---------------------------------------------------------------------------
    def update(self, devices: Mapping[api.DeviceID, api.DeviceInfo]) -> None:
        """Replace the advertised devices; open ListAndWatch streams get the new list if it changed."""
        self._state.update(devices)
        self._metrics.devices(info.health.value for info in devices.values())

    def start(self) -> None:
        """Start serving and registering in a background thread (returns at once)."""
        if self._thread is not None:
            raise RuntimeError(f"{self._name}: already started")
        self._watcher = DirWatcher(self.kubelet_dir, poll_interval=self._poll_interval,
                                   use_inotify=self._use_inotify)
        self._thread = threading.Thread(target=self._supervise, name=f"dp-{self.endpoint}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, end ListAndWatch streams, remove our socket."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self._state.close()
        self._metrics.devices(())
        self._shutdown_grpc(grace=0.2)  # let in-flight Allocate calls finish
        if self._watcher is not None:
            self._watcher.close()
        LOG.info("%s: stopped", self._name)

    def wait_registered(self, timeout: float | None = None) -> bool:
        """Block until the current socket is registered with kubelet."""
        return self._registered.wait(timeout)

    @property
    def devices(self) -> dict[api.DeviceID, api.DeviceInfo]:
        return self._state.devices()

    # -- serving --------------------------------------------------------------------------------
    def _shutdown_grpc(self, grace: float = 0.0) -> None:
        # grpc unlinks the socket path on stop: wait so it cannot remove a newer socket later.
        if self._grpc is not None:
            self._grpc.stop(grace).wait(5.0)
            self._grpc = None
        self._registered.clear()

    def _serve(self) -> None:
        self._shutdown_grpc()
        path = os.fspath(self.socket_path)
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise api.DevicePluginError(f"{self._name}: socket path longer than {MAX_SOCKET_PATH} bytes "
                                        "(unix socket limit); use a shorter kubelet dir")
        if socket_is_live(path):
            raise api.SocketInUseError(f"{self._name}: socket is already in use by a live server "
                                       "(another plugin instance?)")
        try:
            os.unlink(path)
            LOG.info("%s: removed stale socket", self._name)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise api.DevicePluginError(f"{self._name}: cannot remove stale socket: {err}") from err
        server = grpc.server(ThreadPoolExecutor(self._workers, thread_name_prefix=f"dp-{self.endpoint}"),
                             options=[("grpc.so_reuseport", 0)])
        servicer = Servicer(self._state, self._name, self._stream_ended, self._metrics)
        pb_grpc.add_DevicePluginServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        try:
            server.add_insecure_port(f"unix:{path}")
            os.chmod(path, 0o600)
        except (RuntimeError, OSError) as err:
            server.stop(0)
            raise api.DevicePluginError(f"{self._name}: cannot listen: {err}") from err
        server.start()
        self._grpc = server
        self._own_id = file_identity(path)
        # Reachability check with a real RPC (channel_ready_future polls and costs ~200 ms).
        with grpc.insecure_channel(f"unix:{path}") as channel:
            try:
                pb_grpc.DevicePluginStub(channel).GetDevicePluginOptions(  # type: ignore[no-untyped-call]
                    pb.Empty(), timeout=5.0, wait_for_ready=True)
            except grpc.RpcError as err:
                raise api.DevicePluginError(f"{self._name}: own server not reachable: {err}") from err
        LOG.info("%s: serving", self._name)

    def _register(self) -> None:
        kubelet_id = file_identity(self.kubelet_socket)
        if kubelet_id is None:
            raise api.RegistrationError(f"{self._name}: kubelet socket {self.kubelet_socket} does not exist")
        request = pb.RegisterRequest(version=api.API_VERSION, endpoint=self.endpoint,
                                     resource_name=self.resource_name, options=options())
        self._attempts += 1
        with grpc.insecure_channel(f"unix:{os.fspath(self.kubelet_socket)}") as channel:
            call = pb_grpc.RegistrationStub(channel).Register.future(  # type: ignore[no-untyped-call]
                request, timeout=self._register_timeout)
            try:
                self._await_registration(call)
            except grpc.RpcError as err:
                self._metrics.registration_failed()
                raise api.RegistrationError(f"{self._name}: registration with kubelet failed: "
                                            f"{err.code().name}: {err.details()}") from err
        self._kubelet_id = kubelet_id
        self.registrations += 1
        self._metrics.registered(self.registrations)
        self.last_error = None
        self._registered.set()
        LOG.info("%s: registered with kubelet as %s", self._name, self.endpoint)

    def _await_registration(self, call: grpc.Future) -> None:
        """Wait for kubelet's answer to Register, watching our own socket meanwhile.

        kubelet's Register dials the plugin's socket before it answers (up to 10 s). A kubelet
        restarting between our last check and the call deletes that socket: the call can then
        only time out, and serving again waits for it. So a socket that vanishes or is replaced
        while the call is in flight cancels it at once, and the supervisor serves and registers
        again (kubelet's dial, still retrying, then finds the new socket too)."""
        while True:
            try:
                call.result(timeout=REGISTER_CHECK_INTERVAL)
                return
            except grpc.FutureTimeoutError:
                if self._stop.is_set() or file_identity(self.socket_path) != self._own_id:
                    call.cancel()
                    self._metrics.registration_failed()
                    raise api.RegistrationError(
                        f"{self._name}: own socket removed while registering (kubelet restart?); "
                        "serving again") from None

    def _stream_ended(self, lived: float) -> None:
        """A ListAndWatch stream ended while serving (gRPC thread).  kubelet drops a stream it can't
        read (and marks the resource's devices Unhealthy) and only opens a new one when the plugin
        registers again: so unless a new stream comes within the grace, the supervisor registers
        again.  The grace (``stream_grace``: first, longest) doubles while streams keep dying young."""
        if self._stop.is_set():
            return
        with self._lost_lock:
            if lived >= self._relist.maximum:
                self._relist.reset()
            self._lost = (time.monotonic() + self._relist.next(), self._state.opened, self._attempts)
        if self._watcher is not None:
            self._watcher.wake()

    def _check_lost_stream(self) -> None:
        """Force a registration if kubelet's stream is gone and kubelet did not reconnect by itself."""
        with self._lost_lock:
            lost = self._lost
            if lost is None or time.monotonic() < lost[0]:
                return
            self._lost = None
        _, opened, attempts = lost
        # Counting registrations begun, not done: a stream kubelet opened for a Register call still
        # in flight, and lost before the call returned, is lost all the same.
        if self._state.opened != opened or self._attempts != attempts or self._state.streams:
            return  # a new stream came, or we began registering again since: nothing lost
        if self._kubelet_id is None or file_identity(self.kubelet_socket) != self._kubelet_id:
            return  # kubelet is restarting: re-registered below as for any kubelet restart
        LOG.warning("%s: kubelet's ListAndWatch stream ended and no new one came; registering again",
                    self._name)
        self._kubelet_id = None

    def _supervise(self) -> None:
        assert self._watcher is not None
        backoff = Backoff(*self._backoff)
        need_serve = True
        relevant = {self.endpoint, self.kubelet_socket.name, ANY}
        while not self._stop.is_set():
            try:
                self._check_lost_stream()
                if need_serve or file_identity(self.socket_path) != self._own_id:
                    if not need_serve:
                        LOG.info("%s: socket gone or replaced (kubelet restart?), serving again", self._name)
                    need_serve = True
                    self._serve()
                    need_serve = False
                    self._kubelet_id = None
                if self._kubelet_id is None or file_identity(self.kubelet_socket) != self._kubelet_id:
                    self._registered.clear()
                    self._register()
                backoff.reset()
                timeout = 30.0  # safety re-check even if an event was missed
            except api.DevicePluginError as err:
                level = logging.WARNING if str(err) != str(self.last_error) else logging.DEBUG
                self.last_error = err
                timeout = backoff.next()
                LOG.log(level, "%s; retrying in %.2f s", err, timeout)
            except Exception:  # never let the supervisor die: log and retry
                LOG.exception("%s: unexpected error", self._name)
                timeout = backoff.next()
            self._wait_for_change(timeout, relevant)

    def _wait_for_change(self, timeout: float, relevant: set[str]) -> None:
        assert self._watcher is not None
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            lost = self._lost
            left = min(deadline, lost[0] if lost is not None else deadline) - time.monotonic()
            if left <= 0:
                return
            if self._watcher.wait(left) & relevant:
                return
