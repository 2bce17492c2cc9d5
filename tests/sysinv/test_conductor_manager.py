"""ConductorManager: payload normalization (pure), reconcile and audit.

Covers: both StarlingX payload forms, missing / corrupt / changed enabled_kube_plugins, plugin
not enabled, GPU gone -> label removed, foreign labels untouched, unknown host (pending, no
error), malformed payloads (server keeps serving), API 500s on the first PATCHes, label removed
behind the watch's back -> restored by the audit, conductor restart -> state kept. The watch
cache itself, pending hosts and concurrency are in test_conductor_cache.py. RPC goes through oslo.messaging's
in-process fake:/ driver (client -> server endpoint); Kubernetes is the emulated HTTP API
server of tests/fakes/kube_api.py, except the unit cases that mock kube.py at its boundary.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from oslo_config import cfg

from sysinv_ext.common import exception
from sysinv_ext.conductor import kube as kube_mod
from sysinv_ext.conductor.manager import ConductorManager, desired_labels, normalize_payload
from sysinv_ext.conductor.plugins import PluginsFile
from sysinv_ext.conf.conductor import database_url
from sysinv_ext.db import api as db_api
from sysinv_ext.db import migration
from tests.fakes.kube_api import FakeKubeAPI
from tests.sysinv.conftest import (
    GPU_PLUGINS_2019,
    HOST_A,
    HOST_B,
    RpcPair,
    make_manager,
    sync_cache,
    wait_for,
)

# -- normalize_payload (pure) ---------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "keys", "form"), [
    ({"device_plugins": ["intelgpu"]}, {"intelgpu"}, "2023"),
    ({"device_plugins": []}, set(), "2023"),
    ({"device_plugins": ["intelgpu", "intelgpu", "example.com/qat"]}, {"intelgpu", "example.com/qat"},
     "2023"),
    ({"device_plugin_labels": [{"label_key": "intelgpu", "label_value": "enabled"}]}, {"intelgpu"}, "2019"),
    ({"device_plugin_labels": []}, set(), "2019"),
])
def test_normalize_accepts_both_forms(kwargs: dict[str, Any], keys: set[str], form: str) -> None:
    report = normalize_payload(" " + HOST_A + " ", **kwargs)
    assert report.host_uuid == HOST_A.lower()
    assert report.keys == keys
    assert report.form == form


@pytest.mark.parametrize(("host", "kwargs", "fragment"), [
    (HOST_A, {}, "neither"),
    (HOST_A, {"device_plugins": None, "device_plugin_labels": None}, "neither"),
    (HOST_A, {"device_plugins": "intelgpu"}, "must be a list, not str"),
    (HOST_A, {"device_plugins": [1, 2]}, "entry 1 is not a label key"),
    (HOST_A, {"device_plugins": [""]}, "not a label key"),
    (HOST_A, {"device_plugins": ["bad key!"]}, "not a label key"),
    (HOST_A, {"device_plugins": {"intelgpu": "enabled"}}, "must be a list, not dict"),
    (HOST_A, {"device_plugins": ["x"] * 65}, "at most 64"),
    (HOST_A, {"device_plugin_labels": [{}]}, "is not {'label_key'"),
    (HOST_A, {"device_plugin_labels": [{"label_key": "intelgpu"}]}, "is not {'label_key'"),
    (HOST_A, {"device_plugin_labels": ["intelgpu"]}, "is not {'label_key'"),
    (HOST_A, {"device_plugin_labels": [{"label_key": "intelgpu", "label_value": 1}]}, "is not"),
    (HOST_A, {"device_plugin_labels": "intelgpu=enabled"}, "must be a list, not str"),
    (HOST_A, {"device_plugins": ["intelgpu"],
              "device_plugin_labels": [{"label_key": "intelgpu", "label_value": "enabled"}]}, "both"),
    (None, {"device_plugins": ["intelgpu"]}, "host_uuid"),
    ("", {"device_plugins": ["intelgpu"]}, "host_uuid"),
    ("a b", {"device_plugins": ["intelgpu"]}, "host_uuid"),
    (42, {"device_plugins": ["intelgpu"]}, "host_uuid"),
])
def test_normalize_rejects_garbage(host: Any, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(exception.InvalidPayload) as err:
        normalize_payload(host, **kwargs)
    assert fragment in str(err.value)


@pytest.mark.parametrize("host", ["host-\x00", "\x00", "ab\x01cd", "ab\x7fcd", "ab\u200bcd",
                                  "a/b", "a'b", "h" * 65, "-leading-dash"])
def test_control_characters_in_host_uuid_are_refused_before_the_database(host: str) -> None:
    """Issue 21 item 10: a NUL in host_uuid reached PostgreSQL and failed the reports of other
    hosts written in the same transaction; host_uuid is now a UUID-like charset."""
    with pytest.raises(exception.InvalidPayload) as err:
        normalize_payload(host, device_plugins=["intelgpu"])
    assert "host_uuid must be" in str(err.value)


@pytest.mark.parametrize("host", ["3E1C2E6F-2F63-4B7C-9D8E-0A1B2C3D4E5F", "controller-0", "h", "a_b.c"])
def test_uuid_like_host_uuids_are_accepted(host: str) -> None:
    assert normalize_payload(host, device_plugins=[]).host_uuid == host.lower()


def test_desired_labels_only_covers_enabled_keys() -> None:
    enabled = {"intelgpu": "enabled", "intelqat": "enabled"}
    assert desired_labels(enabled, frozenset({"intelgpu", "foreign"})) == {
        "intelgpu": "enabled", "intelqat": None}


# -- unit: kube.py mocked at its boundary ---------------------------------------------------


def _node(labels: dict[str, str], name: str = "worker-0", uuid: str = HOST_A) -> kube_mod.Node:
    return kube_mod.Node(name=name, system_uuid=uuid.lower(), labels=labels)


@pytest.fixture
def mocked_manager(conductor_conf: cfg.ConfigOpts,
                   write_plugins: Callable[[Any], Path]) -> Iterator[ConductorManager]:
    write_plugins(GPU_PLUGINS_2019)
    kube = mock.create_autospec(kube_mod.KubeClient, instance=True)
    kube.request_timeout = 0.2
    kube.list_nodes_at.return_value = ([_node({"foreign": "x"})], "1")
    closed = threading.Event()
    kube.watch_nodes.side_effect = lambda version, timeout: iter(()) if closed.wait(timeout) else iter(())
    kube.patch_node_labels.side_effect = lambda name, labels, **_deadline: _node(
        {"foreign": "x", **{k: v for k, v in labels.items() if v is not None}})
    mgr = ConductorManager(kube=kube, engine=db_api.get_engine(database_url(conductor_conf)),
                           plugins=PluginsFile(conductor_conf.conductor.enabled_kube_plugins))
    migration.upgrade(mgr.engine)
    yield mgr
    closed.set()
    mgr.close()
    mgr.engine.dispose()


def test_patch_body_holds_only_enabled_keys(mocked_manager: ConductorManager) -> None:
    mocked_manager.report(HOST_A, device_plugins=["intelgpu", "foreign", "intelqat"])
    kube = mocked_manager.kube
    kube.patch_node_labels.assert_called_once()  # type: ignore[attr-defined]
    assert kube.patch_node_labels.call_args.args == ("worker-0", {"intelgpu": "enabled"})  # type: ignore[attr-defined]
    kube.list_nodes_at.assert_called_once_with()  # type: ignore[attr-defined]  # the cache's LIST
    kube.list_nodes.assert_not_called()  # type: ignore[attr-defined]
    kube.get_node.assert_not_called()  # type: ignore[attr-defined]
    mocked_manager.report(HOST_A, device_plugins=["intelgpu"])
    kube.patch_node_labels.assert_called_once()  # type: ignore[attr-defined]  # node already right
    kube.list_nodes_at.assert_called_once_with()  # type: ignore[attr-defined]


def test_nothing_to_patch_when_node_already_labelled(mocked_manager: ConductorManager) -> None:
    kube = mocked_manager.kube
    kube.list_nodes_at.return_value = ([_node({"intelgpu": "enabled"})], "1")  # type: ignore[attr-defined]
    result = mocked_manager.report(HOST_A, device_plugins=["intelgpu"])
    assert result == {"node": "worker-0", "labels": {"intelgpu": "enabled"}, "removed": []}
    kube.patch_node_labels.assert_not_called()  # type: ignore[attr-defined]


def test_kube_error_still_records_for_the_audit(mocked_manager: ConductorManager) -> None:
    kube = mocked_manager.kube
    kube.list_nodes_at.side_effect = exception.KubeAPIError(action="list nodes", reason="HTTP 503")  # type: ignore[attr-defined]
    with pytest.raises(exception.KubeAPIError):
        mocked_manager.report(HOST_A, device_plugins=["intelgpu"])
    assert [(r.host_uuid, r.label_key) for r in db_api.label_get_all(mocked_manager.engine)] == [
        (HOST_A.lower(), "intelgpu")]


def test_manager_needs_conf_or_collaborators() -> None:
    with pytest.raises(ValueError):
        ConductorManager(None, plugins=PluginsFile("/nonexistent"))


# -- through RPC (fake:/) and the emulated API server --------------------------------------


@pytest.mark.parametrize("payload", [
    {"device_plugins": ["intelgpu"]},
    {"device_plugin_labels": [{"label_key": "intelgpu", "label_value": "enabled"}]},
], ids=["2023", "2019"])
def test_report_labels_node_at_once(payload: dict[str, Any], rpc_pair: RpcPair, fake_kube: FakeKubeAPI,
                                    manager: ConductorManager, write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(GPU_PLUGINS_2019)
    fake_kube.add_node("worker-0", HOST_A, {"kubernetes.io/hostname": "worker-0"})
    fake_kube.add_node("worker-1", HOST_B)
    result = rpc_pair.call(host_uuid=HOST_A.lower(), **payload)  # case-insensitive match
    assert result == {"node": "worker-0", "labels": {"intelgpu": "enabled"}, "removed": []}
    assert fake_kube.node_labels("worker-0") == {"kubernetes.io/hostname": "worker-0", "intelgpu": "enabled"}
    assert fake_kube.node_labels("worker-1") == {}
    assert [(p.path, p.content_type, p.body) for p in fake_kube.patches] == [
        ("/api/v1/nodes/worker-0", "application/merge-patch+json",
         {"metadata": {"labels": {"intelgpu": "enabled"}}})]
    assert [(r.host_uuid, r.label_key, r.label_value) for r in db_api.label_get_all(manager.engine)] == [
        (HOST_A.lower(), "intelgpu", "enabled")]


@pytest.mark.parametrize("content", [
    ["intelgpu"], ["intel-gpu-plugin"], GPU_PLUGINS_2019,
], ids=["2023-label-keys", "plugin-names", "2019-dict"])
def test_every_plugins_file_form_enables_the_gpu(content: Any, manager: ConductorManager,
                                                 fake_kube: FakeKubeAPI,
                                                 write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(content)
    fake_kube.add_node("worker-0", HOST_A)
    manager.report(HOST_A, device_plugins=["intelgpu"])
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}


def test_missing_plugins_file_enables_nothing(rpc_pair: RpcPair, fake_kube: FakeKubeAPI,
                                              manager: ConductorManager) -> None:
    fake_kube.add_node("worker-0", HOST_A, {"intelgpu": "enabled"})  # set by hand: not ours to touch
    result = rpc_pair.call(host_uuid=HOST_A, device_plugins=["intelgpu"])
    assert result["labels"] == {}
    assert fake_kube.patches == []
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}
    assert db_api.label_get_all(manager.engine) == []


def test_plugin_not_enabled_is_ignored(manager: ConductorManager, fake_kube: FakeKubeAPI,
                                       write_plugins: Callable[[Any], Path]) -> None:
    write_plugins({"intel-qat-plugin": "intelqat=enabled"})
    fake_kube.add_node("worker-0", HOST_A, {"intelgpu": "enabled", "intelqat": "enabled"})
    result = manager.report(HOST_A, device_plugins=["intelgpu"])
    # intelqat is enabled but not reported -> removed; intelgpu is not enabled -> untouched
    assert result == {"node": "worker-0", "labels": {}, "removed": ["intelqat"]}
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}
    assert [p.body for p in fake_kube.patches] == [{"metadata": {"labels": {"intelqat": None}}}]


def test_corrupt_plugins_file_keeps_previous_state(manager: ConductorManager, fake_kube: FakeKubeAPI,
                                                   write_plugins: Callable[[Any], Path]) -> None:
    fake_kube.add_node("worker-0", HOST_A)
    write_plugins(GPU_PLUGINS_2019)
    manager.report(HOST_A, device_plugins=["intelgpu"])
    write_plugins('{"intel-gpu-plugin": ')  # half-written
    manager.report(HOST_A, device_plugins=[])
    assert fake_kube.node_labels("worker-0") == {}, "previous content still enables intelgpu"
    write_plugins("[]")
    manager.report(HOST_A, device_plugins=["intelgpu"])
    assert fake_kube.node_labels("worker-0") == {}, "nothing enabled any more"


def test_gpu_gone_removes_label_foreign_labels_untouched(rpc_pair: RpcPair, fake_kube: FakeKubeAPI,
                                                         manager: ConductorManager,
                                                         write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(GPU_PLUGINS_2019)
    foreign = {"kubernetes.io/hostname": "worker-0", "feature.node.kubernetes.io/x": "true",
               "intelqat": "enabled"}
    fake_kube.add_node("worker-0", HOST_A, foreign)
    rpc_pair.call(host_uuid=HOST_A, device_plugins=["intelgpu", "intelqat"])
    assert fake_kube.node_labels("worker-0") == {**foreign, "intelgpu": "enabled"}
    result = rpc_pair.call(host_uuid=HOST_A, device_plugins=[])
    assert result == {"node": "worker-0", "labels": {}, "removed": ["intelgpu"]}
    assert fake_kube.node_labels("worker-0") == foreign
    assert db_api.label_get_all(manager.engine) == []
    for patch in fake_kube.patches:
        assert set(patch.body["metadata"]["labels"]) == {"intelgpu"}


def test_unknown_host_is_pending_and_garbage_are_rpc_errors_server_keeps_serving(
        rpc_pair: RpcPair, fake_kube: FakeKubeAPI, write_plugins: Callable[[Any], Path],
        caplog: pytest.LogCaptureFixture) -> None:
    write_plugins(GPU_PLUGINS_2019)
    fake_kube.add_node("worker-0", HOST_A)
    # SPEC: a host whose node does not exist yet is recorded and answered without an error
    assert rpc_pair.call(host_uuid=HOST_B, device_plugins=["intelgpu"]) == {
        "node": None, "labels": {"intelgpu": "enabled"}, "removed": []}
    for bad in ({"device_plugins": None}, {"device_plugins": "intelgpu"}, {"device_plugins": [1, 2]},
                {"device_plugin_labels": [{"key": "intelgpu"}]}):
        with pytest.raises(exception.InvalidPayload):
            rpc_pair.call(host_uuid=HOST_A, **bad)
    assert rpc_pair.call(host_uuid=HOST_A, device_plugins=["intelgpu"])["labels"] == {"intelgpu": "enabled"}
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 4
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], "logged as a crash"


def test_api_500_on_first_patches_is_retried(manager: ConductorManager, fake_kube: FakeKubeAPI,
                                             write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(GPU_PLUGINS_2019)
    fake_kube.add_node("worker-0", HOST_A)
    fake_kube.inject("PATCH", "/nodes/worker-0$", status=500, times=2)
    manager.report(HOST_A, device_plugins=["intelgpu"])
    assert len(fake_kube.patches) == 3
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}


def test_api_down_longer_than_retries_audit_sets_label(manager: ConductorManager, fake_kube: FakeKubeAPI,
                                                       write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(GPU_PLUGINS_2019)
    fake_kube.add_node("worker-0", HOST_A)
    fake_kube.inject("PATCH", "/nodes/worker-0$", status=503, times=3)
    with pytest.raises(exception.KubeAPIError):
        manager.report(HOST_A, device_plugins=["intelgpu"])
    assert fake_kube.node_labels("worker-0") == {}
    result = manager.audit()
    assert (result.patched, result.failed) == (1, 0)
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}


def test_label_removed_by_hand_is_restored_by_audit_with_one_list(
        manager: ConductorManager, fake_kube: FakeKubeAPI, write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(GPU_PLUGINS_2019)
    for i in range(5):
        fake_kube.add_node(f"worker-{i}", f"{i:08d}-0000-0000-0000-000000000000")
    hosts = [f"{i:08d}-0000-0000-0000-000000000000" for i in range(5)]
    for host in hosts:
        manager.report(host, device_plugins=["intelgpu"])
    manager.cache.stop()  # a change the watch missed: only the audit can see it
    fake_kube.put_object({**fake_kube.get_node("worker-3"), "metadata": {"name": "worker-3", "labels": {}}})
    fake_kube.clear_records()
    result = manager.audit()
    assert (result.nodes, result.patched, result.failed) == (5, 1, 0)
    assert [(r.method, r.path) for r in fake_kube.requests] == [
        ("GET", "/api/v1/nodes"), ("PATCH", "/api/v1/nodes/worker-3")]
    assert fake_kube.node_labels("worker-3") == {"intelgpu": "enabled"}
    fake_kube.clear_records()
    manager.audit()
    assert [r.method for r in fake_kube.requests] == ["GET"], "nothing left to patch"


def test_audit_forgets_disabled_plugins_without_touching_the_node(
        manager: ConductorManager, fake_kube: FakeKubeAPI, write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(GPU_PLUGINS_2019)
    fake_kube.add_node("worker-0", HOST_A)
    manager.report(HOST_A, device_plugins=["intelgpu"])
    write_plugins({"intel-qat-plugin": "intelqat=enabled"})
    fake_kube.clear_records()
    result = manager.audit()
    assert result.forgotten == 1
    assert db_api.label_get_all(manager.engine) == []
    assert fake_kube.patches == []
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}


def test_audit_applies_a_changed_enabled_value(manager: ConductorManager, fake_kube: FakeKubeAPI,
                                               write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(GPU_PLUGINS_2019)
    fake_kube.add_node("worker-0", HOST_A)
    manager.report(HOST_A, device_plugins=["intelgpu"])
    write_plugins({"intel-gpu-plugin": "intelgpu=true"})
    manager.audit()
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "true"}
    assert db_api.label_get(manager.engine, HOST_A.lower(), "intelgpu").label_value == "true"


def test_renamed_node_is_found_again(manager: ConductorManager, fake_kube: FakeKubeAPI,
                                     write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(GPU_PLUGINS_2019)
    fake_kube.add_node("worker-0", HOST_A)
    manager.report(HOST_A, device_plugins=["intelgpu"])
    fake_kube.add_node("worker-0-new", HOST_A)
    fake_kube.add_node("worker-0", HOST_B)  # the old name now belongs to another machine
    sync_cache(manager, fake_kube)  # the watch delivered both changes
    assert manager.report(HOST_A, device_plugins=["intelgpu"])["node"] == "worker-0-new"
    assert fake_kube.node_labels("worker-0-new") == {"intelgpu": "enabled"}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_conductor_restart_keeps_state(database: str, request: pytest.FixtureRequest,
                                       conductor_conf: cfg.ConfigOpts, fake_kube: FakeKubeAPI,
                                       write_plugins: Callable[[Any], Path]) -> None:
    if database == "postgresql":
        conductor_conf.set_override("connection", request.getfixturevalue("postgres_url"), "database")
    write_plugins(GPU_PLUGINS_2019)
    fake_kube.add_node("worker-0", HOST_A)
    first = make_manager(conductor_conf)
    first.report(HOST_A, device_plugins=["intelgpu"])
    first.close()
    first.engine.dispose()
    fake_kube.put_object({**fake_kube.get_node("worker-0"), "metadata": {"name": "worker-0", "labels": {}}})

    second = make_manager(conductor_conf)  # same [database]connection
    assert [r.label_key for r in db_api.label_get_all(second.engine)] == ["intelgpu"]
    second.start()  # its first LIST shows the node without the label: restored, no report needed
    assert wait_for(lambda: fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"})
    second.cache.stop()  # the audit alone (no watch) restores too
    fake_kube.put_object({**fake_kube.get_node("worker-0"), "metadata": {"name": "worker-0", "labels": {}}})
    assert second.audit().patched == 1
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}
    second.report(HOST_A, device_plugins=[])
    assert fake_kube.node_labels("worker-0") == {}
    second.close()
    second.engine.dispose()


# -- the audit thread -----------------------------------------------------------------------


def test_audit_loop_survives_failures_and_stops_on_event(caplog: pytest.LogCaptureFixture) -> None:
    import threading

    from sysinv_ext.conductor.audit import AuditLoop

    calls: list[int] = []
    third = threading.Event()

    def audit() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise exception.KubeAPIError(action="list nodes", reason="HTTP 503")
        if len(calls) == 2:
            raise RuntimeError("unexpected")
        third.set()

    loop = AuditLoop(audit, interval=0.01)
    loop.start()
    assert third.wait(10)
    loop.stop()
    assert not loop.is_alive()
    warnings = [r for r in caplog.records if "Label audit failed" in r.getMessage()]
    assert [r.levelname for r in warnings] == ["WARNING", "ERROR"]
    assert warnings[0].exc_info is None, "an expected failure is one line, no traceback"


def test_restart_with_corrupt_plugins_file_forgets_nothing(
        conductor_conf: cfg.ConfigOpts, fake_kube: FakeKubeAPI, write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(GPU_PLUGINS_2019)
    fake_kube.add_node("worker-0", HOST_A)
    first = make_manager(conductor_conf)
    first.report(HOST_A, device_plugins=["intelgpu"])
    first.close()
    first.engine.dispose()
    write_plugins('{"intel-gpu-plugin": ')  # corrupt before the restart: nothing known to be enabled
    second = make_manager(conductor_conf)
    second.cache.stop()  # the audit alone
    result = second.audit()
    assert result.forgotten == 0
    assert [r.label_key for r in db_api.label_get_all(second.engine)] == ["intelgpu"]
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}
    write_plugins(GPU_PLUGINS_2019)  # repaired: the record is in force again
    fake_kube.put_object({**fake_kube.get_node("worker-0"), "metadata": {"name": "worker-0", "labels": {}}})
    assert second.audit().patched == 1
    second.close()
    second.engine.dispose()


def test_audit_failure_on_one_node_does_not_block_the_others(
        manager: ConductorManager, fake_kube: FakeKubeAPI, write_plugins: Callable[[Any], Path]) -> None:
    write_plugins(GPU_PLUGINS_2019)
    hosts = [f"{i:08d}-0000-0000-0000-00000000000{i}" for i in range(3)]
    manager.start()
    manager.cache.stop()  # the audit alone: no watch event applies these records first
    for i, host in enumerate(hosts):
        fake_kube.add_node(f"worker-{i}", host)
        db_api.label_set(manager.engine, host, "intelgpu", "enabled")  # recorded, never applied
    fake_kube.inject("PATCH", "/nodes/worker-1$", status=500, times=3)
    result = manager.audit()
    assert (result.patched, result.failed) == (2, 1)
    assert [fake_kube.node_labels(f"worker-{i}") for i in range(3)] == [
        {"intelgpu": "enabled"}, {}, {"intelgpu": "enabled"}]
    assert manager.audit().patched == 1, "the next audit retries the failed node"
    assert fake_kube.node_labels("worker-1") == {"intelgpu": "enabled"}
