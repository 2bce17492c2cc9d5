"""The role's DaemonSet template and deployments/gpu_plugin describe the same plugin pod.

Renders roles/bringup_kubemaster/templates/intel-gpu-plugin.yaml.j2 with ansible's own Templar
and the role defaults, builds the kustomize base and overlays with the machine's kubectl, and
compares flags, mounts, hostPaths, securityContext, image and nodeSelector (StarlingX's label aside).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from tests.ansible.runner import REPO

ROLE = REPO / "roles" / "bringup_kubemaster"
DEPLOYMENTS = REPO / "deployments" / "gpu_plugin"
KUBECTL = shutil.which("kubectl")


def render(**overrides: Any) -> dict[str, Any]:
    """The role's DaemonSet with the role defaults plus ``overrides``."""
    variables = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    variables.update(plugin_label_key="intelgpu", plugin_label_value="enabled", ansible_managed="managed")
    variables.update(overrides)
    source = (ROLE / "templates" / "intel-gpu-plugin.yaml.j2").read_text()
    text = Templar(loader=DataLoader(), variables=variables).template(trust_as_template(source))
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert [d["kind"] for d in docs] == ["ServiceAccount", "DaemonSet"]
    assert all(d["metadata"]["namespace"] == "kube-system" for d in docs)
    return docs[1]


def build(path: Path) -> dict[str, Any]:
    """``kubectl kustomize path`` (or the plain base file without kubectl) -> the DaemonSet."""
    if KUBECTL is None:
        return yaml.safe_load((DEPLOYMENTS / "base" / "intel-gpu-plugin.yaml").read_text())
    out = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    (ds,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "DaemonSet"]
    return ds


def essentials(ds: dict[str, Any]) -> dict[str, Any]:
    pod = ds["spec"]["template"]["spec"]
    return {
        "updateStrategy": ds["spec"]["updateStrategy"],
        "automountServiceAccountToken": pod.get("automountServiceAccountToken"),
        "nodeSelector": {k: v for k, v in pod["nodeSelector"].items() if k != "intelgpu"},
        "containers": [{key: c.get(key) for key in ("name", "image", "args", "env", "securityContext",
                                                     "resources", "imagePullPolicy")}
                       | {"volumeMounts": sorted(c["volumeMounts"], key=lambda m: m["name"])}
                       for c in pod["containers"]],
        "volumes": sorted(pod["volumes"], key=lambda v: v["name"]),
    }


def test_defaults_match_the_kustomize_base() -> None:
    role, base = render(), build(DEPLOYMENTS)
    assert essentials(role) == essentials(base)
    pod = role["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["intelgpu"] == "enabled"  # StarlingX's label, set by sysinv
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
            "effect": "NoSchedule"} in pod["tolerations"]
    (plugin,) = pod["containers"]
    assert plugin["args"] == ["-shared-dev-num=1", "-allocation-policy=none"]
    security = plugin["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in security
    mounts = {m["mountPath"]: m.get("readOnly", False) for m in plugin["volumeMounts"]}
    assert mounts == {"/dev/dri": True, "/sys": True, "/var/lib/kubelet/device-plugins": False,
                      "/var/run/cdi": False}
    assert "/dev" not in {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
@pytest.mark.parametrize(("overlay", "overrides"), [
    ("monitoring", {"bringup_kubemaster_gpu_enable_monitoring": True}),
    ("health", {"bringup_kubemaster_gpu_health_management": True}),
])
def test_overlays_match_the_role_options(overlay: str, overrides: dict[str, Any]) -> None:
    assert essentials(render(**overrides)) == essentials(build(DEPLOYMENTS / "overlays" / overlay))


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
def test_nfd_overlay_selects_nfd_labelled_nodes() -> None:
    pod = build(DEPLOYMENTS / "overlays" / "nfd_labeled_nodes")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"intel.feature.node.kubernetes.io/gpu": "true",
                                   "kubernetes.io/arch": "amd64"}
    assert "-enable-monitoring" in pod["containers"][0]["args"]


def test_image_digest_registry_and_pull_secrets() -> None:
    digest = "sha256:" + "a" * 64
    ds = render(bringup_kubemaster_gpu_image_registry="registry.local:9001",
                bringup_kubemaster_gpu_image_digest=digest,
                bringup_kubemaster_gpu_image_pull_secrets=["default-registry-key"],
                plugin_label_key="gpu.example.com/intel", plugin_label_value="yes")
    pod = ds["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"registry.local:9001/intel/intel-gpu-plugin:0.1.0@{digest}"
    assert pod["imagePullSecrets"] == [{"name": "default-registry-key"}]
    assert pod["nodeSelector"] == {"gpu.example.com/intel": "yes", "kubernetes.io/arch": "amd64"}
