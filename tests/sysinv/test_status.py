"""``sysinv-gpu-status``: the real console script against the fake API server and a real database.

The database is filled by the real ConductorManager (reports go through ``report()``, labels are
PATCHed on the fake API), then the node is changed behind the conductor's back to produce each
inconsistent state. Also the pure row logic, and the exit codes for bad input and unreadable state.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from sysinv_ext.conductor.manager import ConductorManager
from sysinv_ext.status.rows import (
    GPU_GONE,
    NOT_LABELLED,
    NOTHING_ALLOCATABLE,
    NodeView,
    RecordedHost,
    build_rows,
)
from tests.fakes.kube_api import FakeKubeAPI

STATUS = str(Path(sys.executable).with_name("sysinv-gpu-status"))
HOST = "4c4c4544-0042-3510-8052-b4c04f4e4b32"
OTHER = "aaaaaaaa-0000-0000-0000-000000000002"


def _conf_file(tmp_path: Path, conf: cfg.ConfigOpts) -> Path:
    path = tmp_path / "conductor.conf"
    path.write_text(f"[conductor]\nstate_path = {conf.conductor.state_path}\n"
                    f"enabled_kube_plugins = {conf.conductor.enabled_kube_plugins}\n"
                    f"[kubernetes]\nkubeconfig = {conf.kubernetes.kubeconfig}\n")
    return path


def _status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STATUS, "--config-file", str(config), *args], capture_output=True, text=True,
                          timeout=60)


def _set_allocatable(api: FakeKubeAPI, node: str, resources: dict[str, str]) -> None:
    obj = api.get_node(node)
    assert obj is not None
    obj["status"]["allocatable"] = dict(resources)
    obj["status"]["capacity"] = dict(resources)
    api.put_object(obj)


def _set_label(api: FakeKubeAPI, node: str, key: str, value: str | None) -> None:
    obj = api.get_node(node)
    assert obj is not None
    labels = obj["metadata"].setdefault("labels", {})
    if value is None:
        labels.pop(key, None)
    else:
        labels[key] = value
    api.put_object(obj)


@pytest.fixture
def flow(tmp_path: Path, fake_kube: FakeKubeAPI, manager: ConductorManager, conductor_conf: cfg.ConfigOpts,
         write_plugins: Callable[[Any], Path]) -> Path:
    """The happy path: enabled plugin, host reported, node labelled by the conductor, GPUs allocatable."""
    write_plugins({"intel-gpu-plugin": "intelgpu=enabled"})
    fake_kube.add_node("worker-0", HOST.upper(), {"kubernetes.io/hostname": "worker-0"})
    fake_kube.add_node("plain-1", OTHER, {})  # no GPU, no label: not a row
    manager.report(HOST.upper(), device_plugins=["intelgpu"])
    assert fake_kube.node_labels("worker-0")["intelgpu"] == "enabled"
    _set_allocatable(fake_kube, "worker-0", {"cpu": "4", "gpu.intel.com/i915": "2", "gpu.intel.com/xe": "1"})
    return _conf_file(tmp_path, conductor_conf)


def test_consistent_table_and_json(flow: Path) -> None:
    result = _status(flow)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["HOST", "UUID", "NODE"] and len(lines) == 2
    row = lines[1].split()
    assert row[:3] == [HOST, "worker-0", "intelgpu"] and row[-1] == "ok"
    assert "intelgpu=enabled" in lines[1] and "i915=2,xe=1" in lines[1]
    assert result.stderr == ""
    data = json.loads(_status(flow, "--json").stdout)
    assert data["consistent"] is True
    [host] = data["hosts"]
    assert host["host_uuid"] == HOST and host["node"] == "worker-0" and host["reported"] == ["intelgpu"]
    assert host["reported_at"] and host["label_recorded"] == {"intelgpu": "enabled"}
    assert host["label_on_node"] == {"intelgpu": "enabled"}
    assert host["allocatable"] == {"gpu.intel.com/i915": 2, "gpu.intel.com/xe": 1}


def test_reported_but_not_labelled(flow: Path, fake_kube: FakeKubeAPI, manager: ConductorManager) -> None:
    manager.deactivate()  # a standby conductor: nobody restores the label from the watch
    _set_label(fake_kube, "worker-0", "intelgpu", None)  # removed behind the conductor's back
    result = _status(flow)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"sysinv-gpu-status: host {HOST} (node worker-0): "
                                          f"{NOT_LABELLED}: node worker-0 lacks intelgpu=enabled"]
    assert result.stdout.splitlines()[1].endswith("INCONSISTENT")


def test_reported_but_no_node(flow: Path, manager: ConductorManager) -> None:
    pending = "bbbbbbbb-0000-0000-0000-000000000003"
    # sysinv reports a host before its kubelet joins: recorded, labelled when the node appears
    assert manager.report(pending, device_plugins=["intelgpu"])["node"] is None
    result = _status(flow)
    assert result.returncode == 1
    assert f"host {pending} (node -): {NOT_LABELLED}: no Kubernetes node has systemUUID {pending}" \
        in result.stderr
    assert f"host {HOST}" not in result.stderr  # the other row is fine


def test_labelled_but_nothing_allocatable(flow: Path, fake_kube: FakeKubeAPI) -> None:
    _set_allocatable(fake_kube, "worker-0", {"cpu": "4", "gpu.intel.com/i915": "0"})  # plugin gone
    result = _status(flow, "--json")
    assert result.returncode == 1
    [host] = json.loads(result.stdout)["hosts"]
    assert host["consistent"] is False and host["problems"] == [
        f"{NOTHING_ALLOCATABLE}: node worker-0 has intelgpu=enabled but no gpu.intel.com/* allocatable"]
    assert f"host {HOST} (node worker-0): {NOTHING_ALLOCATABLE}" in result.stderr


def test_label_present_but_gpu_gone(flow: Path, fake_kube: FakeKubeAPI, manager: ConductorManager) -> None:
    manager.report(HOST, device_plugins=[])  # GPU unplugged: the conductor removes the label
    assert "intelgpu" not in fake_kube.node_labels("worker-0")
    assert _status(flow).returncode == 0  # ... and the node's leftover allocatable is not a GPU claim
    manager.deactivate()  # a standby conductor: nobody removes it again from the watch
    _set_label(fake_kube, "worker-0", "intelgpu", "enabled")  # someone puts it back by hand
    result = _status(flow)
    assert result.returncode == 1
    assert f"host {HOST} (node worker-0): {GPU_GONE}: node worker-0 has intelgpu=enabled but host " \
        f"{HOST} reported no GPU" in result.stderr
    [row] = json.loads(_status(flow, "--json").stdout)["hosts"]
    assert row["reported"] == [] and row["label_recorded"] == {"intelgpu": None}


@pytest.mark.parametrize("broken", ["database", "api"])
def test_unreadable_state_exits_3_with_one_line(tmp_path: Path, flow: Path, fake_kube: FakeKubeAPI,
                                                broken: str) -> None:
    config = flow
    if broken == "database":
        config = tmp_path / "other.conf"
        config.write_text(flow.read_text().replace("state_path = ", f"state_path = {tmp_path}/nowhere"
                                                   "#"))
    else:
        fake_kube.stop()
    result = _status(config)
    assert result.returncode == 3
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert ("no database file" if broken == "database" else "list nodes") in result.stderr
    assert not (tmp_path / "nowhere").exists()  # read-only: nothing created


def test_bad_flag_exits_2() -> None:
    result = subprocess.run([STATUS, "--jsn"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "--jsn" in result.stderr


def _node(name: str, uuid: str, labels: dict[str, str] | None = None, **alloc: int) -> NodeView:
    return NodeView(name, uuid, labels or {}, {f"gpu.intel.com/{k}": v for k, v in alloc.items()})


@pytest.mark.parametrize(("hosts", "nodes", "problems"), [
    ([RecordedHost("h1", {"intelgpu": "enabled"})], [_node("n1", "h1", {"intelgpu": "enabled"}, i915=1)], []),
    ([RecordedHost("h1", {"intelgpu": None})], [_node("n1", "h1")], []),  # reported no GPU, no label
    ([], [_node("n1", "h1", {"intelgpu": "enabled"}, i915=1)], [f"{GPU_GONE}: node n1 has intelgpu=enabled "
                                                                 "but host h1 never reported"]),
    ([RecordedHost("h1", {"intelgpu": None})], [_node("n1", "h1", {"intelgpu": "enabled"}, i915=1)],
     [f"{GPU_GONE}: node n1 has intelgpu=enabled but host h1 reported no GPU"]),
    ([RecordedHost("h1", {"intelgpu": "enabled"})], [_node("n1", "h1", {"intelgpu": "enabled"}, i915=0)],
     [f"{NOTHING_ALLOCATABLE}: node n1 has intelgpu=enabled but no gpu.intel.com/* allocatable"]),
    ([RecordedHost("H1", {"intelgpu": "enabled"})], [_node("n1", "h1", {})],
     [f"{NOT_LABELLED}: node n1 lacks intelgpu=enabled"]),
], ids=["consistent", "no-gpu-no-label", "never-reported", "gpu-gone", "nothing-allocatable",
        "not-labelled-case-insensitive"])
def test_rows(hosts: list[RecordedHost], nodes: list[NodeView], problems: list[str]) -> None:
    [row] = build_rows(hosts, nodes, {"intelgpu": "enabled"})
    assert list(row.problems) == problems


def test_rows_skip_unrelated_nodes_and_show_unlabelled_gpu_nodes() -> None:
    rows = build_rows([], [_node("plain", "p1"), _node("gpu", "g1", i915=2)], {"intelgpu": "enabled"})
    assert [(r.node, r.consistent, r.reported) for r in rows] == [("gpu", True, None)]
