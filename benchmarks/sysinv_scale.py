"""The conductor at cluster scale, as processes: part of ``python -m benchmarks sysinv``.

Two real ``sysinv-gpu-conductor`` processes (controller-0, controller-1) on one PostgreSQL
database (a throwaway one; a shared SQLite file when PostgreSQL is unreachable) and one
RabbitMQ topic, with the default Lease timings (15 s duration, 10 s renew deadline, 2 s
retry); the emulated API server in this process holds 5,000 nodes. Figures: 5,000 agents
reporting at once (4 caller processes x 60 threads, so the callers' own CPU is not what is
measured) until all labelled, the RSS of the active and of the
standby conductor at 5,000 nodes, and failover: kill -9 of the active -> the first report
answered and patched by the standby, and how many other nodes were patched meanwhile (0: no
flapping).
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
from pathlib import Path

from oslo_config import cfg

from benchmarks.common import Result
from sysinv_ext.common import rpc
from sysinv_ext.conductor.rpcapi import ConductorAPI
from tests.fakes import rabbit as rabbit_fake
from tests.fakes.kube_api import FakeKubeAPI

SUITE = "sysinv"
RABBIT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
NODES = 5000
CALLER_PROCESSES = 4
CALLER_THREADS = 60
LEASE_DURATION = 15.0


def _uuid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


@contextmanager
def _database(tmp: Path) -> Iterator[str]:
    try:
        import psycopg2

        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres",
                                 connect_timeout=2)
    except Exception:  # no PostgreSQL here: both conductors share one SQLite file
        yield f"sqlite:///{tmp}/shared.sqlite"
        return
    name = f"bench_conductor_{uuid.uuid4().hex[:10]}"
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


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
    api = FakeKubeAPI().start()
    topic = "sysinv.conductor_manager.scale-" + uuid.uuid4().hex[:8]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    keep = os.environ.get("BENCH_KEEP_DIR")
    workdir = contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="bench-scale-")
    with workdir as tmpdir, _database(Path(tmpdir)) as db:
        tmp = Path(tmpdir)
        for i in range(NODES):
            api.add_node(f"node-{i:05d}", _uuid(i), {"kubernetes.io/hostname": f"node-{i:05d}"})
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
        plugins = tmp / "enabled_kube_plugins"
        plugins.write_text(json.dumps({"intel-gpu-plugin": "intelgpu=enabled"}))
        conf = cfg.ConfigOpts()
        rpc.register_opts(conf)
        conf([], default_config_files=[])
        transport = rpc.get_transport(conf, url=RABBIT_URL)
        agent = ConductorAPI(transport, topic=topic, timeout=int(os.environ.get("BENCH_TIMEOUT", 120)),
                             retry=1)
        try:
            for name in ("controller-0", "controller-1"):
                config = tmp / f"{name}.conf"
                config.write_text(
                    f"[DEFAULT]\ntransport_url = {RABBIT_URL}\nlog_file = {tmp}/{name}.log\n"
                    f"[conductor]\ntopic = {topic}\nhost = {name}\nenabled_kube_plugins = {plugins}\n"
                    f"state_path = {tmp}/{name}\n[database]\nconnection = {db}\n"
                    f"[kubernetes]\nkubeconfig = {kubeconfig}\n")
                procs[name] = subprocess.Popen([*_command(), "--config-file", str(config)],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                log = tmp / f"{name}.log"
                if name == "controller-0" and not _wait(
                        lambda log=log: log.exists() and "serving topic" in log.read_text(), 120):
                    raise RuntimeError("controller-0 never served")  # (no queue yet: calls lost)
            agent.device_plugin_labels_update_by_ihost({}, _uuid(0), {})  # served by the active
            return _burst(api, topic) + _rss(procs) + _failover(api, agent, procs)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            transport.cleanup()
            rabbit_fake.delete(queues=[topic, f"{topic}.controller-0", f"{topic}.controller-1"])
            api.stop()


def _caller_process(topic: str, indices: list[int], barrier: object, out: object) -> None:
    """One caller process: its own transport, ``CALLER_THREADS`` threads over ``indices``."""
    conf = cfg.ConfigOpts()
    rpc.register_opts(conf)
    conf([], default_config_files=[])
    transport = rpc.get_transport(conf, url=RABBIT_URL)
    agent = ConductorAPI(transport, topic=topic, timeout=120, retry=1)
    errors: list[str] = []

    def caller(k: int) -> None:
        for i in indices[k::CALLER_THREADS]:
            try:
                agent.device_plugin_labels_update_by_ihost({}, _uuid(i), {"intelgpu": "enabled"})
            except Exception as err:  # counted by the parent
                errors.append(repr(err))

    agent.client.prepare(timeout=30).call({}, "device_plugin_labels_update_by_ihost",
                                          host_uuid=_uuid(indices[0]), device_plugins=[])  # warm
    barrier.wait()  # type: ignore[attr-defined]
    threads = [threading.Thread(target=caller, args=(k,)) for k in range(CALLER_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(errors)  # type: ignore[attr-defined]
    transport.cleanup()


def _burst(api: FakeKubeAPI, topic: str) -> list[Result]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(CALLER_PROCESSES + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=_caller_process,
                         args=(topic, list(range(k, NODES, CALLER_PROCESSES)), barrier, out))
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
    labelled = sum(1 for o in api.list_objects("v1", "nodes")
                   if (o["metadata"].get("labels") or {}).get("intelgpu") == "enabled")
    print(f"  {NODES} agents at once: {labelled} labelled, {len(errors)} errors in {elapsed:.2f} s"
          + (f" (first: {errors[0]})" if errors else ""), flush=True)
    return [Result(SUITE, f"{NODES} agents at once, {NODES}-node cluster: all labelled", elapsed, "s", 20.0),
            Result(SUITE, f"{NODES} agents at once: nodes labelled", labelled, "nodes", NODES,
                   lower_is_better=False),
            Result(SUITE, f"{NODES} agents at once: failed calls", len(errors), "calls", 0)]


def _rss(procs: dict[str, subprocess.Popen[bytes]]) -> list[Result]:
    return [Result(SUITE, f"conductor RSS at {NODES} nodes, active", _rss_mb(procs["controller-0"].pid),
                   "MB", 150.0),
            Result(SUITE, f"conductor RSS at {NODES} nodes, standby", _rss_mb(procs["controller-1"].pid),
                   "MB", 150.0)]


def _failover(api: FakeKubeAPI, agent: ConductorAPI,
              procs: dict[str, subprocess.Popen[bytes]]) -> list[Result]:
    api.clear_records()
    killed = time.perf_counter()
    procs["controller-0"].send_signal(signal.SIGKILL)
    procs["controller-0"].wait(10)
    result = agent.device_plugin_labels_update_by_ihost({}, _uuid(0), {})  # GPU gone on node 0
    served = time.perf_counter() - killed
    if result.get("removed") != ["intelgpu"] or _holder(api) != "controller-1":
        raise RuntimeError(f"failover: {result}, Lease held by {_holder(api)}")
    others = [p for p in api.patches if p.path != "/api/v1/nodes/node-00000"]
    return [Result(SUITE, "failover: kill -9 of the active -> standby serves (lease 15 s)", served, "s",
                   LEASE_DURATION + 2),
            Result(SUITE, "failover: other nodes patched meanwhile (flapping)", len(others), "PATCHes", 0)]
