"""``python -m benchmarks cluster``: the flow's figures on a REAL local Kubernetes (localcluster).

REAL: kube-apiserver, etcd, controller-manager (DaemonSet controller), scheduler and kubelet
v1.34.1; sysinv-gpu-conductor's ConductorManager serving RPC over RabbitMQ in this process, with
its own RBAC identity; intel-gpu-plugin as a process registered with the real kubelet.
EMULATED: sysfs/devfs (one fake i915 GPU) and the container runtime (fake CRI).

1. report -> label -> plugin pod Bound -> node allocatable, p50/p99 over 20 cycles, each stage
   separately. A cycle starts with no label, no pod, allocatable 0: the agent's report (an RPC
   call) sets the label; the DaemonSet controller creates the pod and the scheduler binds it;
   the bench then starts the plugin with the pod's args (what kubelet would have run) and waits
   for kubelet to put the device in the node's status.allocatable. Between cycles the GPU is
   reported gone: the label goes, the controller deletes the pod, the plugin is stopped.
   Kubelet's node status period is 1 s here (a test cluster; 10 s by default): that period
   bounds the last stage.
2. The conductor's 200-host burst and its 1,000-node audit against the real API server (Node
   objects created through the API, with their systemUUID), beside the same figures on the
   emulated API server (tests/fakes/kube_api.py) in the same run.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import oslo_messaging as messaging

from benchmarks.common import Result, median, percentile
from benchmarks.conductor_setup import conductor_conf, host_uuid
from localcluster import LocalCluster, wait_for

SUITE = "cluster"
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DS_NAME = "intel-gpu-plugin"
DS_LABELS = {"app": "intel-gpu-plugin-bench"}


def wait(what: str, condition: Callable[[], Any], timeout: float = 60) -> Any:
    """localcluster's wait_for, polling every 10 ms: the stage timings are read from it."""
    return wait_for(what, condition, timeout, interval=0.01)


# ----------------------------------------------------------------------------- conductor setup
@contextmanager
def _conductor(tmp: Path, kubeconfig: Path) -> Iterator[tuple[Any, Any]]:
    """A ConductorManager serving RPC on RabbitMQ, and an agent-side ConductorAPI."""
    from sysinv_ext.common import rpc
    from sysinv_ext.conductor.manager import ConductorManager
    from sysinv_ext.conductor.rpcapi import ConductorAPI
    from sysinv_ext.db import migration

    tmp.mkdir(parents=True, exist_ok=True)
    topic = "sysinv.conductor_manager.bench-" + uuid.uuid4().hex[:8]
    conf = conductor_conf(tmp, kubeconfig, topic, f"bench-{uuid.uuid4().hex[:6]}")
    manager = ConductorManager(conf)
    migration.upgrade(manager.engine)
    server = rpc.get_server(conf, messaging.Target(topic=topic, server=conf.conductor.host), [manager],
                            rpc.get_transport(conf))
    server.start()
    client_transport = rpc.get_transport(conf)
    agent = ConductorAPI(client_transport, topic=topic, timeout=60, retry=1)
    try:
        yield manager, agent
    finally:
        manager.close()
        rpc.stop_server(server)
        client_transport.cleanup()
        manager.engine.dispose()
        from tests.fakes import rabbit
        rabbit.delete(queues=[topic, f"{topic}.{conf.conductor.host}"], exchanges=[])


def _conductor_kubeconfig(cluster: LocalCluster, path: Path) -> Path:
    """The conductor's own RBAC identity (deployments/rbac), a ServiceAccount token."""
    cluster.kubectl("apply", "-f", str(REPO / "deployments" / "rbac" / "sysinv-gpu-conductor.yaml"))
    token = cluster.kubectl("create", "token", "sysinv-gpu-conductor", "-n", "kube-system",
                            "--duration=2h").stdout.strip()
    return cluster.token_kubeconfig(path, token, user="sysinv-gpu-conductor")


