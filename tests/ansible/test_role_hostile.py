"""Hostile role input, in one real ansible-playbook run of playbooks/bootstrap.yml: label keys
Kubernetes owns, a key the plugin does not own, ``..`` in the xpumd endpoint and in the manifest
and platform directories, a file group that does not exist. Each fails in preflight, naming what
is wrong, before any change: no manifest, no kubectl apply, no enabled_kube_plugins.
kubectl is the machine's real /usr/bin/kubectl against tests/fakes/kube_api.py (one per case).
"""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.runner import PlayResult, host_vars, run_playbook, write_inventory
from tests.fakes.kube_api import FakeKubeAPI

pytestmark = [pytest.mark.ansible,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")]

WRITES = ("POST", "PUT", "PATCH", "DELETE")
# case -> (variables, fragments its failure message must contain)
CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "hostname": ({"import_plugins": True, "kube_plugins": {"intel-gpu-plugin": "kubernetes.io/hostname=x"}},
                 ["label key 'kubernetes.io/hostname' belongs to Kubernetes"]),
    "noderole": ({"k8s_plugins": {"intel-gpu-plugin": "node-role.kubernetes.io/master="}},
                 ["label key 'node-role.kubernetes.io/master' belongs to Kubernetes"]),
    "list2023": ({"k8s_plugins": ["intelgpu", "kubernetes.io/hostname", "node-role.kubernetes.io/master"]},
                 ["unknown plugin 'kubernetes.io/hostname'",
                  "unknown plugin 'node-role.kubernetes.io/master'"]),
    "foreignkey": ({"import_plugins": True, "kube_plugins": {"intel-gpu-plugin": "team.example.com/gpu=yes"}},
                   ["label key 'team.example.com/gpu' is neither the plugin's ('intelgpu') nor in "
                    "bringup_kubemaster_allowed_label_keys"]),
    "allowreserved": ({"import_plugins": True, "bringup_kubemaster_allowed_label_keys": ["kubernetes.io/os"],
                       "kube_plugins": {"intel-gpu-plugin": "kubernetes.io/os=linux"}},
                      ["bringup_kubemaster_allowed_label_keys: 'kubernetes.io/os' refused"]),
    "dotdotxpumd": ({"import_plugins": True, "bringup_kubemaster_gpu_xpumd_endpoint": "/run/../etc/x.sock"},
                    ["bringup_kubemaster_gpu_xpumd_endpoint must be an absolute socket path",
                     "has a '.' or '..' component: '/run/../etc/x.sock'"]),
    "dotxpumd": ({"import_plugins": True, "bringup_kubemaster_gpu_xpumd_endpoint": "/run/./xpumd/x.sock"},
                 ["has a '.' or '..' component"]),
    "dotdotmanifests": ({"import_plugins": True, "kube_plugin_manifest_dir": "@/manifests/../../escaped"},
                        ["kube_plugin_manifest_dir has a '.' or '..' component"]),
    "dotdotconf": ({"import_plugins": True, "platform_conf_dir": "@/etc-platform/../etc-platform"},
                   ["platform_conf_dir has a '.' or '..' component"]),
    "nogroup": ({"import_plugins": True, "bringup_kubemaster_file_group": "no-such-group-i11s"},
                ["bringup_kubemaster_file_group no-such-group-i11s is not a group on this host"]),
}


def _plugins_file(case_dir: Path) -> Path:
    return case_dir / "etc-platform" / "enabled_kube_plugins"


Run = tuple[Path, dict[str, FakeKubeAPI], PlayResult]
GOOD = {"import_plugins": True, "bringup_kubemaster_file_group": "root"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp_path = tmp_path_factory.mktemp("hostile-role")
    with ExitStack() as stack:
        apis: dict[str, FakeKubeAPI] = {}
        hosts = {}
        for name, (overrides, _) in {**CASES, "good": (GOOD, [])}.items():
            case_dir = tmp_path / name
            case_dir.mkdir()
            apis[name] = stack.enter_context(FakeKubeAPI())
            values = {k: (v.replace("@", str(case_dir)) if isinstance(v, str) and v.startswith("@") else v)
                      for k, v in overrides.items()}
            hosts[name] = host_vars(case_dir, apis[name].write_kubeconfig(case_dir / "kubeconfig"), **values)
        result = run_playbook(write_inventory(tmp_path / "inventory.yml", hosts), workdir=tmp_path)
        yield tmp_path, apis, result


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_role_input_fails_in_preflight_before_any_change(
        run: Run, name: str) -> None:
    tmp_path, apis, result = run
    failures = result.failures(name)
    assert result.recap[name]["failed"] == 1, result.stdout[-3000:]
    for fragment in CASES[name][1]:
        assert fragment in failures, failures
    assert "Check the plugin selection" in result.stdout.split(f"fatal: [{name}]")[0].rsplit("TASK [", 1)[-1]
    assert result.recap[name]["changed"] == 0
    assert not (tmp_path / name / "manifests").exists() and not (tmp_path / "escaped").exists()
    assert not _plugins_file(tmp_path / name).exists()
    assert [r for r in apis[name].requests if r.method in WRITES] == []


def test_known_group_and_own_label_key_still_deploy(
        run: Run) -> None:
    tmp_path, apis, result = run
    assert result.recap["good"]["failed"] == 0, result.failures("good")
    path = _plugins_file(tmp_path / "good")
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o640 and path.stat().st_gid == 0
