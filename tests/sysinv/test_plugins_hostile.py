"""enabled_kube_plugins as a hostile user writes it: foreign label keys (kubernetes.io/hostname,
node-role.*), a FIFO or a device in its place, a symlink to a credentials file, JSON nested
100,000 deep, a file far too big. Each keeps the previous state, logs one line that names the
file and the reason (never the content) and never blocks the conductor.
Real files, FIFOs and symlinks under tmp_path; the Kubernetes API is tests/fakes/kube_api.py.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sysinv_ext.conductor import plugins
from sysinv_ext.conductor.manager import ConductorManager
from sysinv_ext.conductor.plugins import PluginsFile
from tests.fakes.kube_api import FakeKubeAPI
from tests.sysinv.conftest import HOST_A

FOREIGN = {"kubernetes.io/hostname": "worker-0", "node-role.kubernetes.io/master": "",
           "node.kubernetes.io/instance-type": "big", "topology.k8s.io/zone": "z1"}


def _write(path: Path, content: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(content if isinstance(content, str) else json.dumps(content))
    tmp.replace(path)


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _fds_open_on(path: Path) -> list[str]:
    """This process's descriptors open on ``path``: a leak shows here whatever other threads
    (left by earlier tests) open or close meanwhile, unlike the process-wide count."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target == str(path):
            found.append(fd)
    return found