# ----------------------------------------------------------------------------- 1. the cycle
def _daemonset(image: str = "registry.local:9001/intel/intel-gpu-plugin:0.1.0") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": DS_NAME, "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": DS_LABELS}, "template": {
            "metadata": {"labels": DS_LABELS},
            "spec": {"nodeSelector": {"intelgpu": "enabled"}, "containers": [{
                "name": "intel-gpu-plugin", "image": image,
                "args": ["-shared-dev-num=1", "-allocation-policy=none"]}]}}},
    }


def _plugin_pod(cluster: LocalCluster) -> dict[str, Any] | None:
    selector = ",".join(f"{k}={v}" for k, v in DS_LABELS.items())
    pods = cluster.get_json(f"/api/v1/namespaces/kube-system/pods?labelSelector={selector}")["items"]
    for pod in pods:
        if pod["spec"].get("nodeName") == cluster.node_name and not pod["metadata"].get("deletionTimestamp"):
            return dict(pod)
    return None


def _no_plugin_pod(cluster: LocalCluster) -> bool:
    selector = ",".join(f"{k}={v}" for k, v in DS_LABELS.items())
    return not cluster.get_json(f"/api/v1/namespaces/kube-system/pods?labelSelector={selector}")["items"]


def _allocatable(cluster: LocalCluster) -> str:
    return str(cluster.node().get("status", {}).get("allocatable", {}).get("gpu.intel.com/i915", "0"))


def bench_cycle(cluster: LocalCluster, agent: Any, tmp: Path, cycles: int = 20) -> list[Result]:
    from tests.fakes.sysfs import FakeSysfs

    sysfs = FakeSysfs(tmp / "machine")
    sysfs.add_gpu(bdf="0000:00:02.0", card=0, render=128, driver="i915")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(_daemonset()))
    host = cluster.system_uuid
    stages: dict[str, list[float]] = {"label": [], "bound": [], "allocatable": [], "total": []}
    log = open(tmp / "plugin.log", "ab")
    try:
        for _ in range(cycles):
            t0 = time.perf_counter()
            agent.device_plugin_labels_update_by_ihost({}, host, ["intelgpu"])
            wait("label", lambda: cluster.node()["metadata"].get("labels", {}).get("intelgpu") == "enabled")
            t1 = time.perf_counter()
            pod = wait("plugin pod bound", lambda: _plugin_pod(cluster))
            t2 = time.perf_counter()
            args = list(pod["spec"]["containers"][0].get("args", [])) + [
                "-sysfs-root", sysfs.sysfs_root, "-devfs-root", sysfs.devfs_root,
                "-kubelet-dir", str(cluster.device_plugin_dir), "-cdi-dir", str(tmp / "cdi")]
            plugin = subprocess.Popen([str(BIN / "intel-gpu-plugin"), *args], stdout=log, stderr=log,
                                      start_new_session=True)
            try:
                wait("allocatable", lambda: _allocatable(cluster) == "1")
                t3 = time.perf_counter()
            finally:
                agent.device_plugin_labels_update_by_ihost({}, host, [])
                plugin.terminate()
                plugin.wait(10)
            stages["label"].append(t1 - t0)
            stages["bound"].append(t2 - t1)
            stages["allocatable"].append(t3 - t2)
            stages["total"].append(t3 - t0)
            wait("pod deleted", lambda: _no_plugin_pod(cluster))
            wait("allocatable 0", lambda: _allocatable(cluster) == "0")
    finally:
        log.close()
        cluster.kubectl("delete", "daemonset", "-n", "kube-system", DS_NAME, "--ignore-not-found",
                        check=False)
    names = {"label": "report -> label on the node", "bound": "label -> plugin pod Bound",
             "allocatable": "pod Bound -> plugin registered -> node allocatable",
             "total": "report -> node allocatable, end to end"}
    results = []
    for key, title in names.items():
        values = stages[key]
        target = 5.0 if key == "total" else None
        results.append(Result(SUITE, f"{title}, p50 of {cycles}", median(values), "s", target))
        results.append(Result(SUITE, f"{title}, p99 of {cycles}", percentile(values, 99), "s"))
    return results


