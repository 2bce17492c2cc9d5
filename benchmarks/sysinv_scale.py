"""The conductor at cluster scale, as processes, over AMQP and over ZeroMQ: part of
``python -m benchmarks sysinv``.

One flow, run once per transport (``amqp`` first, then ``zmq``; each on a fresh emulated
cluster and a fresh database): two real ``sysinv-gpu-conductor`` processes (controller-0,
controller-1) on one PostgreSQL database (a throwaway one; a shared SQLite file when
PostgreSQL is unreachable), with the default Lease timings (15 s duration, 10 s renew deadline,
2 s retry) on the emulated API server in this process, which holds 5,000 nodes. Over AMQP both
conductors use one RabbitMQ topic; over ZeroMQ (sysinv's zerorpc wire, ``rpc_backend_zeromq``,
no broker) both are given the same free 127.0.0.1 port, which only the active one binds (the
standby binds it once it holds the Lease). Figures, per transport: 5,000 agents reporting at
once (4 caller processes x 60 threads, so the callers' own CPU is not what is measured) until
all labelled, the RSS of the active and of the standby conductor at 5,000 nodes, and failover:
kill -9 of the active -> the first report answered and patched by the standby, and how many
other nodes were patched meanwhile (0: no flapping). The AMQP rows keep their names; the ZeroMQ
rows are the same figures named "ZeroMQ: ...".

The burst's floor, measured first in the same run: the same callers against an empty conductor,
a process serving the same RPC code (benchmarks/sysinv_floor.py: ``start_rpc_servers`` of
cmd/conductor, so the same oslo.messaging or ZeroMQ server) with a method that does nothing.
The burst minus its floor is what the conductor's own work costs; the floor is what this
machine's callers, broker and RPC library cost at that moment (it moves with the machine's load).

Callers: over AMQP one ``ConductorAPI`` per caller process, shared by its threads (oslo.messaging's
RPC client is thread-safe); over ZeroMQ one ``ZmqConductorAPI`` per thread, as each real agent has
its own: its ``ZmqRpcClient`` has one socket and makes one call at a time under a lock, so one
client shared by 60 threads would measure that lock. Failover over ZeroMQ: a request sent while
no conductor is bound waits in the client's socket and goes out once the standby binds, but one
written into the killed conductor's connection is lost, so the agent's report is retried every
``ZMQ_ATTEMPT_TIMEOUT`` s (bounded by ``BENCH_TIMEOUT``) and the figure is kill -> first answer.

Environment: ``BENCH_SCALE_NODES`` (default 5000; the targets stay those for 5,000 nodes, and
other sizes are named in the rows), ``BENCH_SCALE_TRANSPORTS`` (default ``amqp,zmq``),
``BENCH_TIMEOUT`` (s, default 120), ``BENCH_KEEP_DIR`` (keep configs and logs there, one
sub-directory per transport). After the run every RabbitMQ queue and exchange named after the
run's topic is deleted, including the ``<topic>_fanout_<uuid>`` queues of the killed conductors.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
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

from benchmarks import sysinv_floor
from benchmarks.common import Result
from benchmarks.conductor_setup import PLUGINS, RABBIT_URL, host_uuid
from sysinv_ext.common import rpc
from sysinv_ext.common.context import get_admin_context
from sysinv_ext.conductor.rpcapi import ConductorAPI, HostUUID
from sysinv_ext.conductor.rpcapizmq import ZmqConductorAPI, conductor_endpoint
from tests.fakes import rabbit as rabbit_fake
from tests.fakes.kube_api import FakeKubeAPI
from tests.fakes.postgres import throwaway_database

SUITE = "sysinv"
NODES = 5000  # the cluster size the targets are set for (BENCH_SCALE_NODES overrides the size)
TRANSPORTS = ("amqp", "zmq")
CALLER_PROCESSES = 4
CALLER_THREADS = 60
LEASE_DURATION = 15.0
ZMQ_IP = "127.0.0.1"
ZMQ_ATTEMPT_TIMEOUT = 2.0  # s: one report attempt of the agent during a ZeroMQ failover
METHOD = "device_plugin_labels_update_by_ihost"

Agent = ConductorAPI | ZmqConductorAPI


def _timeout() -> float:
    return float(os.environ.get("BENCH_TIMEOUT", 120))


def _nodes() -> int:
    text = os.environ.get("BENCH_SCALE_NODES", str(NODES))
    try:
        nodes = int(text)
    except ValueError:
        nodes = 0
    if nodes < CALLER_PROCESSES:
        raise ValueError(f"BENCH_SCALE_NODES must be a whole number >= {CALLER_PROCESSES}, not {text!r}")
    return nodes


def _transports() -> list[str]:
    chosen = [t.strip() for t in os.environ.get("BENCH_SCALE_TRANSPORTS", ",".join(TRANSPORTS)).split(",")
              if t.strip()]
    if not chosen or any(t not in TRANSPORTS for t in chosen):
        raise ValueError(f"BENCH_SCALE_TRANSPORTS must list some of {', '.join(TRANSPORTS)}, not {chosen}")
    return chosen


@dataclass(frozen=True)
class _Flow:
    """One run of the flow: the transport ("amqp" | "zmq"), the cluster size, the RPC address."""

    transport: str
    nodes: int
    topic: str  # AMQP: both conductors' topic; also names the run
    port: int = 0  # ZeroMQ: the port both conductors bind, one after the other

    @property
    def zmq(self) -> bool:
        return self.transport == "zmq"

    @property
    def prefix(self) -> str:
        return "ZeroMQ: " if self.zmq else ""

    def name(self, figure: str) -> str:
        """A row name: AMQP rows unchanged, ZeroMQ rows prefixed, other sizes than 5,000 named."""
        size = "" if self.nodes == NODES else f" [BENCH_SCALE_NODES={self.nodes}, targets for {NODES}]"
        return f"{self.prefix}{figure}{size}"

    def rpc_options(self) -> str:
        """The conductor's ``[DEFAULT]`` lines for this transport."""
        if self.zmq:
            return (f"rpc_backend_zeromq = true\nrpc_zeromq_conductor_bind_ip = {ZMQ_IP}\n"
                    f"rpc_zeromq_conductor_bind_port = {self.port}\n")
        return f"transport_url = {RABBIT_URL}\n"

    @property
    def serving(self) -> str:
        """What the conductor logs once it serves (only then are calls not lost)."""
        return "serving ZeroMQ RPC at" if self.zmq else "serving topic"

    @property
    def attempt_timeout(self) -> float:
        """The timeout of one report of the failover (AMQP: the request waits in the queue)."""
        return ZMQ_ATTEMPT_TIMEOUT if self.zmq else _timeout()


