"""A fake XPU Manager daemon (xpumd): a real gRPC ``deviceinfo.DeviceInfo`` server on a unix socket.

Real: gRPC over a unix socket and the vendored deviceinfo proto. Emulated: xpumd's telemetry
(tests publish health snapshots by hand). Stream semantics follow xpumd's deviceinfo.go: a new
WatchDeviceHealth client gets the cached snapshot at once (nothing while there is none), every
publish is broadcast to all clients, a graceful stop ends streams with OK (client sees EOF),
an abrupt stop kills them (client sees an error); ``abort_code`` makes new streams fail.
``upstream_mock`` instead behaves like upstream's mockDeviceInfoServer (send a fixed list,
wait 100 ms, end the stream).
"""
from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from gpu_plugin.xpumd._api import deviceinfo_pb2 as pb
from gpu_plugin.xpumd._api import deviceinfo_pb2_grpc as pb_grpc

OK, WARNING, CRITICAL, FAILED = (pb.SEVERITY_LEVEL_OK, pb.SEVERITY_LEVEL_WARNING,
                                 pb.SEVERITY_LEVEL_CRITICAL, pb.SEVERITY_LEVEL_FAILED)
_END = object()


def device(bdf: str, *statuses: tuple[str, int, str]) -> pb.DeviceHealth:
    """One device entry; ``statuses`` are (domain, severity, reason)."""
    return pb.DeviceHealth(
        info=pb.DeviceInformation(uuid=f"uuid-{bdf}", model="Fake GPU", pci=pb.PciInfo(bdf=bdf)),
        health=[pb.HealthStatus(name=n, severity=s, reason=r) for n, s, r in statuses])


def snapshot(severities: Mapping[str, int]) -> pb.DeviceHealthResponse:
    """All devices at once, as xpumd sends them: bdf -> severity of its "memory" domain."""
    return pb.DeviceHealthResponse(devices=[device(bdf, ("memory", sev, "" if sev == OK else "ecc"))
                                            for bdf, sev in sorted(severities.items())])


class _Servicer(pb_grpc.DeviceInfoServicer):
    def __init__(self, owner: FakeXpumd) -> None:
        self.owner = owner

    def WatchDeviceHealth(self, request: pb.WatchDeviceHealthRequest,
                          context: grpc.ServicerContext) -> Iterator[pb.DeviceHealthResponse]:
        owner = self.owner
        if owner.abort_code is not None:
            owner._count_connection()
            context.abort(owner.abort_code, "scripted failure")
        if owner.upstream_mock is not None:
            owner._count_connection()
            yield from owner.upstream_mock
            time.sleep(0.1)
            return
        q: queue.Queue[Any] = queue.Queue()
        owner._join(q)
        context.add_callback(lambda: owner._terminated(q))  # the final status is on its way
        try:
            while context.is_active():
                try:
                    item = q.get(timeout=0.05)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                yield item
        finally:
            owner._leave(q)


class FakeXpumd:
    """Serve ``socket_path`` (default: a fresh short dir under /tmp; unix socket paths are < 108 bytes)."""

    def __init__(self, socket_path: str | None = None, *,
                 upstream_mock: Sequence[pb.DeviceHealthResponse] | None = None) -> None:
        self._tmp = None if socket_path else tempfile.mkdtemp(prefix="xpumd-", dir="/tmp")
        self.socket_path = socket_path or os.path.join(self._tmp or "", "intelxpuinfo.sock")
        self.upstream_mock = list(upstream_mock) if upstream_mock is not None else None
        self.connections = 0  #: WatchDeviceHealth calls served so far (all generations)
        self.abort_code: grpc.StatusCode | None = None  #: set: every new stream fails with this code
        self._cond = threading.Condition()
        self._clients: set[queue.Queue[Any]] = set()
        self._open: set[queue.Queue[Any]] = set()  #: streams whose RPC has not terminated yet
        self._ending = False  #: a graceful stop is under way
        self._snapshot: pb.DeviceHealthResponse | None = None
        self._server: grpc.Server | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeXpumd:
        Path(self.socket_path).parent.mkdir(parents=True, exist_ok=True)
        server = grpc.server(ThreadPoolExecutor(8, thread_name_prefix="fake-xpumd"))
        pb_grpc.add_DeviceInfoServicer_to_server(_Servicer(self), server)
        server.add_insecure_port(f"unix:{self.socket_path}")
        server.start()
        os.chmod(self.socket_path, 0o660)  # as xpumd: 0o117 umask
        with self._cond:
            self._ending = False
        self._server = server
        return self

    def stop(self, graceful: bool = True) -> None:
        """Graceful: streams end with OK (as xpumd's shutdown); else they are cut off."""
        if self._server is None:
            return
        if graceful:
            with self._cond:
                self._ending = True  # a stream opened from now on ends at once as well
                for q in self._clients:
                    q.put(_END)
                # Stop only when every ended stream's OK status has been sent: stopping the server
                # while one is still being sent could cut it off, and the client then saw
                # UNAVAILABLE instead of the end of the stream (seen once in CI).
                self._cond.wait_for(lambda: not self._open, timeout=5)
            self._server.stop(2).wait(5)
        else:
            self._server.stop(None).wait(5)
        self._server = None
        with self._cond:
            self._clients.clear()
            self._open.clear()
            self._cond.notify_all()

    def restart(self, graceful: bool = True) -> None:
        """Stop, then serve the same socket again; the cached snapshot is kept (xpumd re-collects it)."""
        self.stop(graceful)
        self.start()

    def close(self) -> None:
        self.stop(graceful=False)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> FakeXpumd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scripting -------------------------------------------------------------------------------
    def publish(self, message: pb.DeviceHealthResponse | Mapping[str, int]) -> None:
        """Cache ``message`` (or :func:`snapshot` of a bdf -> severity map) and send it to all clients."""
        msg = message if isinstance(message, pb.DeviceHealthResponse) else snapshot(message)
        with self._cond:
            self._snapshot = msg
            for q in self._clients:
                q.put(msg)

    @property
    def clients(self) -> int:
        """Open WatchDeviceHealth streams."""
        with self._cond:
            return len(self._clients)

    def wait_for_clients(self, count: int = 1, timeout: float = 5.0, *, connections: int = 0) -> None:
        """Until ``count`` streams are open and at least ``connections`` were served in all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._clients) < count or self.connections < connections:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fake xpumd: {len(self._clients)} open streams, "
                                         f"{self.connections} served; wanted {count} and {connections}")
                self._cond.wait(left)

    # -- called from gRPC threads ---------------------------------------------------------------
    def _count_connection(self) -> None:
        with self._cond:
            self.connections += 1
            self._cond.notify_all()

    def _join(self, q: queue.Queue[Any]) -> None:
        with self._cond:
            if self._snapshot is not None:
                q.put(self._snapshot)
            if self._ending:
                q.put(_END)
            self._clients.add(q)
            self._open.add(q)
            self.connections += 1
            self._cond.notify_all()

    def _leave(self, q: queue.Queue[Any]) -> None:
        with self._cond:
            self._clients.discard(q)
            self._cond.notify_all()

    def _terminated(self, q: queue.Queue[Any]) -> None:
        with self._cond:
            self._open.discard(q)
            self._cond.notify_all()
