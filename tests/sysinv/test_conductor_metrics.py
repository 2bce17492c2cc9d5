"""The conductor's metrics move with reports and audits, scraped over real HTTP.

A real ConductorManager (SQLite, the fake API server over HTTP) with its metrics on a registry
served by the same endpoint code the service uses; reports go through ``report()`` (the RPC
endpoint's work) and audits through the AuditLoop thread, as in the service.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg
from prometheus_client import CollectorRegistry

from sysinv_ext.common import exception
from sysinv_ext.common.metrics import MetricsEndpoint, serve
from sysinv_ext.conductor.audit import AuditLoop
from sysinv_ext.conductor.manager import ConductorManager
from sysinv_ext.conductor.metrics import ConductorGauges, conductor_metrics
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
    manager = ConductorManager(conductor_conf, metrics=metrics)
    migration.upgrade(manager.engine)
    metrics.observe(ConductorGauges(node_cache=manager.cached_nodes, watch_restarts=lambda: 0,
                                    pending_hosts=manager.pending_hosts, leader=lambda: True))
    endpoint: MetricsEndpoint = serve("127.0.0.1:0", registry, "test-conductor")
    try:
        yield manager, endpoint.url
    finally:
        endpoint.close()
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


def test_unknown_host_counts_as_pending(observed: tuple[ConductorManager, str]) -> None:
    manager, url = observed
    try:
        manager.report(HOST_B, device_plugins=["intelgpu"])
    except exception.HostNotFound:
        pass  # the conductor's answer for a host without a node (no error once hosts are pending)
    assert scrape(url).value("sysinv_gpu_conductor_reports_total", outcome="pending") == 1


def test_audit_passes_and_patches(observed: tuple[ConductorManager, str], fake_kube: FakeKubeAPI) -> None:
    manager, url = observed
    fake_kube.add_node("worker-0", HOST_A)
    manager.report(HOST_A, device_plugins=["intelgpu"])
    node = fake_kube.get_node("worker-0")
    assert node is not None
    fake_kube.put_object({**node, "metadata": {"name": "worker-0", "labels": {}}})  # removed by hand
    loop = AuditLoop(manager.audit, 0.05, metrics=manager.metrics)
    loop.start()
    try:
        first = wait_value(url, "sysinv_gpu_conductor_audit_patches_total", lambda v: v >= 1, outcome="ok")
        assert first.value("sysinv_gpu_conductor_audits_total", outcome="ok") >= 1
        assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}
        fake_kube.inject("GET", r"/api/v1/nodes$", status=500, times=1000)  # the audit's LIST fails
        failed = wait_value(url, "sysinv_gpu_conductor_audits_total", lambda v: v >= 1, outcome="failed")
        assert failed.value("sysinv_gpu_conductor_audit_patches_total", outcome="failed") == 0
    finally:
        loop.stop()
        fake_kube.clear_injections()
