"""Unit tests of the role's filter (roles/bringup_kubemaster/filter_plugins/kube_plugins.py).

Every StarlingX form of the plugin selection and every rejection, without running ansible.
"""
from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import pytest

from tests.ansible.runner import REPO

CATALOG = {"intel-gpu-plugin": {"label": "intelgpu=enabled", "template": "intel-gpu-plugin.yaml.j2"}}
DEFAULT = {"intel-gpu-plugin": "intelgpu=enabled"}


def _load() -> ModuleType:
    path = REPO / "roles" / "bringup_kubemaster" / "filter_plugins" / "kube_plugins.py"
    spec = importlib.util.spec_from_file_location("bringup_kubemaster_kube_plugins", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FILTER = _load()


@pytest.mark.parametrize(("selection", "plugins"), [
    (["intel-gpu-plugin"], DEFAULT),                                   # role default: names
    (["intelgpu"], DEFAULT),                                           # StarlingX 2023: label keys
    ({"intel-gpu-plugin": "intelgpu=enabled"}, DEFAULT),               # StarlingX 2019: name -> label
    ({"intel-gpu-plugin": None}, DEFAULT),                             # dict without label: catalog's
    ({"intel-gpu-plugin": "intelgpu="}, {"intel-gpu-plugin": "intelgpu="}),   # empty value is legal
    (None, {}), ([], {}), ({}, {}),
])
def test_accepted_forms(selection: Any, plugins: dict[str, str]) -> None:
    assert FILTER.normalize(selection, CATALOG) == {"plugins": plugins, "errors": []}


def test_allowed_label_keys_extend_the_plugins_own() -> None:
    selection = {"intel-gpu-plugin": "gpu.intel.com/node=yes"}
    assert FILTER.normalize(selection, CATALOG, ["gpu.intel.com/node"]) == {
        "plugins": {"intel-gpu-plugin": "gpu.intel.com/node=yes"}, "errors": []}
    assert "neither the plugin's ('intelgpu') nor in bringup_kubemaster_allowed_label_keys" in \
        FILTER.normalize(selection, CATALOG)["errors"][0]


@pytest.mark.parametrize("label", ["kubernetes.io/hostname=x", "node-role.kubernetes.io/master=",
                                   "node.kubernetes.io/instance-type=big", "k8s.io/x=y",
                                   "topology.k8s.io/zone=z", "node-role=x"])
def test_kubernetes_label_keys_refused_even_when_allowed(label: str) -> None:
    key = label.split("=")[0]
    result = FILTER.normalize({"intel-gpu-plugin": label}, CATALOG, [key])
    assert result["plugins"] == {}
    assert any(f"label key {key!r} belongs to Kubernetes" in e for e in result["errors"]), result
    assert any("bringup_kubemaster_allowed_label_keys" in e and key in e for e in result["errors"])


@pytest.mark.parametrize(("path", "socket", "problem"), [
    ("/run/../etc/x.sock", True, "'..' component"),
    ("/run/./x.sock", True, "'.' or '..' component"),
    ("/run/xpumd/..", True, "'..' component"),
    ("run/x.sock", True, "not absolute"),
    ("/x.sock", True, "not below a directory other than /"),
    ("/run//x.sock", True, "empty component"),
    ("/run/x/", True, "empty component"),
    ("/run/" + "x" * 110, True, "at most 107"),
    ("/etc/kubernetes/../../tmp", False, "'..' component"),
    ("relative/dir", False, "not absolute"),
])
def test_path_error_names_the_problem(path: str, socket: bool, problem: str) -> None:
    error = FILTER.path_error(path, "some_var", socket)
    assert error is not None and problem in error and error.startswith("some_var ")


@pytest.mark.parametrize(("path", "socket"), [("/run/xpumd/intelxpuinfo.sock", True),
                                              ("/etc/kubernetes", False), ("/a..b/c.sock", True),
                                              ("/", False)])
def test_path_error_accepts_plain_paths(path: str, socket: bool) -> None:
    assert FILTER.path_error(path, "v", socket) is None


@pytest.mark.parametrize(("selection", "message"), [
    (["intel-qat-plugin"], "unknown plugin 'intel-qat-plugin' (known: intel-gpu-plugin)"),
    (["intel-gpu-plugin", "intelgpu"],
     "plugin 'intelgpu' is selected more than once (as 'intel-gpu-plugin')"),
    ({"intel-gpu-plugin": "intelgpu"}, "label 'intelgpu' must be one key=value Kubernetes label"),
    ({"intel-gpu-plugin": "a=b=c"}, "must be one key=value"),
    ({"intel-gpu-plugin": "-bad=x"}, "label key '-bad' is not a valid Kubernetes label key"),
    ({"intel-gpu-plugin": "k" * 64 + "=x"}, "is not a valid Kubernetes label key"),
    ({"intel-gpu-plugin": "Bad_Prefix/k=x"}, "label key prefix 'Bad_Prefix' is not a DNS subdomain"),
    ({"intel-gpu-plugin": "k=has space"}, "label value 'has space' is not a valid Kubernetes label value"),
    ({"intel-gpu-plugin": 5}, "label 5 must be one key=value"),
    ("intel-gpu-plugin", "must be a list or a dict"),
])
def test_rejections_name_the_entry(selection: Any, message: str) -> None:
    result = FILTER.normalize(selection, CATALOG)
    assert len(result["errors"]) == 1 and message in result["errors"][0], result
    assert result["plugins"] == ({"intel-gpu-plugin": "intelgpu=enabled"}
                                 if isinstance(selection, list) and len(selection) == 2 else {})