class _Agents:
    """The conductor clients of one caller process (or of the bench itself).

    AMQP: one ``ConductorAPI`` on one oslo.messaging transport, handed to every thread (its RPC
    client is thread-safe; replies are matched by message id). ZeroMQ: a new ``ZmqConductorAPI``
    per thread: ``ZmqRpcClient`` makes one call at a time per client (a lock around its single
    DEALER socket), so a shared one would queue the threads behind each other.
    """

    def __init__(self, flow: _Flow, timeout: float) -> None:
        self.flow, self.timeout = flow, timeout
        self.context: Any = get_admin_context() if flow.zmq else {}  # what sysinv's agent sends
        self._transport: Any = None
        self._shared: ConductorAPI | None = None
        self._own: list[ZmqConductorAPI] = []
        if not flow.zmq:
            conf = cfg.ConfigOpts()
            rpc.register_opts(conf)
            conf([], default_config_files=[])
            self._transport = rpc.get_transport(conf, url=RABBIT_URL)
            self._shared = ConductorAPI(self._transport, topic=flow.topic, timeout=int(timeout), retry=1)

    def new(self) -> Agent:
        """A client for one thread."""
        if self._shared is not None:
            return self._shared
        agent = ZmqConductorAPI(conductor_endpoint(ZMQ_IP, self.flow.port), timeout=self.timeout)
        self._own.append(agent)
        return agent

    def report(self, agent: Agent, host_uuid: str, labels: dict[str, str]) -> Any:
        return agent.device_plugin_labels_update_by_ihost(self.context, HostUUID(host_uuid), labels)

    def warm(self, agents: list[Agent], host_uuid: str) -> None:
        """Connect before the burst: one empty report per process, a ping per other ZeroMQ client."""
        first, *others = list(dict.fromkeys(agents))
        if isinstance(first, ZmqConductorAPI):
            first.client.call(METHOD, self.context, host_uuid=host_uuid, device_plugins=[], timeout=30)
        else:
            first.client.prepare(timeout=30).call({}, METHOD, host_uuid=host_uuid, device_plugins=[])
        for agent in others:
            if isinstance(agent, ZmqConductorAPI):
                agent.client.call("_zerorpc_ping", timeout=30)  # answered by the server itself

    def close(self) -> None:
        for agent in self._own:
            agent.close()
        if self._transport is not None:
            self._transport.cleanup()


@contextmanager
def _database(tmp: Path) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_database("bench_conductor"))
        except Exception:  # no PostgreSQL here: both conductors share one SQLite file
            url = f"sqlite:///{tmp}/shared.sqlite"
        yield url


