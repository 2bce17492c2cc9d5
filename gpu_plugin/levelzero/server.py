"""`intel-gpu-levelzero`: the gRPC ``Levelzero`` service on a unix socket, as cmd/gpu_levelzero.

Serves upstream's levelzero.proto (GetDeviceHealth, GetDeviceTemperature, GetIntelIndices,
GetDeviceMemoryAmount) from a :mod:`.sources` source. Failures are reported in-band in the
``error`` field (``errorcode`` = ze_result_t, ``description`` as upstream's ze_status_to_string);
a failing read never takes the server down. Flags: upstream's ``-socket``, ``-wsl``, ``-v`` (default
0) and klog's others (:mod:`gpu_plugin.common.klog`), and ours, ``-sysfs-root`` (default /sys) and
``-source auto|levelzero|sysfs``.
"""
from __future__ import annotations

import functools
import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any, TypeVar

import grpc

from gpu_plugin.common import klog, metrics_http, signals
from gpu_plugin.common.goflags import FlagError, FlagSet, command
from gpu_plugin.deviceplugin import api
from gpu_plugin.levelzero import DEFAULT_SOCKET, ZE_ERROR_UNKNOWN, describe
from gpu_plugin.levelzero._api import levelzero_pb2 as pb
from gpu_plugin.levelzero._api import levelzero_pb2_grpc as pb_grpc
from gpu_plugin.levelzero.metrics import NO_LEVELZERO_METRICS, LevelzeroMetrics, levelzero_metrics
from gpu_plugin.levelzero.sources import Source, open_source

LOG = logging.getLogger(__name__)
PROG = "intel-gpu-levelzero"
SOCKET_MODE = 0o660
MAX_SOCKET_PATH = api.MAX_SOCKET_PATH
SOURCES = ("auto", "levelzero", "sysfs")

T = TypeVar("T")
Rpc = TypeVar("Rpc", bound=Callable[..., Any])


def _counted(method: Rpc) -> Rpc:
    """Record each answer of an RPC method (its in-band error code) on the servicer's metrics."""
    @functools.wraps(method)
    def answer(self: LevelzeroServicer, request: Any, context: Any) -> Any:
        reply = method(self, request, context)
        self.metrics.answered(method.__name__, reply.error.errorcode)
        return reply
    return answer  # type: ignore[return-value]


def _error(code: int) -> pb.Error:
    return pb.Error(errorcode=code, description=describe(code) if code else "")


class LevelzeroServicer(pb_grpc.LevelzeroServicer):
    """Maps each RPC onto the source; an unexpected exception becomes error UNKNOWN in-band."""

    def __init__(self, source: Source, metrics: LevelzeroMetrics = NO_LEVELZERO_METRICS) -> None:
        self.source = source
        self.metrics = metrics

    def _guarded(self, what: str, read: Callable[[], T], fallback: T) -> T:
        try:
            return read()
        except Exception:
            LOG.exception("%s failed", what)
            return fallback

    @_counted
    def GetDeviceHealth(self, request: pb.DeviceId, context: Any) -> pb.DeviceHealth:
        bdf = request.bdfAddress
        h = self._guarded(f"health of {bdf}", lambda: self.source.health(bdf), None)
        if h is None:
            return pb.DeviceHealth(memory_ok=True, bus_ok=True, soc_ok=True, error=_error(ZE_ERROR_UNKNOWN))
        if h.error:
            LOG.warning("health of %s: %s", bdf, describe(h.error))
        LOG.debug("health of %s: memory=%s bus=%s soc=%s", bdf, h.memory_ok, h.bus_ok, h.soc_ok)
        return pb.DeviceHealth(memory_ok=h.memory_ok, bus_ok=h.bus_ok, soc_ok=h.soc_ok, error=_error(h.error))

    @_counted
    def GetDeviceTemperature(self, request: pb.DeviceId, context: Any) -> pb.DeviceTemperature:
        bdf = request.bdfAddress
        t = self._guarded(f"temperature of {bdf}", lambda: self.source.temperatures(bdf), None)
        if t is None:
            return pb.DeviceTemperature(**{"global": -999.0}, gpu=-999.0, memory=-999.0,
                                        error=_error(ZE_ERROR_UNKNOWN))
        LOG.debug("temperatures of %s: global=%.1f gpu=%.1f memory=%.1f", bdf, t.global_, t.gpu, t.memory)
        return pb.DeviceTemperature(**{"global": t.global_}, gpu=t.gpu, memory=t.memory,
                                    error=_error(t.error))

    @_counted
    def GetIntelIndices(self, request: pb.GetIntelIndicesMessage, context: Any) -> pb.DeviceIndices:
        i = self._guarded("Intel indices", self.source.indices, None)
        if i is None:
            return pb.DeviceIndices(error=_error(ZE_ERROR_UNKNOWN))
        return pb.DeviceIndices(indices=list(i.indices), error=_error(i.error))

    @_counted
    def GetDeviceMemoryAmount(self, request: pb.DeviceId, context: Any) -> pb.DeviceMemoryAmount:
        bdf = request.bdfAddress
        m = self._guarded(f"memory amount of {bdf}", lambda: self.source.memory(bdf), None)
        if m is None:
            return pb.DeviceMemoryAmount(error=_error(ZE_ERROR_UNKNOWN))
        return pb.DeviceMemoryAmount(memory_size=m.size, error=_error(m.error))