# ----------------------------------------------------------------------------- 2. burst and audit
def _create_nodes(cluster: LocalCluster, prefix: str, count: int, base: int, labelled: bool) -> None:
    """Node objects through the API (POST with status: nodeInfo.systemUUID), 8 at a time."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    api = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig)))

    def create(i: int) -> None:
        labels = {"kubernetes.io/hostname": f"{prefix}-{i:05d}"}
        if labelled:
            labels["intelgpu"] = "enabled"
        api.create_node({"metadata": {"name": f"{prefix}-{i:05d}", "labels": labels},
                         "status": {"nodeInfo": {"systemUUID": host_uuid(base + i).upper(), "machineID": "",
                                                 "bootID": "", "kernelVersion": "", "osImage": "",
                                                 "containerRuntimeVersion": "", "kubeletVersion": "",
                                                 "kubeProxyVersion": "", "operatingSystem": "linux",
                                                 "architecture": "amd64"}}})
    _parallel(create, range(count), 8)


def _parallel(work: Callable[[int], None], items: Any, threads: int) -> None:
    queue = list(items)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run() -> None:
        while True:
            with lock:
                if not queue:
                    return
                item = queue.pop()
            try:
                work(item)
            except BaseException as err:  # noqa: BLE001 - re-raised below
                errors.append(err)
    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]


def _burst(agent: Any, labelled: Callable[[int], bool], base: int, agents: int) -> tuple[float, int, int]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(agents + 1)

    def report(i: int) -> None:
        try:
            barrier.wait()
            agent.device_plugin_labels_update_by_ihost({}, host_uuid(base + i), ["intelgpu"])
        except BaseException as err:  # noqa: BLE001 - counted
            errors.append(err)
    threads = [threading.Thread(target=report, args=(i,)) for i in range(agents)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return elapsed, sum(1 for i in range(agents) if labelled(i)), len(errors)


def bench_conductor_real(cluster: LocalCluster, tmp: Path, agents: int = 200,
                         audit_nodes: int = 1000) -> list[Result]:
    kubeconfig = _conductor_kubeconfig(cluster, tmp / "conductor.kubeconfig")
    base = 700_000
    _create_nodes(cluster, "burst", agents, base, labelled=False)
    _create_nodes(cluster, "audit", audit_nodes, base + agents, labelled=True)
    results: list[Result] = []
    with _conductor(tmp / "real", kubeconfig) as (manager, agent):
        manager.start()
        wait("the conductor's cache to hold every node",
              lambda: all(manager.cache.get(host_uuid(base + i)) is not None
                          for i in range(agents + audit_nodes)), timeout=120)

        def labelled(i: int) -> bool:
            node = cluster.get_json(f"/api/v1/nodes/burst-{i:05d}")
            return bool(node["metadata"].get("labels", {}).get("intelgpu") == "enabled")
        elapsed, ok, failed = _burst(agent, labelled, base, agents)
        results += [
            Result(SUITE, f"real API: {agents} agents at once: all labelled", elapsed, "s"),
            Result(SUITE, f"real API: {agents} agents at once: nodes labelled", ok, "nodes", agents,
                   lower_is_better=False),
            Result(SUITE, f"real API: {agents} agents at once: failed calls", failed, "calls", 0),
        ]
        results += _audit_real(cluster, manager, base + agents, audit_nodes)
    return results


def _audit_real(cluster: LocalCluster, manager: Any, base: int, nodes: int) -> list[Result]:
    from sqlalchemy import insert

    from sysinv_ext.db.models import Host, Label, utcnow

    with manager.engine.begin() as conn:
        conn.execute(insert(Host), [{"host_uuid": host_uuid(base + i), "reported_at": utcnow(),
                                     "seen_at": utcnow()} for i in range(nodes)])
        conn.execute(insert(Label), [{"host_uuid": host_uuid(base + i), "label_key": "intelgpu",
                                      "label_value": "enabled", "created_at": utcnow()}
                                     for i in range(nodes)])
    manager.audit()
    manager.cache.stop()  # the audit alone restores them (the watch would at once)
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    api = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    _parallel(lambda i: api.patch_node(f"audit-{i:05d}", {"metadata": {"labels": {"intelgpu": None}}}),
              range(nodes), 8)
    t0 = time.perf_counter()
    result = manager.audit()
    elapsed = time.perf_counter() - t0
    t0 = time.perf_counter()
    manager.audit()
    quiet = time.perf_counter() - t0
    return [Result(SUITE, f"real API: audit restoring {nodes} labels", elapsed, "s"),
            Result(SUITE, "real API: ... labels restored by it", result.patched, "nodes", nodes,
                   lower_is_better=False),
            Result(SUITE, f"real API: quiet audit over {nodes} + nodes", quiet, "s")]


def bench_conductor_double(tmp: Path, agents: int = 200, audit_nodes: int = 1000) -> list[Result]:
    """The same burst and audit on the emulated API server, in the same run."""
    from tests.fakes.kube_api import FakeKubeAPI

    api = FakeKubeAPI().start()
    try:
        base = 800_000
        for i in range(agents):
            api.add_node(f"burst-{i:05d}", host_uuid(base + i))
        for i in range(audit_nodes):
            api.add_node(f"audit-{i:05d}", host_uuid(base + agents + i),
                         {"kubernetes.io/hostname": f"audit-{i:05d}", "intelgpu": "enabled"})
        kubeconfig = api.write_kubeconfig(tmp / "double.kubeconfig")
        results: list[Result] = []
        with _conductor(tmp / "double", kubeconfig) as (manager, agent):
            manager.start()
            wait("the conductor's cache to hold every node",
                  lambda: all(manager.cache.get(host_uuid(base + i)) is not None
                              for i in range(agents + audit_nodes)), timeout=120)
            elapsed, ok, failed = _burst(
                agent, lambda i: api.node_labels(f"burst-{i:05d}").get("intelgpu") == "enabled", base, agents)
            results += [
                Result(SUITE, f"double: {agents} agents at once: all labelled", elapsed, "s", 2.0),
                Result(SUITE, f"double: {agents} agents at once: nodes labelled", ok, "nodes", agents,
                       lower_is_better=False),
            ]
            from sqlalchemy import insert

            from sysinv_ext.db.models import Host, Label, utcnow
            with manager.engine.begin() as conn:
                audited = [host_uuid(base + agents + i) for i in range(audit_nodes)]
                conn.execute(insert(Host), [{"host_uuid": uuid_, "reported_at": utcnow(),
                                             "seen_at": utcnow()} for uuid_ in audited])
                conn.execute(insert(Label), [{"host_uuid": uuid_, "label_key": "intelgpu",
                                              "label_value": "enabled", "created_at": utcnow()}
                                             for uuid_ in audited])
            manager.audit()
            manager.cache.stop()
            for i in range(audit_nodes):
                node = api.get_node(f"audit-{i:05d}")
                node["metadata"]["labels"].pop("intelgpu", None)
                api.put_object(node)
            t0 = time.perf_counter()
            result = manager.audit()
            elapsed = time.perf_counter() - t0
            results += [Result(SUITE, f"double: audit restoring {audit_nodes} labels", elapsed, "s", 2.0),
                        Result(SUITE, "double: ... labels restored by it", result.patched, "nodes",
                               audit_nodes, lower_is_better=False)]
        return results
    finally:
        api.stop()


def _ratios(results: list[Result]) -> list[Result]:
    """real API / double for the figures measured on both (the double's targets are the goals)."""
    by_name = {r.name: r.value for r in results}
    rows = []
    for figure in ("200 agents at once: all labelled", "audit restoring 1000 labels"):
        real, double = by_name.get(f"real API: {figure}"), by_name.get(f"double: {figure}")
        if real is not None and double:
            rows.append(Result(SUITE, f"{figure}: real API / double", real / double, "x"))
    return rows


def run() -> list[Result]:
    results: list[Result] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        with LocalCluster() as cluster:
            kubeconfig = _conductor_kubeconfig(cluster, tmp / "cycle.kubeconfig")
            with _conductor(tmp / "cycle", kubeconfig) as (manager, agent):
                manager.start()
                results += bench_cycle(cluster, agent, tmp)
            results += bench_conductor_real(cluster, tmp)
        results += bench_conductor_double(tmp)
        results += _ratios(results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results
