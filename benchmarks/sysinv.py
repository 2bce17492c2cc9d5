"""``python -m benchmarks sysinv``: figures of the conductor (labels from agent reports).

A ConductorManager serves RPC over the real RabbitMQ broker (127.0.0.1:5672) in this process;
the agent side is the real ``rpcapi.ConductorAPI`` on its own transport. Kubernetes is the
emulated API server of tests/fakes/kube_api.py reached over HTTP through the official client;
labels are recorded in a real SQLite file. The RPC floor is an empty oslo.messaging endpoint
on the same broker, measured in the same run. Figures: report -> label visible (the PATCH
stored by the API server) and -> call returned, over the floor; 200 agents at once; audits
restoring 1,000 and 5,000 labels (one LIST, PATCHes concurrent) and a quiet audit (0 writes).
The 5,000-node burst, conductor RSS and failover run the conductor as processes, over AMQP and
again over ZeroMQ: benchmarks/sysinv_scale.py. The ZeroMQ latency figures (sysinv's zerorpc
wire, same conductor, its own bare-call floor) come from benchmarks/sysinv_zmq.py; a hostile
ZeroMQ peer's floods (latency of another peer's call, server RSS) from sysinv_zmq_flood.py.
"""
from __future__ import annotations

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
from sqlalchemy import event, insert

from benchmarks.common import Result, median, percentile
from benchmarks.conductor_setup import conductor_conf, host_uuid
from sysinv_ext.common import rpc
from sysinv_ext.conductor.manager import ConductorManager
from sysinv_ext.conductor.rpcapi import ConductorAPI
from sysinv_ext.db import migration
from sysinv_ext.db.models import Host, Label, utcnow
from tests.fakes.kube_api import FakeKubeAPI

SUITE = "sysinv"


@dataclass
class Bench:
    api: FakeKubeAPI
    conf: cfg.ConfigOpts
    manager: ConductorManager
    agent: ConductorAPI
    floor: messaging.RPCClient


class _Empty:
    """The RPC floor: an endpoint that does nothing."""

    target = messaging.Target(version="1.1")

    def ping(self, context: Any) -> dict[str, Any]:
        return {}


@contextmanager
def _bench(tmp: Path) -> Iterator[Bench]:
    api = FakeKubeAPI().start()
    topic = "sysinv.conductor_manager.bench-" + uuid.uuid4().hex[:8]
    conf = conductor_conf(tmp, api.write_kubeconfig(tmp / "kubeconfig"), topic, "bench-conductor")
    manager = ConductorManager(conf)
    migration.upgrade(manager.engine)
    server_transport = rpc.get_transport(conf)
    server = rpc.get_server(conf, messaging.Target(topic=topic, server="bench-conductor"),
                            [manager], server_transport)
    server.start()
    floor_topic = topic + ".floor"
    floor_server = rpc.get_server(conf, messaging.Target(topic=floor_topic, server="bench-floor"),
                                  [_Empty()], rpc.get_transport(conf))
    floor_server.start()
    client_transport = rpc.get_transport(conf)
    agent = ConductorAPI(client_transport, topic=topic, timeout=60, retry=1)
    floor = rpc.get_client(client_transport, messaging.Target(topic=floor_topic, version="1.1"),
                           timeout=60, retry=1)
    try:
        yield Bench(api, conf, manager, agent, floor)
    finally:
        manager.close()
        rpc.stop_server(floor_server)
        rpc.stop_server(server)
        client_transport.cleanup()
        manager.engine.dispose()
        api.stop()


def bench_report_latency(b: Bench, rounds: int = 100) -> list[Result]:
    floor_ms = []
    for _ in range(rounds * 2):
        t0 = time.perf_counter()
        b.floor.call({}, "ping")
        floor_ms.append((time.perf_counter() - t0) * 1000)
    b.api.add_node("worker-0", host_uuid(0))
    b.agent.device_plugin_labels_update_by_ihost({}, host_uuid(0), {})  # warm: client, LIST, queues
    label_ms, return_ms = [], []
    for i in range(rounds * 2):
        b.api.clear_records()
        payload = {"intelgpu": "enabled"} if i % 2 == 0 else {}
        t0 = time.perf_counter()
        b.agent.device_plugin_labels_update_by_ihost({}, host_uuid(0), payload)
        returned = time.perf_counter()
        if ("intelgpu" in b.api.node_labels("worker-0")) != bool(payload) or not b.api.patch_applied:
            raise RuntimeError("label not changed when the call returned")
        label_ms.append((b.api.patch_applied[-1] - t0) * 1000)
        return_ms.append((returned - t0) * 1000)
    floor50, floor99 = median(floor_ms), percentile(floor_ms, 99)
    gap = [r - label for r, label in zip(return_ms, label_ms, strict=True)]
    return [
        Result(SUITE, "floor: empty oslo.messaging call (RabbitMQ), p50", floor50, "ms"),
        Result(SUITE, "floor: empty oslo.messaging call (RabbitMQ), p99", floor99, "ms"),
        Result(SUITE, "AMQP report -> label visible, p50 (target floor + 10 ms)",
               median(label_ms), "ms", floor50 + 10),
        Result(SUITE, "AMQP report -> label visible, p99 (target floor + 30 ms)",
               percentile(label_ms, 99), "ms", floor99 + 30),
        Result(SUITE, "AMQP call return after label visible, p50", median(gap), "ms", 2.0),
        Result(SUITE, "AMQP report -> call returned, p50", median(return_ms), "ms"),
    ]


