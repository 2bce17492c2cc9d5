"""ZeroMQ RPC under a hostile peer (issue 21 item 8): a legitimate agent's call while one peer floods.

Run alone: ``python -m benchmarks.sysinv_zmq_flood``. The server is the conductor's own ZeroMQ
server (``start_rpc_servers``, default limits) in its own process (benchmarks/sysinv_floor.py,
a method that does nothing), so its RSS is measured alone, from /proc (VmRSS now, VmHWM the
peak). The flooder is a raw DEALER sending as fast as it can (it reads the answers, mostly
ServerBusy, only to know when the server is done: every request answered, or 2 s without an
answer); the legitimate caller is the agent's ``ZmqConductorAPI``, calling every 50 ms from
the start of each flood until 0.5 s after it. Floods, one after the other:
- 100,000 small valid requests as fast as one socket sends them;
- 8 frames of 50 MB (libzmq drops each: ZMQ_MAXMSGSIZE);
- 400 frames of 250 KB (under the cap: decoded, refused), then the RSS once idle again.
Targets: every legitimate call answered within 1 s; peak RSS under 200 MB.
"""
from __future__ import annotations

import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import zmq

from benchmarks.common import Result
from benchmarks.sysinv_floor import running
from sysinv_ext.common.context import get_admin_context
from sysinv_ext.conductor.rpcapi import HostUUID
from sysinv_ext.conductor.rpcapizmq import ZmqConductorAPI, conductor_endpoint

SUITE = "sysinv"
HOST = HostUUID("0000f100-0000-4000-8000-00000000f100")
SMALL_REQUESTS = 100_000
BIG_FRAMES, BIG_FRAME = 8, 50 * 1024 * 1024
LARGE_FRAMES, LARGE_FRAME = 400, 250 * 1024
CALL_EVERY = 0.05
LATENCY_TARGET_MS = 1000.0
RSS_TARGET_MB = 200.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def _request(name: str, kwargs: dict[str, Any], pad: int = 0) -> bytes:
    header = {"message_id": uuid.uuid4().hex.encode(), "v": 3}
    args: list[Any] = [{b"context": True, b"context_type": b"base_request", b"data": {}}]
    if pad:
        kwargs = {**kwargs, "pad": "p" * pad}
    return bytes(msgpack.packb([header, name, args, kwargs], use_bin_type=True))


class _Legit:
    """The agent's calls every CALL_EVERY s while ``active``: worst latency and failures."""

    def __init__(self, port: int) -> None:
        self.api = ZmqConductorAPI(conductor_endpoint("127.0.0.1", port), timeout=10)
        self.samples: list[float] = []
        self.failures = 0

    def call_while(self, active: threading.Event) -> None:
        while active.is_set():
            started = time.perf_counter()
            try:
                self.api.device_plugin_labels_update_by_ihost(get_admin_context(), HOST,
                                                              {"intelgpu": "enabled"})
                self.samples.append((time.perf_counter() - started) * 1000)
            except Exception:  # a timeout or an ERR: counted as not answered in time
                self.failures += 1
            time.sleep(CALL_EVERY)


def _flood(port: int, legit: _Legit, frames: Any, count: int) -> tuple[float, float, int]:
    """Send ``count`` frames from one DEALER, reading whatever comes back, while ``legit`` calls;
    the flood is over when every frame is answered, or 2 s pass without an answer (dropped
    frames are never answered). (worst legit call ms, seconds until over, legit failures)."""
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(f"tcp://127.0.0.1:{port}")
    legit.samples, legit.failures = [], 0
    active = threading.Event()
    active.set()
    caller = threading.Thread(target=legit.call_while, args=(active,), daemon=True)
    caller.start()
    started = last = time.monotonic()
    answered = 0
    try:
        for frame in frames:
            sock.send_multipart([b"", frame], copy=False)
            while sock.poll(0):
                sock.recv_multipart()
                answered, last = answered + 1, time.monotonic()
        while answered < count and time.monotonic() - last < 2.0:
            if sock.poll(100):
                sock.recv_multipart()
                answered, last = answered + 1, time.monotonic()
        over = last - started
        time.sleep(0.5)  # the caller keeps calling after the flood
    finally:
        active.clear()
        caller.join(30)
        sock.close()
        ctx.term()
    return max(legit.samples, default=float("inf")), over, legit.failures


def bench_flood() -> list[Result]:
    port = _free_port()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-zmq-flood-") as tmp:
        config = Path(tmp) / "conductor.conf"
        config.write_text("[DEFAULT]\nrpc_backend_zeromq = true\nrpc_zeromq_conductor_bind_ip = "
                          f"127.0.0.1\nrpc_zeromq_conductor_bind_port = {port}\n")
        with running(config) as server:
            legit = _Legit(port)
            try:
                legit.api.device_plugin_labels_update_by_ihost(get_admin_context(), HOST, {})
                idle = _mb(server.pid, "VmRSS")
                small = _request("device_plugin_labels_update_by_ihost",
                                 {"host_uuid": HOST, "device_plugins": ["intelgpu"]})
                worst, secs, fails = _flood(port, legit, (small for _ in range(SMALL_REQUESTS)),
                                            SMALL_REQUESTS)
                results += [
                    Result(SUITE, f"ZeroMQ flood: {SMALL_REQUESTS:,} requests from one peer (answered "
                           f"in {secs:.1f} s), other peer's call, max", worst, "ms", LATENCY_TARGET_MS),
                    Result(SUITE, "ZeroMQ flood: other peer's calls not answered", fails, "calls", 0),
                    Result(SUITE, "ZeroMQ flood: server RSS peak after the request flood",
                           _mb(server.pid, "VmHWM"), "MB", RSS_TARGET_MB)]
                big = bytes(BIG_FRAME)
                worst, secs, fails = _flood(port, legit, (big for _ in range(BIG_FRAMES)), BIG_FRAMES)
                results += [
                    Result(SUITE, f"ZeroMQ flood: {BIG_FRAMES} x 50 MB frames, other peer's call, "
                           "max", worst, "ms", LATENCY_TARGET_MS),
                    Result(SUITE, "ZeroMQ flood: server RSS peak after the 50 MB frames",
                           _mb(server.pid, "VmHWM"), "MB", RSS_TARGET_MB)]
                large = _request("device_plugin_labels_update_by_ihost", {"host_uuid": HOST},
                                 pad=LARGE_FRAME)
                worst, secs, fails = _flood(port, legit, (large for _ in range(LARGE_FRAMES)),
                                            LARGE_FRAMES)
                time.sleep(1.0)  # idle: the server returns the heap
                results += [
                    Result(SUITE, f"ZeroMQ flood: {LARGE_FRAMES} x 250 KB requests, other peer's "
                           "call, max", worst, "ms", LATENCY_TARGET_MS),
                    Result(SUITE, "ZeroMQ flood: server RSS peak, all floods",
                           _mb(server.pid, "VmHWM"), "MB", RSS_TARGET_MB),
                    Result(SUITE, f"ZeroMQ flood: server RSS idle after them (before: {idle:.0f} MB)",
                           _mb(server.pid, "VmRSS"), "MB", idle + 10)]
            finally:
                legit.api.close()
    return results


if __name__ == "__main__":  # pragma: no cover - convenience
    from benchmarks.common import format_table

    print(format_table(bench_flood()))
