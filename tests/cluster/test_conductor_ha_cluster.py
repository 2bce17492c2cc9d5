"""Two sysinv-gpu-conductor processes fail over through a REAL coordination.k8s.io/v1 Lease.

REAL: kube-apiserver v1.34.1 (the Lease, its optimistic concurrency, RBAC: both conductors run
as the sysinv-gpu-conductor ServiceAccount of deployments/rbac), PostgreSQL shared by the two,
RabbitMQ. The nodes are Node objects created through the API (no kubelet behind them).
kill -9 of the active: the standby takes the Lease after it expires, serves RPC, and the labels
stay set the whole time (sampled every 50 ms: no flapping).
"""
from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import LocalCluster
from sysinv_ext.conductor.rpcapi import ConductorAPI
from tests.fakes.postgres import throwaway_database
from tests.sysinv.conftest import HOST_A, HOST_B, wait_for
from tests.sysinv.test_conductor_service import _wait_ready, conductor_pair

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]
LEASE = ("kube-system", "sysinv-gpu-conductor")
RBAC = Path(__file__).resolve().parents[2] / "deployments" / "rbac" / "sysinv-gpu-conductor.yaml"
NODES = {"ha-worker-0": HOST_A, "ha-worker-1": HOST_B}


def _node(name: str, system_uuid: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"nodeInfo": {"systemUUID": system_uuid.upper(), "machineID": "", "bootID": "",
                                    "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "",
                                    "kubeletVersion": "", "kubeProxyVersion": "",
                                    "operatingSystem": "linux", "architecture": "amd64"}}}


def holder(cluster: LocalCluster) -> str | None:
    result = cluster.kubectl("get", "lease", "-n", LEASE[0], LEASE[1], "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return (json.loads(result.stdout).get("spec") or {}).get("holderIdentity")


def labels(cluster: LocalCluster, node: str) -> dict[str, str]:
    got = cluster.node(node)["metadata"].get("labels") or {}
    return {k: v for k, v in got.items() if k == "intelgpu"}


@pytest.fixture
def pair(cluster: LocalCluster, tmp_path: Path) -> Iterator[dict[str, Any]]:
    cluster.kubectl("apply", "-f", str(RBAC))
    token = cluster.kubectl("create", "token", "sysinv-gpu-conductor", "-n", "kube-system",
                            "--duration=1h").stdout.strip()
    kubeconfig = cluster.token_kubeconfig(tmp_path / "conductor.kubeconfig", token)
    for name, system_uuid in NODES.items():
        cluster.kubectl("create", "-f", "-", input=json.dumps(_node(name, system_uuid)))
    try:
        with throwaway_database("sysinv_ext_ha_cluster") as database, \
                conductor_pair(tmp_path, database, kubeconfig) as pair:
            yield pair
    finally:
        for name in NODES:
            cluster.kubectl("delete", "node", name, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "lease", "-n", LEASE[0], LEASE[1], "--ignore-not-found", check=False)


def test_kill_9_of_the_active_the_standby_takes_the_real_lease(pair: dict[str, Any],
                                                               cluster: LocalCluster) -> None:
    first, second = pair["conductors"]["controller-0"], pair["conductors"]["controller-1"]
    api: ConductorAPI = pair["api"]
    first.start()
    assert wait_for(lambda: holder(cluster) == "controller-0", timeout=60), first.log.read_text()[-2000:]
    second.start()
    assert _wait_ready(api)["node"] == "ha-worker-0"
    api.device_plugin_labels_update_by_ihost({}, HOST_B, {"intelgpu": "enabled"})
    assert labels(cluster, "ha-worker-0") == labels(cluster, "ha-worker-1") == {"intelgpu": "enabled"}
    assert wait_for(lambda: second.log.exists() and "competes for Lease" in second.log.read_text(),
                    timeout=60)
    assert "serving topic" not in second.log.read_text(), "the standby must not consume RPC"

    missing: list[str] = []
    sampling = threading.Event()

    def sample() -> None:  # the labels during the takeover, as any API client sees them
        while not sampling.is_set():
            for node in NODES:
                if labels(cluster, node) != {"intelgpu": "enabled"}:
                    missing.append(node)
            time.sleep(0.05)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    killed = time.monotonic()
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    try:
        assert wait_for(lambda: holder(cluster) == "controller-1", timeout=30)
        took_over = time.monotonic() - killed
        assert wait_for(lambda: "serving topic" in second.log.read_text(), timeout=30)
    finally:
        sampling.set()
        sampler.join(5)
    assert took_over < 4 + 2 + 2, f"takeover after {took_over:.1f} s"  # duration + retry + slack
    assert missing == [], "a label was missing during the takeover"
    # the new active serves RPC through the real API with the same identity
    assert api.device_plugin_labels_update_by_ihost({}, HOST_A, {})["removed"] == ["intelgpu"]
    assert labels(cluster, "ha-worker-0") == {}
    # a clean stop releases the Lease: a restarted first conductor takes it without waiting an expiry
    first.start()
    assert wait_for(lambda: "competes for Lease" in first.log.read_text(), timeout=60)
    assert second.stop() == 0
    assert "released Lease" in second.log.read_text()
    assert wait_for(lambda: holder(cluster) == "controller-0", timeout=30)
    assert "took Lease" not in first.log.read_text()