def _command() -> list[str]:
    script = shutil.which("sysinv-gpu-conductor", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "sysinv_ext.cmd.conductor"]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _holder(api: FakeKubeAPI) -> str | None:
    lease = api.get_object("coordination.k8s.io/v1", "leases", "sysinv-gpu-conductor", "kube-system")
    return None if lease is None else (lease.get("spec") or {}).get("holderIdentity")


def _wait(predicate: object, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def run() -> list[Result]:
    nodes, transports = _nodes(), _transports()
    if nodes != NODES:
        print(f"  scale: BENCH_SCALE_NODES={nodes}: the targets are those for {NODES} nodes", flush=True)
    results: list[Result] = []
    for transport in transports:
        results += _run(transport, nodes)
    return results


def _workdir(transport: str) -> contextlib.AbstractContextManager[str]:
    keep = os.environ.get("BENCH_KEEP_DIR")
    if not keep:
        return tempfile.TemporaryDirectory(prefix=f"bench-scale-{transport}-")
    path = Path(keep) / transport
    path.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(path))


def _run(transport: str, nodes: int) -> list[Result]:
    """The whole flow over one transport, on a fresh emulated cluster and database."""
    flow = _Flow(transport, nodes, topic="sysinv.conductor_manager.scale-" + uuid.uuid4().hex[:8],
                 port=rabbit_fake.free_port() if transport == "zmq" else 0)
    api = FakeKubeAPI().start()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    agents: _Agents | None = None
    with _workdir(transport) as tmpdir, _database(Path(tmpdir)) as db:
        tmp = Path(tmpdir)
        for i in range(nodes):
            api.add_node(f"node-{i:05d}", host_uuid(i), {"kubernetes.io/hostname": f"node-{i:05d}"})
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
        plugins = tmp / "enabled_kube_plugins"
        plugins.write_text(json.dumps(PLUGINS))
        try:
            floor = _floor(flow, tmp)
            for name in ("controller-0", "controller-1"):
                config = tmp / f"{name}.conf"
                config.write_text(
                    f"[DEFAULT]\n{flow.rpc_options()}log_file = {tmp}/{name}.log\n"
                    f"[conductor]\ntopic = {flow.topic}\nhost = {name}\nenabled_kube_plugins = {plugins}\n"
                    f"state_path = {tmp}/{name}\n[database]\nconnection = {db}\n"
                    f"[kubernetes]\nkubeconfig = {kubeconfig}\n")
                procs[name] = subprocess.Popen([*_command(), "--config-file", str(config)],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                log = tmp / f"{name}.log"
                if name == "controller-0" and not _wait(
                        lambda log=log: log.exists() and flow.serving in log.read_text(), 120):
                    raise RuntimeError(f"{transport}: controller-0 never served")  # (calls lost before)
            agents = _Agents(flow, flow.attempt_timeout)
            agent = agents.new()
            agents.report(agent, host_uuid(0), {})  # served by the active
            return _burst(api, flow, floor) + _rss(flow, procs) + _failover(api, flow, agents, agent, procs)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            if agents is not None:
                agents.close()
            if not flow.zmq:  # the queues named in advance, and the killed servers' fanout queues
                rabbit_fake.delete_prefixed(flow.topic, queues=[
                    flow.topic, f"{flow.topic}.controller-0", f"{flow.topic}.controller-1"])
            api.stop()


def _floor(flow: _Flow, tmp: Path) -> list[Result]:
    """The burst against an empty conductor (own topic / port), before the conductors start."""
    floor = _Flow(flow.transport, flow.nodes, topic=flow.topic + "-floor",
                  port=rabbit_fake.free_port() if flow.zmq else 0)
    config = tmp / "floor.conf"
    config.write_text(f"[DEFAULT]\n{floor.rpc_options()}[conductor]\ntopic = {floor.topic}\nhost = floor\n")
    try:
        with sysinv_floor.running(config):
            elapsed, errors = _calls(floor)
    finally:
        if not floor.zmq:
            rabbit_fake.delete_prefixed(floor.topic, queues=[floor.topic, f"{floor.topic}.floor"])
    print(f"  {flow.prefix}floor: {flow.nodes} calls at once to an empty conductor: {len(errors)} errors in "
          f"{elapsed:.2f} s" + (f" (first: {errors[0]})" if errors else ""), flush=True)
    if errors:
        raise RuntimeError(f"{flow.transport} floor: {len(errors)} calls failed, first: {errors[0]}")
    name = f"{flow.nodes} agents at once, floor: the same callers, an empty conductor"
    return [Result(SUITE, flow.name(name), elapsed, "s")]


def _caller_process(flow: _Flow, indices: list[int], barrier: object, out: object) -> None:
    """One caller process: its own client(s), ``CALLER_THREADS`` threads over ``indices``."""
    agents = _Agents(flow, timeout=120)
    clients = [agents.new() for _ in range(CALLER_THREADS)]  # AMQP: all the same one
    errors: list[str] = []

    def caller(k: int) -> None:
        agent = clients[k]
        for i in indices[k::CALLER_THREADS]:
            try:
                agents.report(agent, host_uuid(i), {"intelgpu": "enabled"})
            except Exception as err:  # counted by the parent
                errors.append(repr(err))

    agents.warm(clients, host_uuid(indices[0]))
    barrier.wait()  # type: ignore[attr-defined]
    threads = [threading.Thread(target=caller, args=(k,)) for k in range(CALLER_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(errors)  # type: ignore[attr-defined]
    agents.close()


def _calls(flow: _Flow) -> tuple[float, list[str]]:
    """``flow.nodes`` reports at once from the caller processes: (seconds until all answered, errors)."""
    nodes = flow.nodes
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(CALLER_PROCESSES + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=_caller_process,
                         args=(flow, list(range(k, nodes, CALLER_PROCESSES)), barrier, out))
             for k in range(CALLER_PROCESSES)]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=300)
    t0 = time.perf_counter()
    errors: list[str] = []
    for _ in procs:
        errors += out.get(timeout=600)
    elapsed = time.perf_counter() - t0
    for proc in procs:
        proc.join(30)
    return elapsed, errors


def _burst(api: FakeKubeAPI, flow: _Flow, floor: list[Result]) -> list[Result]:
    nodes = flow.nodes
    elapsed, errors = _calls(flow)
    labelled = sum(1 for o in api.list_objects("v1", "nodes")
                   if (o["metadata"].get("labels") or {}).get("intelgpu") == "enabled")
    print(f"  {flow.prefix}{nodes} agents at once: {labelled} labelled, {len(errors)} errors in "
          f"{elapsed:.2f} s" + (f" (first: {errors[0]})" if errors else ""), flush=True)
    return [Result(SUITE, flow.name(f"{nodes} agents at once, {nodes}-node cluster: all labelled"),
                   elapsed, "s", 20.0),
            Result(SUITE, flow.name(f"{nodes} agents at once: nodes labelled"), labelled, "nodes", nodes,
                   lower_is_better=False),
            Result(SUITE, flow.name(f"{nodes} agents at once: failed calls"), len(errors), "calls", 0),
            *floor,
            Result(SUITE, flow.name(f"{nodes} agents at once: the conductor's own share (labelled - floor)"),
                   elapsed - floor[0].value, "s")]


def _rss(flow: _Flow, procs: dict[str, subprocess.Popen[bytes]]) -> list[Result]:
    return [Result(SUITE, flow.name(f"conductor RSS at {flow.nodes} nodes, active"),
                   _rss_mb(procs["controller-0"].pid), "MB", 150.0),
            Result(SUITE, flow.name(f"conductor RSS at {flow.nodes} nodes, standby"),
                   _rss_mb(procs["controller-1"].pid), "MB", 150.0)]


def _failover(api: FakeKubeAPI, flow: _Flow, agents: _Agents, agent: Agent,
              procs: dict[str, subprocess.Popen[bytes]]) -> list[Result]:
    api.clear_records()
    killed = time.perf_counter()
    procs["controller-0"].send_signal(signal.SIGKILL)
    procs["controller-0"].wait(10)
    attempts = 0
    while True:  # AMQP: one attempt (the request waits in the queue); ZeroMQ: until one is answered
        attempts += 1
        try:
            result = agents.report(agent, host_uuid(0), {})  # GPU gone on node 0
            break
        except messaging.MessagingTimeout:
            if time.perf_counter() - killed + flow.attempt_timeout > _timeout():
                raise
    served = time.perf_counter() - killed
    # a retried report may find node 0 patched already by an attempt answered too late
    removed = result.get("removed") == ["intelgpu"] or (attempts > 1 and result.get("removed") == [])
    if not removed or "intelgpu" in api.node_labels("node-00000") or _holder(api) != "controller-1":
        raise RuntimeError(f"{flow.transport} failover: {result}, Lease held by {_holder(api)}")
    others = [p for p in api.patches if p.path != "/api/v1/nodes/node-00000"]
    print(f"  {flow.prefix}failover: standby answered after {served:.2f} s, {attempts} attempt(s), "
          f"{len(others)} other PATCHes", flush=True)
    return [Result(SUITE, flow.name("failover: kill -9 of the active -> standby serves (lease 15 s)"), served,
                   "s", LEASE_DURATION + 2),
            Result(SUITE, flow.name("failover: other nodes patched meanwhile (flapping)"), len(others),
                   "PATCHes", 0)]
