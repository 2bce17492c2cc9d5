"""The ZeroMQ half of ``python -m benchmarks sysinv``: sysinv's zerorpc wire, no broker.

Same conductor as the AMQP figures (a real ConductorManager, the emulated Kubernetes API server
over HTTP, SQLite), served by ``ZmqRpcServer`` on a free 127.0.0.1 port and called by the agent's
``ZmqConductorAPI``. The floor is a bare call (same client and server code, a method that does
nothing) measured in the same run, so "report -> label" minus floor is the conductor's own work
(lookup, PATCH, DB). Target: report -> label p50 <= floor p50 + 10 ms.
"""
from __future__ import annotations

import time
from typing import Any

from benchmarks.common import Result, median, percentile
from sysinv_ext.common import exception, zmq_rpc
from sysinv_ext.common.context import get_admin_context
from sysinv_ext.conductor.manager import ConductorManager
from sysinv_ext.conductor.rpcapizmq import ZmqConductorAPI, conductor_endpoint
from tests.fakes.kube_api import FakeKubeAPI

SUITE = "sysinv"
METHOD = "device_plugin_labels_update_by_ihost"
HOST = "0000beef-0000-4000-8000-00000000beef"
NODE = "zmq-worker-0"


class _Floor:
    """A server method that does nothing: what the wire alone costs."""

    def device_plugin_labels_update_by_ihost(self, context: Any, **kwargs: Any) -> None:
        return None


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _floor(rounds: int) -> list[float]:
    server = zmq_rpc.ZmqRpcServer(_Floor(), [METHOD], "127.0.0.1", 0, name="floor").start()
    client = zmq_rpc.ZmqRpcClient(server.endpoint, timeout=30)
    try:
        client.call(METHOD, get_admin_context(), host_uuid=HOST, device_plugins=[])  # connect
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            client.call(METHOD, get_admin_context(), host_uuid=HOST, device_plugins=["intelgpu"])
            samples.append(_ms(t0))
        return samples
    finally:
        client.close()
        server.stop()


def bench_zmq(manager: ConductorManager, api: FakeKubeAPI, rounds: int = 200) -> list[Result]:
    """report -> label set / removed over ZeroMQ, beside the bare call floor."""
    floor = _floor(rounds)
    api.add_node(NODE, HOST)
    manager.start()
    deadline = time.monotonic() + 30
    while manager.cache.get(HOST) is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the node watch has delivered the new node
    server = zmq_rpc.ZmqRpcServer(manager, [METHOD], "127.0.0.1", 0, name="sysinv-gpu-conductor",
                                  expected=(exception.SysinvExtException,)).start()
    agent = ZmqConductorAPI(conductor_endpoint("127.0.0.1", server.port), timeout=30)
    set_ms, remove_ms = [], []
    try:
        agent.device_plugin_labels_update_by_ihost(get_admin_context(), HOST, {})  # warm
        for _ in range(rounds // 2):
            t0 = time.perf_counter()
            agent.device_plugin_labels_update_by_ihost(get_admin_context(), HOST, {"intelgpu": "enabled"})
            set_ms.append(_ms(t0))
            if api.node_labels(NODE).get("intelgpu") != "enabled":
                raise RuntimeError("ZeroMQ: label not set when the call returned")
            t0 = time.perf_counter()
            agent.device_plugin_labels_update_by_ihost(get_admin_context(), HOST, {})
            remove_ms.append(_ms(t0))
            if "intelgpu" in api.node_labels(NODE):
                raise RuntimeError("ZeroMQ: label not removed when the call returned")
    finally:
        agent.close()
        server.stop()
    floor_p50 = median(floor)
    return [
        Result(SUITE, "ZeroMQ: bare zerorpc call floor (no-op method), p50", floor_p50, "ms"),
        Result(SUITE, "ZeroMQ: bare zerorpc call floor, p99", percentile(floor, 99), "ms"),
        Result(SUITE, "ZeroMQ: agent report -> label set, p50 (target floor+10)", median(set_ms), "ms",
               floor_p50 + 10.0),
        Result(SUITE, "ZeroMQ: agent report -> label set, p99 (target floor p99+30)",
               percentile(set_ms, 99), "ms", percentile(floor, 99) + 30.0),
        Result(SUITE, "ZeroMQ: agent report (GPU gone) -> label removed, p50", median(remove_ms), "ms",
               floor_p50 + 10.0),
    ]
