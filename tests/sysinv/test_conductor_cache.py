"""The conductor's LIST + WATCH node cache and what it enables, against the emulated API server
(tests/fakes/kube_api.py: real HTTP, streamed watch with resourceVersion, 410 Gone, faults)
through the official client.

Covers: watch events, 410 -> re-LIST, dropped watch -> resumed without a LIST, a watch 500 ->
bounded back-off, label removed by hand -> restored from the event (no audit), pending hosts
(report first, node later -> label; TTL expiry; cap; one audit line per pass), removals
recorded so a crash between database and PATCH converges, many hosts at once and two reports
of one host in order, and unknown-host floods / a hanging API that no longer starve anyone.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg
from sqlalchemy import update

from sysinv_ext.conductor.manager import ConductorManager
from sysinv_ext.db import api as db_api
from sysinv_ext.db.models import Host
from tests.fakes.kube_api import FakeKubeAPI
from tests.sysinv.conftest import GPU_PLUGINS_2019, HOST_A, HOST_B, make_manager, sync_cache, wait_for


def _uuid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


@pytest.fixture
def gpu(write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(GPU_PLUGINS_2019)


# -- the cache ------------------------------------------------------------------------------


def test_watch_events_keep_the_cache_current(manager: ConductorManager, fake_kube: FakeKubeAPI) -> None:
    fake_kube.add_node("worker-0", HOST_A)
    sync_cache(manager, fake_kube)
    fake_kube.add_node("worker-1", HOST_B, {"x": "1"})
    assert wait_for(lambda: manager.cache.get(HOST_B.lower()) is not None)
    fake_kube.add_node("worker-1", HOST_B, {"x": "2"})
    assert wait_for(lambda: dict(manager.cache.get(HOST_B.lower()).labels) == {"x": "2"})  # type: ignore[union-attr]
    assert fake_kube.delete_node("worker-1")
    assert wait_for(lambda: manager.cache.get(HOST_B.lower()) is None)
    assert manager.cache.lists == 1 and len(fake_kube.list_requests()) == 1, "one LIST, then events"
    watch = fake_kube.watch_requests()[0]
    assert watch.query["resourceVersion"] != ["0"], "the watch starts where the LIST was"


def test_410_gone_lists_again(manager: ConductorManager, fake_kube: FakeKubeAPI) -> None:
    fake_kube.add_node("worker-0", HOST_A)
    sync_cache(manager, fake_kube)
    fake_kube.compact()  # history gone: resuming from any older version is 410
    fake_kube.drop_watches()
    fake_kube.add_node("worker-1", HOST_B)
    sync_cache(manager, fake_kube)
    assert manager.cache.get(HOST_B.lower()) is not None
    assert manager.cache.lists >= 1 and len(fake_kube.list_requests()) == manager.cache.lists


def test_410_on_resume_after_missed_changes(manager: ConductorManager, fake_kube: FakeKubeAPI) -> None:
    fake_kube.add_node("worker-0", HOST_A)
    sync_cache(manager, fake_kube)
    fake_kube.inject("WATCH", "/api/v1/nodes$", status=500, times=2)  # the next resumes fail
    fake_kube.drop_watches()
    fake_kube.add_node("worker-0", HOST_A, {"changed": "while-away"})
    fake_kube.compact()
    assert wait_for(lambda: manager.cache.lists == 2, timeout=15), "410 -> a second LIST"
    sync_cache(manager, fake_kube)
    assert dict(manager.cache.get(HOST_A.lower()).labels) == {"changed": "while-away"}  # type: ignore[union-attr]


def test_dropped_watch_resumes_without_a_list(manager: ConductorManager, fake_kube: FakeKubeAPI) -> None:
    fake_kube.add_node("worker-0", HOST_A)
    sync_cache(manager, fake_kube)
    for i in range(3):
        fake_kube.drop_watches()
        fake_kube.add_node("worker-0", HOST_A, {"round": str(i)})
        sync_cache(manager, fake_kube)
    assert manager.cache.lists == 1
    assert manager.cache.watches >= 2
    fake_kube.inject_drop("WATCH", "/api/v1/nodes$", times=2)  # connection closed, no answer
    fake_kube.drop_watches()
    fake_kube.add_node("worker-0", HOST_A, {"round": "after-drops"})
    sync_cache(manager, fake_kube, timeout=15)
    assert manager.cache.lists == 1, "a resumable watch is resumed, not re-listed"


def test_label_removed_by_hand_is_restored_from_the_event(
        manager: ConductorManager, fake_kube: FakeKubeAPI, gpu: None) -> None:
    fake_kube.add_node("worker-0", HOST_A, {"keep": "me"})
    manager.report(HOST_A, device_plugins=["intelgpu"])
    fake_kube.clear_records()
    fake_kube.put_object({**fake_kube.get_node("worker-0"),  # type: ignore[dict-item]
                          "metadata": {"name": "worker-0", "labels": {"keep": "me"}}})
    assert wait_for(lambda: fake_kube.node_labels("worker-0") == {"keep": "me", "intelgpu": "enabled"})
    assert fake_kube.list_requests() == [], "restored from the watch event, not by an audit LIST"
    assert [p.body for p in fake_kube.patches] == [{"metadata": {"labels": {"intelgpu": "enabled"}}}]


# -- pending hosts (SPEC section 2) -----------------------------------------------------------


def test_report_first_node_later_label_appears(manager: ConductorManager, fake_kube: FakeKubeAPI,
                                               gpu: None) -> None:
    fake_kube.add_node("worker-0", HOST_A)
    result = manager.report(HOST_B, device_plugins=["intelgpu"])  # no node yet: no error
    assert result == {"node": None, "labels": {"intelgpu": "enabled"}, "removed": []}
    assert not db_api.host_state_get_all(manager.engine)[HOST_B.lower()].seen
    fake_kube.clear_records()
    fake_kube.add_node("worker-1", HOST_B)  # kubelet joins
    assert wait_for(lambda: fake_kube.node_labels("worker-1") == {"intelgpu": "enabled"})
    assert fake_kube.list_requests() == [], "applied from the ADDED event at once"
    assert wait_for(lambda: db_api.host_state_get_all(manager.engine)[HOST_B.lower()].seen)


def test_pending_host_applied_by_the_audit_when_no_event_came(
        manager: ConductorManager, fake_kube: FakeKubeAPI, gpu: None) -> None:
    manager.report(HOST_B, device_plugins=["intelgpu"])
    manager.cache.stop()  # the ADDED event is missed
    fake_kube.add_node("worker-1", HOST_B)
    assert manager.audit().patched == 1
    assert fake_kube.node_labels("worker-1") == {"intelgpu": "enabled"}
    assert db_api.host_state_get_all(manager.engine)[HOST_B.lower()].seen


def test_pending_hosts_expire_and_are_capped_audit_logs_one_line(
        conductor_conf: cfg.ConfigOpts, fake_kube: FakeKubeAPI, gpu: None,
        caplog: pytest.LogCaptureFixture) -> None:
    conductor_conf.set_override("pending_host_limit", 50, "conductor")
    conductor_conf.set_override("pending_host_ttl", 3600, "conductor")
    manager = make_manager(conductor_conf)
    try:
        fake_kube.add_node("worker-0", HOST_A)
        for i in range(80):
            assert manager.report(_uuid(i), device_plugins=["intelgpu"])["node"] is None
        assert manager.report(HOST_A, device_plugins=["intelgpu"])["node"] == "worker-0"
        states = db_api.host_state_get_all(manager.engine)
        assert sum(1 for s in states.values() if not s.seen) == 50, "capped"
        pending_lines = [r for r in caplog.records if "no Kubernetes node" in r.getMessage()]
        assert len(pending_lines) <= 11, "rate-limited"
        caplog.clear()
        manager.audit()
        audit_lines = [r for r in caplog.records if "Label audit" in r.getMessage()
                       and "no Kubernetes node" in r.getMessage()]
        assert len(audit_lines) == 1 and "50 hosts" in audit_lines[0].getMessage()
        with manager.engine.begin() as conn:  # their last report was two hours ago
            conn.execute(update(Host).where(Host.seen_at.is_(None))
                         .values(reported_at=datetime.now(timezone.utc) - timedelta(hours=2)))
        assert manager.audit().expired == 50
        states = db_api.host_state_get_all(manager.engine)
        assert list(states) == [HOST_A.lower()], "the seen host never expires"
        assert [r.host_uuid for r in db_api.label_get_all(manager.engine)] == [HOST_A.lower()]
        assert manager.report(_uuid(1), device_plugins=["intelgpu"])["node"] is None  # room again
        assert _uuid(1) in db_api.host_state_get_all(manager.engine)
    finally:
        manager.close()
        manager.engine.dispose()


# -- removals are desired state (issue 11 item 4) ---------------------------------------------


def test_removal_recorded_before_the_patch_converges_after_a_crash(
        conductor_conf: cfg.ConfigOpts, fake_kube: FakeKubeAPI, gpu: None) -> None:
    fake_kube.add_node("worker-0", HOST_A)
    first = make_manager(conductor_conf)
    first.report(HOST_A, device_plugins=["intelgpu"])
    fake_kube.inject("PATCH", "/nodes/worker-0$", status=503, times=3)  # the PATCH never lands
    with pytest.raises(Exception, match="503"):
        first.report(HOST_A, device_plugins=[])
    first.close()  # gone, as after kill -9 between the database write and the PATCH
    first.engine.dispose()
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}
    second = make_manager(conductor_conf)
    second.start()
    assert wait_for(lambda: fake_kube.node_labels("worker-0") == {}), "removed on restart"
    second.cache.stop()
    fake_kube.add_node("worker-0", HOST_A, {"intelgpu": "enabled"})  # put back by hand
    assert second.audit().patched == 1, "the audit converges removals too"
    assert fake_kube.node_labels("worker-0") == {}
    assert second.audit().patched == 0
    second.close()
    second.engine.dispose()


# -- concurrency ------------------------------------------------------------------------------


def test_many_hosts_at_once_all_labelled(manager: ConductorManager, fake_kube: FakeKubeAPI,
                                         gpu: None) -> None:
    hosts = [_uuid(i) for i in range(40)]
    for i, host in enumerate(hosts):
        fake_kube.add_node(f"worker-{i}", host)
    sync_cache(manager, fake_kube)
    fake_kube.clear_records()
    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(lambda h: manager.report(h, device_plugins=["intelgpu"]), hosts))
    assert [r["node"] for r in results] == [f"worker-{i}" for i in range(40)]
    assert all(fake_kube.node_labels(f"worker-{i}") == {"intelgpu": "enabled"} for i in range(40))
    assert fake_kube.list_requests() == [] and len(fake_kube.patches) == 40
    assert len(db_api.label_get_all(manager.engine)) == 40


def test_two_reports_for_one_host_stay_in_order(manager: ConductorManager, fake_kube: FakeKubeAPI,
                                                gpu: None) -> None:
    fake_kube.add_node("worker-0", HOST_A)
    fake_kube.add_node("worker-1", HOST_B)
    sync_cache(manager, fake_kube)
    fake_kube.inject_delay("PATCH", "/nodes/worker-0$", seconds=0.5)  # the first PATCH is slow
    first_started = threading.Event()
    done: list[str] = []

    def first() -> None:
        first_started.set()
        manager.report(HOST_A, device_plugins=["intelgpu"])
        done.append("set")

    thread = threading.Thread(target=first)
    thread.start()
    assert first_started.wait(5)
    assert wait_for(lambda: len(fake_kube.patches) == 1)  # the set is in flight
    other = time.monotonic()
    manager.report(HOST_B, device_plugins=["intelgpu"])  # another host is not held up
    assert time.monotonic() - other < 0.4
    manager.report(HOST_A, device_plugins=[])  # waits for the first report of this host
    done.append("remove")
    thread.join(10)
    assert done == ["set", "remove"]
    bodies = [p.body["metadata"]["labels"] for p in fake_kube.patches if p.path.endswith("worker-0")]
    assert bodies == [{"intelgpu": "enabled"}, {"intelgpu": None}]
    assert fake_kube.node_labels("worker-0") == {}
    records = {r.host_uuid: r.label_value for r in db_api.label_get_all(manager.engine, include_absent=True)}
    assert records == {HOST_A.lower(): None, HOST_B.lower(): "enabled"}


def test_unchanged_reports_write_nothing(manager: ConductorManager, fake_kube: FakeKubeAPI,
                                         gpu: None) -> None:
    fake_kube.add_node("worker-0", HOST_A)
    manager.report(HOST_A, device_plugins=["intelgpu"])
    before = db_api.label_get(manager.engine, HOST_A.lower(), "intelgpu")
    fake_kube.clear_records()
    for _ in range(5):
        manager.report(HOST_A, device_plugins=["intelgpu"])
    assert fake_kube.requests == [] or all(r.method == "GET" for r in fake_kube.requests)
    assert fake_kube.patches == []
    assert db_api.label_get(manager.engine, HOST_A.lower(), "intelgpu") == before
    manager.cache.stop()
    fake_kube.clear_records()
    result = manager.audit()
    assert (result.patched, result.forgotten, result.expired) == (0, 0, 0)
    assert [(r.method, r.path) for r in fake_kube.requests] == [("GET", "/api/v1/nodes")]


# -- abuse (issue 11 item 5) ------------------------------------------------------------------


def test_unknown_host_flood_and_hanging_api_starve_nobody(
        manager: ConductorManager, fake_kube: FakeKubeAPI, gpu: None,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    legit = [_uuid(i) for i in range(20)]
    for i, host in enumerate(legit):
        fake_kube.add_node(f"worker-{i}", host)
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(lambda h: manager.report(h, device_plugins=["intelgpu"]), legit))
    fake_kube.clear_records()
    fake_kube.inject_delay("*", ".*", seconds=30, times=10_000)  # the API hangs from now on
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=40) as pool:
        flood = [pool.submit(manager.report, _uuid(10_000 + i), device_plugins=["intelgpu"])
                 for i in range(300)]
        legit_results = list(pool.map(lambda h: manager.report(h, device_plugins=["intelgpu"]), legit))
        assert all(f.result(timeout=30)["node"] is None for f in flood)
    elapsed = time.monotonic() - started
    fake_kube.clear_injections()
    assert [r["node"] for r in legit_results] == [f"worker-{i}" for i in range(20)]
    assert elapsed < 10, f"320 reports took {elapsed:.1f} s with the API hanging"
    assert fake_kube.list_requests() == [], "no node LIST per unknown host"
    assert len([r for r in caplog.records if "no Kubernetes node yet" in r.getMessage()]) <= 11