def _seed(b: Bench, nodes: int, prefix: str, base: int) -> None:
    """``nodes`` labelled nodes and their records (one bulk insert: setup, not measured)."""
    for i in range(nodes):
        b.api.add_node(f"{prefix}-{i:05d}", host_uuid(base + i),
                       {"kubernetes.io/hostname": f"{prefix}-{i:05d}", "intelgpu": "enabled"})
    with b.manager.engine.begin() as conn:
        conn.execute(insert(Host), [{"host_uuid": host_uuid(base + i), "reported_at": utcnow(),
                                     "seen_at": utcnow()} for i in range(nodes)])
        conn.execute(insert(Label), [{"host_uuid": host_uuid(base + i), "label_key": "intelgpu",
                                      "label_value": "enabled", "created_at": utcnow()}
                                     for i in range(nodes)])


def _strip(b: Bench, prefix: str, count: int) -> None:
    for i in range(count):  # labels removed by hand while the conductor does not watch
        node = b.api.get_node(f"{prefix}-{i:05d}")
        assert node is not None
        node["metadata"]["labels"].pop("intelgpu", None)
        b.api.put_object(node)


def bench_audit(b: Bench, sizes: tuple[tuple[int, float], ...] = ((1000, 2.0), (5000, 8.0))) -> list[Result]:
    results: list[Result] = []
    writes: list[str] = []
    event.listen(b.manager.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: writes.append(statement)
                 if statement.split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE") else None)
    b.manager.start()
    b.manager.cache.stop()  # what the audit alone does (the watch would restore these at once)
    base = 100_000
    for nodes, target in sizes:
        prefix = f"audit{nodes}"
        _seed(b, nodes, prefix, base)
        b.manager.audit()  # steady state
        _strip(b, prefix, nodes)
        b.api.clear_records()
        t0 = time.perf_counter()
        result = b.manager.audit()
        elapsed = time.perf_counter() - t0
        lists = len(b.api.list_requests())
        if result.patched != nodes or len(b.api.patches) != nodes or lists != 1:
            raise RuntimeError(f"audit: {lists} LISTs, {len(b.api.patches)} PATCHes, {result}")
        results.append(Result(SUITE, f"audit restoring {nodes} labels (1 LIST + {nodes} PATCH)",
                              elapsed, "s", target))
        writes.clear()
        b.api.clear_records()
        t0 = time.perf_counter()
        b.manager.audit()
        quiet = time.perf_counter() - t0
        if len(b.api.requests) != 1:
            raise RuntimeError(f"quiet audit sent {len(b.api.requests)} requests")
        total = len(b.api.list_objects("v1", "nodes"))
        results += [Result(SUITE, f"quiet audit, {total} nodes (1 LIST)", quiet, "s"),
                    Result(SUITE, f"quiet audit, {total} nodes: database writes", len(writes),
                           "writes", 0)]
        base += nodes
    watches = b.manager.cache.watches
    b.manager.cache.restart()  # watch again for what follows: its LIST must not count there
    deadline = time.monotonic() + 60
    while b.manager.cache.watches == watches and time.monotonic() < deadline:
        time.sleep(0.01)
    return results


def bench_watch_restore(b: Bench, count: int = 200) -> list[Result]:
    """Labels removed by hand, put back from the watch events (no audit pass)."""
    prefix = "audit1000"
    b.api.clear_records()
    t0 = time.perf_counter()
    _strip(b, prefix, count)
    deadline = time.monotonic() + 60
    while len(b.api.patch_applied) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    restored = sum(1 for i in range(count)
                   if b.api.node_labels(f"{prefix}-{i:05d}").get("intelgpu") == "enabled")
    return [Result(SUITE, f"{count} labels removed by hand -> restored from the watch", elapsed, "s"),
            Result(SUITE, f"{count} labels removed by hand: restored without an audit", restored,
                   "nodes", count, lower_is_better=False),
            Result(SUITE, "... node LISTs meanwhile", len(b.api.list_requests()), "LISTs", 0)]


def bench_burst(b: Bench, agents: int = 200) -> list[Result]:
    base = 5000
    for i in range(agents):
        b.api.add_node(f"burst-{i:03d}", host_uuid(base + i))
    deadline = time.monotonic() + 30
    while any(b.manager.cache.get(host_uuid(base + i)) is None for i in range(agents)) \
            and time.monotonic() < deadline:
        time.sleep(0.01)  # the watch has delivered the new nodes
    errors: list[BaseException] = []
    start = threading.Barrier(agents + 1)

    def agent(i: int) -> None:
        try:
            start.wait()
            b.agent.device_plugin_labels_update_by_ihost({}, host_uuid(base + i), {"intelgpu": "enabled"})
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
    print(f"  {agents} agents at once: {labelled} nodes labelled, {len(errors)} errors "
          f"in {elapsed:.2f} s", flush=True)
    return [
        Result(SUITE, f"{agents} agents at once: all labelled (wall time)", elapsed, "s", 2.0),
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
        results += bench_report_latency(b)
        results += bench_zmq(b.manager, b.api)  # same conductor, sysinv's ZeroMQ instead of AMQP
        results += bench_burst(b)
        results += bench_audit(b)
        results += bench_watch_restore(b)
    from benchmarks import sysinv_scale
    from benchmarks.sysinv_zmq_flood import bench_flood

    results += bench_flood()  # a hostile ZeroMQ peer against the conductor's own ZeroMQ server
    results += sysinv_scale.run()
    return results


def _main() -> Any:  # pragma: no cover - convenience
    from benchmarks.common import format_table
    print(format_table(run()))


if __name__ == "__main__":  # pragma: no cover
    _main()
