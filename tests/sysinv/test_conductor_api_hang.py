"""Issue 21 item 15: a report never waits on the Kubernetes API longer than a bound.

With every API request hanging, 5 of 20 reports timed out at the caller's 30 s (each waited for
its PATCH and its retries, 3 x 5 s, and behind the per-host lock for earlier PATCHes), and a
report sent 1 s after the API came back timed out at 10 s. Now a report records what its host
wants, answers within ``report_timeout``, and the labels land once the API answers, in the
order the reports came (the emulated API server hangs every PATCH: it answers nothing and
closes the connection after longer than the client's read timeout)."""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sysinv_ext.conductor.manager import ConductorManager
from tests.fakes.kube_api import FakeKubeAPI
from tests.sysinv.conftest import GPU_PLUGINS_2019, sync_cache, wait_for

BOUND = 2.0   # the manager's report_timeout in this test
SLACK = 3.0   # thread start, database write, a loaded machine
HANG = 7.0    # s the emulated server holds every PATCH (> the client's 5 s read timeout)


def _uuid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def _timed(manager: ConductorManager, host: str, plugins: list[str]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    result = manager.report(host, device_plugins=plugins)
    return result, time.monotonic() - started


def _reports(manager: ConductorManager, hosts: list[str], plugins: list[str]
             ) -> list[tuple[dict[str, Any], float]]:
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        return list(pool.map(lambda h: _timed(manager, h, plugins), hosts))


@pytest.fixture
def gpu(write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(GPU_PLUGINS_2019)


def test_reports_answer_within_the_bound_while_the_api_hangs_and_land_in_order_after(
        manager: ConductorManager, fake_kube: FakeKubeAPI, gpu: None) -> None:
    manager.report_timeout = BOUND
    hosts = [_uuid(i) for i in range(20)]
    for i, host in enumerate(hosts):
        fake_kube.add_node(f"worker-{i}", host)
    sync_cache(manager, fake_kube)
    fake_kube.inject_drop("PATCH", "/api/v1/nodes/", times=100_000, after=HANG)  # the API hangs

    answered = _reports(manager, hosts, ["intelgpu"])  # 20 hosts at once: set
    assert [r["node"] for r, _ in answered] == [f"worker-{i}" for i in range(20)]
    assert all(r["labels"] == {"intelgpu": "enabled"} for r, _ in answered)
    slowest = max(t for _, t in answered)
    assert slowest < BOUND + SLACK, f"a report waited {slowest:.1f} s on a hanging API"
    removed = _reports(manager, hosts[:10], [])         # then hosts 0-9: GPU gone
    assert max(t for _, t in removed) < BOUND + SLACK
    again = _reports(manager, hosts[:5], ["intelgpu"])  # then hosts 0-4: back again
    assert max(t for _, t in again) < BOUND + SLACK
    assert all(fake_kube.node_labels(f"worker-{i}") == {} for i in range(20)), "nothing landed yet"

    fake_kube.clear_injections()  # the API answers again

    def final() -> bool:
        return all(fake_kube.node_labels(f"worker-{i}") == (
            {} if 5 <= i < 10 else {"intelgpu": "enabled"}) for i in range(20))
    assert wait_for(final, 60), {f"worker-{i}": fake_kube.node_labels(f"worker-{i}") for i in range(20)}
    assert manager.state.get(hosts[7]).labels == {"intelgpu": None}  # type: ignore[union-attr]


def test_report_right_after_the_api_came_back_is_applied_at_once(
        manager: ConductorManager, fake_kube: FakeKubeAPI, gpu: None) -> None:
    manager.report_timeout = BOUND
    hosts = [_uuid(i) for i in range(21)]
    for i, host in enumerate(hosts):
        fake_kube.add_node(f"worker-{i}", host)
    sync_cache(manager, fake_kube)
    fake_kube.inject_drop("PATCH", "/api/v1/nodes/", times=100_000, after=HANG)
    _reports(manager, hosts[:20], ["intelgpu"])  # their PATCHes hang
    fake_kube.clear_injections()
    result, took = _timed(manager, hosts[20], ["intelgpu"])
    assert took < BOUND + SLACK
    assert result == {"node": "worker-20", "labels": {"intelgpu": "enabled"}, "removed": []}
    assert fake_kube.node_labels("worker-20") == {"intelgpu": "enabled"}, "applied before the answer"
