"""``python -m benchmarks sysinv``: figures of the conductor (labels from agent reports).

A ConductorManager serves RPC over the real RabbitMQ broker (127.0.0.1:5672) in this process;
the agent side is the real ``rpcapi.ConductorAPI`` on its own transport. Kubernetes is the
emulated API server of tests/fakes/kube_api.py reached over HTTP through the official client;
labels are recorded in a real SQLite file. Figures: report -> label set latency over AMQP and,
beside it, over sysinv's ZeroMQ RPC with its bare-call floor (benchmarks/sysinv_zmq.py), the
audit of 1,000 nodes (one LIST, only the PATCHes needed), and 200 agents reporting at once.
"""
from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from benchmarks.common import Result, median, percentile
from sysinv_ext.common import rpc
from sysinv_ext.conductor.manager import ConductorManager
from sysinv_ext.conductor.rpcapi import ConductorAPI
from sysinv_ext.conf import register_conductor_opts
from sysinv_ext.db import api as db_api
from sysinv_ext.db import migration
from tests.fakes.kube_api import FakeKubeAPI

SUITE = "sysinv"
RABBIT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
PLUGINS = {"intel-gpu-plugin": "intelgpu=enabled"}


def _uuid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


@dataclass
class Bench:
    api: FakeKubeAPI
    conf: cfg.ConfigOpts
    manager: ConductorManager
    agent: ConductorAPI


def _conf(tmp: Path, api: FakeKubeAPI, topic: str) -> cfg.ConfigOpts:
    plugins = tmp / "enabled_kube_plugins"
    plugins.write_text(json.dumps(PLUGINS))
    conf = cfg.ConfigOpts()
    register_conductor_opts(conf)
    rpc.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("transport_url", RABBIT_URL)
    conf.set_override("topic", topic, "conductor")
    conf.set_override("host", "bench-conductor", "conductor")
    conf.set_override("state_path", str(tmp / "state"), "conductor")
    conf.set_override("enabled_kube_plugins", str(plugins), "conductor")
    conf.set_override("kubeconfig", str(api.write_kubeconfig(tmp / "kubeconfig")), "kubernetes")
    return conf


@contextmanager
def _bench(tmp: Path) -> Iterator[Bench]:
    api = FakeKubeAPI().start()
    topic = "sysinv.conductor_manager.bench-" + uuid.uuid4().hex[:8]
    conf = _conf(tmp, api, topic)
    manager = ConductorManager(conf)
    migration.upgrade(manager.engine)
    server_transport = rpc.get_transport(conf)
    server = rpc.get_server(conf, messaging.Target(topic=topic, server="bench-conductor"),
                            [manager], server_transport)
    server.start()
    client_transport = rpc.get_transport(conf)
    agent = ConductorAPI(client_transport, topic=topic, timeout=60, retry=1)
    try:
        yield Bench(api, conf, manager, agent)
    finally:
        rpc.stop_server(server)
        client_transport.cleanup()
        manager.engine.dispose()
        api.stop()


def bench_report_latency(b: Bench, rounds: int = 40) -> list[Result]:
    b.api.add_node("worker-0", _uuid(0))
    b.agent.device_plugin_labels_update_by_ihost({}, _uuid(0), {})  # warm: client, LIST, queues
    set_ms, remove_ms = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        b.agent.device_plugin_labels_update_by_ihost({}, _uuid(0), {"intelgpu": "enabled"})
        set_ms.append((time.perf_counter() - t0) * 1000)
        if b.api.node_labels("worker-0").get("intelgpu") != "enabled":
            raise RuntimeError("label not set when the call returned")
        t0 = time.perf_counter()
        b.agent.device_plugin_labels_update_by_ihost({}, _uuid(0), {})
        remove_ms.append((time.perf_counter() - t0) * 1000)
        if "intelgpu" in b.api.node_labels("worker-0"):
            raise RuntimeError("label not removed when the call returned")
    return [
        Result(SUITE, "agent report -> label set (RabbitMQ + API), p50", median(set_ms), "ms", 50),
        Result(SUITE, "agent report -> label set, p95", percentile(set_ms, 95), "ms"),
        Result(SUITE, "agent report -> label set, p99", percentile(set_ms, 99), "ms"),
        Result(SUITE, "agent report (GPU gone) -> label removed, p50", median(remove_ms), "ms", 50),
    ]


