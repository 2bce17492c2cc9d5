"""The conductor's metrics move with reports and audits, scraped over real HTTP.

A real ConductorManager (SQLite, the fake API server over HTTP) with its metrics on a registry
served by the same endpoint code the service uses; reports go through ``report()`` (the RPC
endpoint's work) and audits through the AuditLoop thread, as in the service.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg
from prometheus_client import CollectorRegistry

from sysinv_ext.common import exception
from sysinv_ext.common.metrics import MetricsEndpoint, serve
from sysinv_ext.conductor.audit import AuditLoop, AuditResult
from sysinv_ext.conductor.manager import ConductorManager
from sysinv_ext.conductor.metrics import conductor_metrics
from sysinv_ext.db import migration
from tests.fakes.kube_api import FakeKubeAPI
from tests.scrape import scrape, wait_value
from tests.sysinv.conftest import HOST_A, HOST_B


@pytest.fixture
def observed(conductor_conf: cfg.ConfigOpts, write_plugins: Callable[[Any], Path],
             fake_kube: FakeKubeAPI) -> Iterator[tuple[ConductorManager, str]]:
    write_plugins({"intel-gpu-plugin": "intelgpu=enabled"})
    registry = CollectorRegistry()
    metrics = conductor_metrics(registry)
    manager = ConductorManager(conductor_conf, metrics=metrics)  # observes its cache, state, lease
    migration.upgrade(manager.engine)
    endpoint: MetricsEndpoint = serve("127.0.0.1:0", registry, "test-conductor")
    try:
        yield manager, endpoint.url
    finally:
        endpoint.close()
        manager.close()
        manager.engine.dispose()


def test_reports_by_outcome_and_report_to_label_latency(observed: tuple[ConductorManager, str],
                                                         fake_kube: FakeKubeAPI) -> None:
    manager, url = observed
    fake_kube.add_node("worker-0", HOST_A)
    assert scrape(url).value("sysinv_gpu_conductor_reports_total") == 0
    manager.report(HOST_A, device_plugins=["intelgpu"])
    manager.report(HOST_A, device_plugins=["intelgpu"])  # nothing to patch: still applied
    with pytest.raises(exception.InvalidPayload):
        manager.report(HOST_A, device_plugins="intelgpu")
    fake_kube.inject("PATCH", r"/api/v1/nodes/worker-0", status=500, times=10)
    with pytest.raises(exception.KubeAPIError):
        manager.report(HOST_A, device_plugins=[])
    fake_kube.clear_injections()
    samples = scrape(url)
    assert samples.value("sysinv_gpu_conductor_reports_total", outcome="applied") == 2
    assert samples.value("sysinv_gpu_conductor_reports_total", outcome="rejected") == 1
    assert samples.value("sysinv_gpu_conductor_reports_total", outcome="failed") == 1
    assert samples.value("sysinv_gpu_conductor_report_to_label_seconds_count") == 2
    assert samples.value("sysinv_gpu_conductor_report_to_label_seconds_bucket", le="+Inf") == 2
    assert samples.value("sysinv_gpu_conductor_node_cache_nodes") == 1
    assert samples.value("sysinv_gpu_conductor_leader") == 1


def test_pending_host_counts_and_its_labels_landing_later(observed: tuple[ConductorManager, str],
                                                          fake_kube: FakeKubeAPI) -> None:
    manager, url = observed
    assert manager.report(HOST_B, device_plugins=["intelgpu"])["node"] is None  # no node yet
    pending = scrape(url)
    assert pending.value("sysinv_gpu_conductor_reports_total", outcome="pending") == 1
    assert pending.value("sysinv_gpu_conductor_pending_hosts") == 1
    assert pending.value("sysinv_gpu_conductor_report_to_label_seconds_count") == 0
    fake_kube.add_node("late-1", HOST_B)  # kubelet joins: the watch event applies the label
    landed = wait_value(url, "sysinv_gpu_conductor_report_to_label_seconds_count", lambda v: v == 1)
    assert landed.value("sysinv_gpu_conductor_pending_hosts") == 0
    assert landed.value("sysinv_gpu_conductor_node_cache_nodes") == 1
    assert fake_kube.node_labels("late-1") == {"intelgpu": "enabled"}


def test_audits_and_watch_restarts(observed: tuple[ConductorManager, str], fake_kube: FakeKubeAPI) -> None:
    manager, url = observed
    fake_kube.add_node("worker-0", HOST_A)
    manager.report(HOST_A, device_plugins=["intelgpu"])
    loop = AuditLoop(manager.audit, 0.05, metrics=manager.metrics)
    loop.start()
    try:
        ok = wait_value(url, "sysinv_gpu_conductor_audits_total", lambda v: v >= 1, outcome="ok")
        assert ok.value("sysinv_gpu_conductor_audit_patches_total", outcome="failed") == 0
        assert ok.value("sysinv_gpu_conductor_node_watch_restarts_total") == 0
        fake_kube.drop_watches()  # the API server ends the node watch: the cache starts another
        wait_value(url, "sysinv_gpu_conductor_node_watch_restarts_total", lambda v: v >= 1)
        fake_kube.inject("GET", r"/api/v1/nodes$", status=500, times=1000)  # the audit's LIST fails
        wait_value(url, "sysinv_gpu_conductor_audits_total", lambda v: v >= 1, outcome="failed")
    finally:
        loop.stop()
        fake_kube.clear_injections()


def test_audit_loop_counts_the_patches_of_each_pass() -> None:
    """The audit's own result is what is counted (a watch usually leaves it nothing to patch)."""
    registry = CollectorRegistry()
    results = [AuditResult(nodes=3, patched=2, failed=1, forgotten=0, hosts_without_node=0)]

    def audit() -> AuditResult:
        if results:
            return results.pop()
        raise exception.KubeAPIError(action="list nodes", reason="HTTP 503")

    loop = AuditLoop(audit, 0.01, metrics=conductor_metrics(registry))
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while (registry.get_sample_value("sysinv_gpu_conductor_audits_total", {"outcome": "failed"})
               or 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        loop.stop()
    value = registry.get_sample_value
    assert value("sysinv_gpu_conductor_audits_total", {"outcome": "ok"}) == 1
    assert value("sysinv_gpu_conductor_audits_total", {"outcome": "failed"}) >= 1
    assert value("sysinv_gpu_conductor_audit_patches_total", {"outcome": "ok"}) == 2
    assert value("sysinv_gpu_conductor_audit_patches_total", {"outcome": "failed"}) == 1


def test_leader_follows_the_active_state(observed: tuple[ConductorManager, str]) -> None:
    """With leader election the service deactivates the manager until the Lease is its own."""
    manager, url = observed
    assert scrape(url).value("sysinv_gpu_conductor_leader") == 1  # alone: active from the start
    manager.deactivate()
    assert scrape(url).value("sysinv_gpu_conductor_leader") == 0
    manager.activate()
    assert scrape(url).value("sysinv_gpu_conductor_leader") == 1
