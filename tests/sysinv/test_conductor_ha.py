"""High availability: two ``sysinv-gpu-conductor`` processes on one PostgreSQL database and one
RabbitMQ topic, one active through a coordination.k8s.io/v1 Lease on the emulated API server.

kill -9 of the active -> the standby takes the Lease, serves RPC and audits; labels stay as
they were during the takeover (no PATCH at all: no flapping); a clean stop releases the Lease
so the standby takes over at its next try. Short lease timings keep the test quick (the
default 15 s is measured in ``python -m benchmarks sysinv``). Skipped with a reason when
RabbitMQ or PostgreSQL is unreachable.
"""
from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sysinv_ext.conductor.rpcapi import ConductorAPI
from tests.fakes.kube_api import FakeKubeAPI
from tests.sysinv.conftest import HOST_A, HOST_B, wait_for
from tests.sysinv.test_conductor_service import _wait_ready, conductor_pair

LEASE = ("kube-system", "sysinv-gpu-conductor")
pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


def holder(api: FakeKubeAPI) -> str | None:
    lease = api.get_object("coordination.k8s.io/v1", "leases", LEASE[1], LEASE[0])
    return None if lease is None else (lease.get("spec") or {}).get("holderIdentity")


@pytest.fixture
def pair(tmp_path: Path, fake_kube: FakeKubeAPI, kubeconfig: Path,
         postgres_url: str) -> Iterator[dict[str, Any]]:
    from tests.sysinv.conftest import tcp_reachable

    if not tcp_reachable("127.0.0.1", 5672):
        pytest.skip("RabbitMQ is not reachable at 127.0.0.1:5672")
    with conductor_pair(tmp_path, postgres_url, kubeconfig) as pair:
        yield pair


def test_kill_9_of_the_active_standby_takes_over(pair: dict[str, Any], fake_kube: FakeKubeAPI) -> None:
    fake_kube.add_node("worker-0", HOST_A)
    fake_kube.add_node("worker-1", HOST_B)
    first, second = pair["conductors"]["controller-0"], pair["conductors"]["controller-1"]
    api: ConductorAPI = pair["api"]
    first.start()
    assert wait_for(lambda: holder(fake_kube) == "controller-0", timeout=60)
    second.start()
    assert _wait_ready(api)["node"] == "worker-0"
    api.device_plugin_labels_update_by_ihost({}, HOST_B, {"intelgpu": "enabled"})
    assert wait_for(lambda: second.log.exists() and "competes for Lease" in second.log.read_text(),
                    timeout=60)
    assert "serving topic" not in second.log.read_text(), "the standby must not consume RPC"

    fake_kube.clear_records()
    killed = time.monotonic()
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    assert wait_for(lambda: holder(fake_kube) == "controller-1", timeout=30)
    took_over = time.monotonic() - killed
    assert took_over < 4 + 2 + 2, f"takeover after {took_over:.1f} s"  # duration + retry + slack
    assert wait_for(lambda: "serving topic" in second.log.read_text(), timeout=30)
    assert fake_kube.patches == [], "labels in order: the new active patched nothing (no flapping)"
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}
    assert fake_kube.node_labels("worker-1") == {"intelgpu": "enabled"}

    # the standby now serves RPC and audits, from the state the first one recorded
    result = _wait_ready(api, deadline=30)
    assert result == {"node": "worker-0", "labels": {"intelgpu": "enabled"}, "removed": []}
    fake_kube.put_object({**fake_kube.get_node("worker-1"), "metadata": {"name": "worker-1", "labels": {}}})
    assert wait_for(lambda: fake_kube.node_labels("worker-1") == {"intelgpu": "enabled"}, timeout=15)
    assert api.device_plugin_labels_update_by_ihost({}, HOST_A, {})["removed"] == ["intelgpu"]
    assert fake_kube.node_labels("worker-0") == {}

    # a clean stop releases the Lease: the restarted first conductor takes a free Lease
    # (no "took ... over" after an expiry)
    first.start()
    assert wait_for(lambda: "competes for Lease" in first.log.read_text(), timeout=60)
    assert second.stop() == 0
    assert "released Lease" in second.log.read_text()
    assert wait_for(lambda: holder(fake_kube) == "controller-0", timeout=30)
    assert "took Lease" not in first.log.read_text()
    assert _wait_ready(api, deadline=30)["node"] == "worker-0"
    for conductor in (first, second):
        assert "Traceback" not in conductor.log.read_text()