class SocketInUseError(OSError):
    """The socket path exists and is not a socket: we do not delete other files."""


def serve(source: Source, socket_path: str, max_workers: int = 4,
          metrics: LevelzeroMetrics = NO_LEVELZERO_METRICS) -> grpc.Server:
    """Bind ``socket_path`` (a stale socket is removed, mode 0660) and start serving."""
    parent = os.path.dirname(socket_path) or "."
    os.makedirs(parent, mode=0o750, exist_ok=True)
    try:
        mode = os.lstat(socket_path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise SocketInUseError(f"{socket_path} exists and is not a socket")
        os.unlink(socket_path)  # stale socket of a previous run (upstream removes it too)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="levelzero"))
    pb_grpc.add_LevelzeroServicer_to_server(LevelzeroServicer(source, metrics), server)  # type: ignore[no-untyped-call]
    old_umask = os.umask(0o117)
    try:
        try:
            if server.add_insecure_port("unix:" + socket_path) == 0:
                raise OSError(f"cannot listen on {socket_path}")
        except RuntimeError as err:  # grpcio raises this when the bind fails
            raise OSError(f"cannot listen on {socket_path}: {err}") from err
        server.start()
    finally:
        os.umask(old_umask)
    os.chmod(socket_path, SOCKET_MODE)
    return server


def _flagset() -> FlagSet:
    fs = FlagSet(PROG)
    fs.string("socket", DEFAULT_SOCKET, "Unix socket path to listen on")
    fs.bool("wsl", False, "Running in WSL environment")
    klog.add_flags(fs)  # -v 0 as upstream; klog's others accepted
    fs.string("sysfs-root", "/sys", "sysfs root for the kernel fallback source")
    fs.string("source", "auto", "auto (Level Zero loader if usable, else sysfs), levelzero or sysfs")
    fs.string(metrics_http.FLAG, "", metrics_http.FLAG_HELP)
    return fs


@command(PROG, lambda: _flagset().usage())
def main(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    flags = _flagset().parse(sys.argv[1:] if argv is None else argv)
    if flags["source"] not in SOURCES:
        raise FlagError(f'invalid value "{flags["source"]}" for flag -source: not one of '
                        f'{", ".join(SOURCES)}', "source")
    if not os.path.isdir(flags["sysfs-root"]):
        raise FlagError(f"-sysfs-root {flags['sysfs-root']}: no such directory", "sysfs-root")
    if len(os.fsencode(flags["socket"])) > MAX_SOCKET_PATH:
        raise FlagError(f"-socket path is longer than {MAX_SOCKET_PATH} bytes", "socket")
    if flags.args:
        raise FlagError(f"unexpected argument: {flags.args[0]}")
    if flags[metrics_http.FLAG]:
        try:
            metrics_http.parse_address(flags[metrics_http.FLAG])
        except metrics_http.MetricsAddressError as err:
            raise FlagError(f"-{metrics_http.FLAG}: {err}", metrics_http.FLAG) from None
    v = flags["v"]
    # klog: Info lines always, upstream's per-request V(3) lines from -v 3
    logging.basicConfig(level=logging.DEBUG if v >= 3 else logging.INFO,
                        stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    klog.warn_ineffective(klog.ineffective(flags), LOG)
    try:
        source = open_source(flags["sysfs-root"], wsl=flags["wsl"], kind=flags["source"])
    except RuntimeError as err:
        LOG.error("%s", err)
        return 1
    LOG.info("reading GPU health from the %s source", source.name)
    if flags["wsl"] and source.name != "levelzero":
        LOG.warning("-wsl needs the Level Zero loader; sysfs has no WSL GPUs")
    registry, endpoint = metrics_http.open_endpoint(flags[metrics_http.FLAG], PROG)
    metrics = NO_LEVELZERO_METRICS if registry is None else levelzero_metrics(registry)
    try:
        server = serve(source, flags["socket"], metrics=metrics)
    except OSError as err:
        LOG.error("failed to listen: %s", err)
        return 1
    LOG.info("server listening at %s", flags["socket"])
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signals.stop_on_signals(stop, (signal.SIGTERM, signal.SIGINT))  # not stop.set() in a handler
    while not stop.wait(1.0):
        pass
    server.stop(grace=1).wait()
    if endpoint is not None:
        endpoint.close()
    try:
        os.unlink(flags["socket"])
    except OSError:
        pass
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