def bench_audit(b: Bench, nodes: int = 1000, drifted: int = 100) -> list[Result]:
    for i in range(1, nodes + 1):
        b.api.add_node(f"audit-{i:04d}", _uuid(i), {"kubernetes.io/hostname": f"audit-{i:04d}",
                                                      "intelgpu": "enabled"})
        db_api.label_set(b.manager.engine, _uuid(i), "intelgpu", "enabled")
    b.manager.audit()  # steady state, and the first cache fill
    for i in range(1, drifted + 1):  # labels removed by hand
        node = b.api.get_node(f"audit-{i:04d}")
        assert node is not None
        node["metadata"]["labels"].pop("intelgpu")
        b.api.put_object(node)
    b.api.clear_records()
    t0 = time.perf_counter()
    result = b.manager.audit()
    drift_s = time.perf_counter() - t0
    lists = sum(1 for r in b.api.requests if r.method == "GET" and r.path == "/api/v1/nodes")
    patches = len(b.api.patches)
    if result.patched != drifted or patches != drifted or lists != 1:
        raise RuntimeError(f"audit: {lists} LISTs, {patches} PATCHes, result {result}")
    b.api.clear_records()
    t0 = time.perf_counter()
    b.manager.audit()
    steady_s = time.perf_counter() - t0
    if len(b.api.requests) != 1:
        raise RuntimeError(f"steady audit sent {len(b.api.requests)} requests")
    for i in range(1, nodes + 1):  # every label gone (e.g. nodes re-created): worst case
        node = b.api.get_node(f"audit-{i:04d}")
        assert node is not None
        node["metadata"]["labels"].pop("intelgpu", None)
        b.api.put_object(node)
    b.api.clear_records()
    t0 = time.perf_counter()
    result = b.manager.audit()
    all_s = time.perf_counter() - t0
    if result.patched != nodes or len(b.api.patches) != nodes:
        raise RuntimeError(f"full audit: {len(b.api.patches)} PATCHes, result {result}")
    return [
        Result(SUITE, f"audit {nodes} nodes, {drifted} restored (1 LIST + {drifted} PATCH)",
               drift_s, "s", 2.0),
        Result(SUITE, f"audit {nodes} nodes, all restored (1 LIST + {nodes} PATCH)", all_s, "s"),
        Result(SUITE, f"audit {nodes} nodes, nothing to do (1 LIST)", steady_s, "s", 2.0),
    ]


def bench_burst(b: Bench, agents: int = 200) -> list[Result]:
    base = 5000
    for i in range(agents):
        b.api.add_node(f"burst-{i:03d}", _uuid(base + i))
    b.manager.audit()  # the conductor has seen these nodes (as after its first audit)
    errors: list[BaseException] = []
    start = threading.Barrier(agents + 1)

    def agent(i: int) -> None:
        try:
            start.wait()
            b.agent.device_plugin_labels_update_by_ihost({}, _uuid(base + i), {"intelgpu": "enabled"})
        except BaseException as err:  # counted below
            errors.append(err)

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(agents)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    labelled = sum(1 for i in range(agents)
                   if b.api.node_labels(f"burst-{i:03d}").get("intelgpu") == "enabled")
    recorded = sum(1 for r in db_api.label_get_all(b.manager.engine) if r.host_uuid.startswith("0000138"))
    print(f"  {agents} agents at once: {labelled} nodes labelled, {len(errors)} errors, "
          f"{recorded} records in {elapsed:.2f} s", flush=True)
    return [
        Result(SUITE, f"{agents} agents at once: all labelled (wall time)", elapsed, "s"),
        Result(SUITE, f"{agents} agents at once: nodes labelled", labelled, "nodes", agents,
               lower_is_better=False),
        Result(SUITE, f"{agents} agents at once: failed calls", len(errors), "calls", 0),
    ]


def _broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


def run() -> list[Result]:
    if not _broker_up():
        raise RuntimeError("RabbitMQ is not reachable at 127.0.0.1:5672 (start rabbitmq-server)")
    from benchmarks.sysinv_zmq import bench_zmq

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-sysinv-") as tmp, _bench(Path(tmp)) as b:
        results += bench_report_latency(b, rounds=100)
        results += bench_zmq(b.manager, b.api)  # same conductor, sysinv's ZeroMQ instead of AMQP
        results += bench_audit(b)
        results += bench_burst(b)
    return results


def _main() -> Any:  # pragma: no cover - convenience
    from benchmarks.common import format_table
    print(format_table(run()))


if __name__ == "__main__":  # pragma: no cover
    _main()