def _bounded(func: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Run ``func`` on a thread; fail the test (not hang it) if it does not return in time."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(func()), daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"{func} blocked for {timeout} s"
    return result[0]


@pytest.mark.parametrize("key", ["kubernetes.io/hostname", "node-role.kubernetes.io/master",
                                 "node.kubernetes.io/exclude-from-external-load-balancers",
                                 "k8s.io/x", "topology.k8s.io/zone", "node-role", "node-role.x/y"])
def test_reserved_label_keys_are_recognized(key: str) -> None:
    assert plugins.is_reserved_label_key(key)


@pytest.mark.parametrize("key", ["intelgpu", "gpu.intel.com/i915", "example.com/kubernetes.io",
                                 "notkubernetes.io/x", "noderole"])
def test_other_label_keys_are_not_reserved(key: str) -> None:
    assert not plugins.is_reserved_label_key(key)


@pytest.mark.parametrize("content", [
    {"intel-gpu-plugin": "kubernetes.io/hostname=x"},
    ["intelgpu", "kubernetes.io/hostname", "node-role.kubernetes.io/master"],
    {"intel-gpu-plugin": "intelgpu=enabled", "evil": "node-role.kubernetes.io/control-plane="},
    ["intelgpu", "somebody-elses-label"],
])
def test_foreign_label_keys_in_plugins_file_refused_rest_applies(
        tmp_path: Path, content: Any, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "enabled_kube_plugins"
    _write(path, content)
    with caplog.at_level(logging.ERROR):
        labels = dict(PluginsFile(str(path)).current())
    expected = {"intelgpu": "enabled"} if "intelgpu" in json.dumps(content) else {}
    assert labels == expected
    refused = plugins.parse_enabled_plugins(content).keys() - {"intelgpu"}
    errors = _errors(caplog)
    assert len(errors) == 1 and str(path) in errors[0]
    assert all(key in errors[0] for key in refused), errors


def test_allowed_label_keys_option_extends_catalog_but_never_to_reserved_keys(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "enabled_kube_plugins"
    _write(path, ["intelgpu", "example.com/qat", "kubernetes.io/hostname"])
    with caplog.at_level(logging.ERROR):
        watcher = PluginsFile(str(path), ["example.com/qat", "kubernetes.io/hostname", "bad key"])
        assert dict(watcher.current()) == {"intelgpu": "enabled", "example.com/qat": "enabled"}
    errors = _errors(caplog)
    assert "allowed_label_keys" in errors[0] and "kubernetes.io/hostname" in errors[0]
    assert "'bad key'" in errors[0]


def test_foreign_labels_on_node_never_removed_or_set_by_reports(
        manager: ConductorManager, fake_kube: FakeKubeAPI,
        write_plugins: Callable[[Any], Path]) -> None:
    """The issue's case: a typo'd file made the agent's normal report strip kubernetes.io/*."""
    fake_kube.add_node("worker-0", HOST_A, dict(FOREIGN))
    write_plugins(["intelgpu", *FOREIGN])
    assert manager.report(HOST_A, device_plugins=["intelgpu"])["removed"] == []
    manager.report(HOST_A, device_plugins=["intelgpu", *FOREIGN])
    manager.report(HOST_A, device_plugins=[])
    write_plugins({"intel-gpu-plugin": "kubernetes.io/hostname=x"})
    manager.report(HOST_A, device_plugins=["kubernetes.io/hostname"])
    manager.audit()
    labels = fake_kube.node_labels("worker-0")
    assert {key: labels.get(key) for key in FOREIGN} == FOREIGN
    for patch in fake_kube.patches:
        assert set(patch.body["metadata"]["labels"]) == {"intelgpu"}


def test_fifo_in_place_of_plugins_file_never_blocks_and_keeps_previous(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "enabled_kube_plugins"
    watcher = PluginsFile(str(path))
    _write(path, ["intelgpu"])
    assert dict(watcher.current()) == {"intelgpu": "enabled"}
    path.unlink()
    os.mkfifo(path)
    with caplog.at_level(logging.ERROR):
        assert _bounded(lambda: dict(watcher.current())) == {"intelgpu": "enabled"}
        assert _bounded(lambda: dict(watcher.current())) == {"intelgpu": "enabled"}
    assert not watcher.valid
    errors = _errors(caplog)
    assert len(errors) == 1 and str(path) in errors[0] and "not a regular file" in errors[0]
    assert _fds_open_on(path) == []  # nothing left open on the FIFO
    path.unlink()
    _write(path, [])  # a valid file is back: in force at once
    assert _bounded(lambda: dict(watcher.current())) == {}


def test_fifo_plugins_file_reports_still_answered(manager: ConductorManager, fake_kube: FakeKubeAPI,
                                                  write_plugins: Callable[[Any], Path],
                                                  plugins_path: Path) -> None:
    fake_kube.add_node("worker-0", HOST_A, {})
    write_plugins(["intelgpu"])
    manager.report(HOST_A, device_plugins=["intelgpu"])
    plugins_path.unlink()
    os.mkfifo(plugins_path)
    result = _bounded(lambda: manager.report(HOST_A, device_plugins=[]))
    assert result["removed"] == ["intelgpu"]  # the previous state (intelgpu enabled) in force
    assert _bounded(manager.audit).nodes == 1


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null"])
def test_device_in_place_of_plugins_file_refused(tmp_path: Path, target: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "enabled_kube_plugins"
    path.symlink_to(target)
    with caplog.at_level(logging.ERROR):
        assert _bounded(lambda: dict(PluginsFile(str(path)).current())) == {}
    assert "not a regular file" in _errors(caplog)[0]


SECRET = "c2VjcmV0LXJlZ2lzdHJ5LXRva2Vu"


@pytest.mark.parametrize("credentials", [
    {"auths": {"registry.example.com": {"auth": SECRET}}},
    {"username": "admin", "password": SECRET},
    {"token": f"{SECRET}=="},
    [f"{SECRET}=x y"],
    f'{{"auth": "{SECRET}"',  # not even JSON
])
def test_plugins_file_symlink_to_credentials_secret_not_logged(
        tmp_path: Path, credentials: Any, caplog: pytest.LogCaptureFixture) -> None:
    secret_file = tmp_path / "config.json"
    secret_file.write_text(credentials if isinstance(credentials, str) else json.dumps(credentials))
    path = tmp_path / "enabled_kube_plugins"
    path.symlink_to(secret_file)
    with caplog.at_level(logging.DEBUG):
        assert dict(PluginsFile(str(path)).current()) == {}
    errors = _errors(caplog)
    assert len(errors) == 1 and str(path) in errors[0]
    assert all(SECRET not in r.getMessage() and "admin" not in r.getMessage()
               for r in caplog.records)


def test_plugins_file_nested_100k_deep_clear_error_keeps_previous(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "enabled_kube_plugins"
    watcher = PluginsFile(str(path))
    _write(path, ["intelgpu"])
    assert dict(watcher.current()) == {"intelgpu": "enabled"}
    _write(path, "[" * 100_000 + "]" * 100_000)
    with caplog.at_level(logging.ERROR):
        assert dict(watcher.current()) == {"intelgpu": "enabled"}
    errors = _errors(caplog)
    assert len(errors) == 1 and "nested too deeply" in errors[0] and len(errors[0]) < 300


def test_plugins_file_too_big_refused_unread(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "enabled_kube_plugins"
    _write(path, json.dumps(["intelgpu"] * 200_000))  # ~2 MB
    with caplog.at_level(logging.ERROR):
        assert dict(PluginsFile(str(path)).current()) == {}
    errors = _errors(caplog)
    assert len(errors) == 1 and "at most" in errors[0] and len(errors[0]) < 300
