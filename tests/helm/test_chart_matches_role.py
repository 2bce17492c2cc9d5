"""The chart and the bootstrap role render the same objects for the same settings.

Each case is a set of role variables (roles/bringup_kubemaster/defaults/main.yml names);
``chart_values`` translates them to chart values; both are rendered (the role's template with
ansible's Templar as tests/ansible/test_template_matches_base.py does, the chart with the real
helm into kube-system) and compared object by object: ServiceAccount, RBAC, DaemonSet, whole,
but for the Helm convention labels the chart adds to each object's metadata.
"""

from __future__ import annotations

import posixpath
from typing import Any

import pytest
import yaml

from tests.ansible.test_template_matches_base import ROLE, render_all
from tests.helm.chart import template, without_helm_labels

ROLE_DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def chart_values(role: dict[str, Any]) -> dict[str, Any]:
    """Role variables (defaults + ``role``) -> the chart values meaning the same."""
    v = ROLE_DEFAULTS | {"plugin_label_key": "intelgpu", "plugin_label_value": "enabled"} | role

    def hub(image_name: str) -> str:
        parts = [p for p in (v["bringup_kubemaster_gpu_image_registry"], posixpath.dirname(image_name)) if p]
        return "/".join(parts)

    name = v["bringup_kubemaster_gpu_image_name"]
    lz_name = v["bringup_kubemaster_gpu_levelzero_image_name"]
    xpumd = v["bringup_kubemaster_gpu_xpumd_endpoint"]
    health = {
        "source": "levelzero"
        if v["bringup_kubemaster_gpu_health_management"]
        else "xpumd"
        if xpumd
        else "none",
        "levelzero": {
            "image": {
                "hub": hub(lz_name),
                "name": posixpath.basename(lz_name),
                "tag": v["bringup_kubemaster_gpu_levelzero_image_tag"],
            }
        },
    }
    if xpumd:
        health["xpumd"] = {
            "endpoint": xpumd,
            "severityLimit": v.get("bringup_kubemaster_gpu_xpumd_severity_limit", "critical"),
        }
    port = int(v["bringup_kubemaster_gpu_metrics_port"])
    return {
        "image": {
            "hub": hub(name),
            "name": posixpath.basename(name),
            "tag": v["bringup_kubemaster_gpu_image_tag"],
            "digest": v["bringup_kubemaster_gpu_image_digest"],
            "pullPolicy": v["bringup_kubemaster_gpu_image_pull_policy"],
        },
        "imagePullSecrets": [{"name": s} for s in v["bringup_kubemaster_gpu_image_pull_secrets"]],
        "sharedDevNum": v["bringup_kubemaster_gpu_shared_dev_num"],
        "allocationPolicy": v["bringup_kubemaster_gpu_allocation_policy"],
        "enableMonitoring": v["bringup_kubemaster_gpu_enable_monitoring"],
        "monitoringMode": v["bringup_kubemaster_gpu_monitoring_mode"],
        "resourceManager": v["bringup_kubemaster_gpu_resource_manager"],
        "logLevel": v["bringup_kubemaster_gpu_verbosity"],
        "health": health,
        "metrics": {"enabled": port > 0, "port": port or 9433},
        "nodeSelector": {v["plugin_label_key"]: v["plugin_label_value"], "kubernetes.io/arch": "amd64"},
        "tolerations": v["bringup_kubemaster_gpu_tolerations"],
    }


CASES = {
    "defaults": {},
    "no tolerations": {"bringup_kubemaster_gpu_tolerations": []},
    "monitoring split": {
        "bringup_kubemaster_gpu_enable_monitoring": True,
        "bringup_kubemaster_gpu_monitoring_mode": "split",
    },
    "levelzero health": {
        "bringup_kubemaster_gpu_health_management": True,
        "bringup_kubemaster_gpu_verbosity": 3,
    },
    "xpumd health": {"bringup_kubemaster_gpu_xpumd_endpoint": "/var/run/xpum/health.sock"},
    "fractional resources": {
        "bringup_kubemaster_gpu_resource_manager": True,
        "bringup_kubemaster_gpu_shared_dev_num": 300,
        "bringup_kubemaster_gpu_enable_monitoring": True,
    },
    "metrics": {
        "bringup_kubemaster_gpu_metrics_port": 9500,
        "bringup_kubemaster_gpu_allocation_policy": "packed",
    },
    "starlingx registry": {
        "bringup_kubemaster_gpu_image_registry": "registry.local:9001",
        "bringup_kubemaster_gpu_image_digest": "sha256:" + "a" * 64,
        "bringup_kubemaster_gpu_image_pull_secrets": ["default-registry-key"],
        "bringup_kubemaster_gpu_image_pull_policy": "Always",
        "bringup_kubemaster_gpu_health_management": True,
        "plugin_label_key": "gpu.example.com/intel",
        "plugin_label_value": "yes",
    },
}


def _objects(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): without_helm_labels(d) for d in docs}


#: the role passes -xpumd-severity-limit with the endpoint once the plugin branch (3a0e5a1) is
#: merged; before, the role has no such variable and relies on the plugin's default (critical)
ROLE_HAS_SEVERITY = "xpumd-severity-limit" in (ROLE / "templates" / "intel-gpu-plugin.yaml.j2").read_text()
if ROLE_HAS_SEVERITY:
    CASES["xpumd health, warnings unhealthy"] = {
        "bringup_kubemaster_gpu_xpumd_endpoint": "/run/xpumd/intelxpuinfo.sock",
        "bringup_kubemaster_gpu_xpumd_severity_limit": "warning",
    }


def _without_default_severity(objs: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The chart's explicit -xpumd-severity-limit=critical, for a role that leaves it to the default."""
    for c in objs[("DaemonSet", "intel-gpu-plugin")]["spec"]["template"]["spec"]["containers"]:
        c["args"] = [a for a in c["args"] if a != "-xpumd-severity-limit=critical"]


@pytest.mark.parametrize("role_vars", list(CASES.values()), ids=list(CASES))
def test_chart_renders_the_roles_objects(helm: str, role_vars: dict[str, Any]) -> None:
    role = _objects(render_all(**role_vars))
    chart = _objects(template(helm, chart_values(role_vars), namespace="kube-system"))
    if not ROLE_HAS_SEVERITY:
        _without_default_severity(chart)
    assert sorted(chart) == sorted(role)
    for key in role:
        assert chart[key] == role[key], key


def test_comparison_sees_a_difference(helm: str) -> None:
    """The comparison is not vacuous: one differing setting makes the objects differ."""
    role = _objects(render_all())
    chart = _objects(template(helm, chart_values({"bringup_kubemaster_gpu_shared_dev_num": 2})))
    assert chart[("DaemonSet", "intel-gpu-plugin")] != role[("DaemonSet", "intel-gpu-plugin")]


def test_chart_defaults_are_the_roles_defaults(helm: str) -> None:
    """values.yaml as shipped = the role's defaults, but for tolerations: the role tolerates the
    controllers' taints by default, the chart only where sysinv's overrides (all-in-one) add them."""
    role = _objects(render_all())
    chart = _objects(template(helm, {"tolerations": ROLE_DEFAULTS["bringup_kubemaster_gpu_tolerations"]}))
    assert chart == role
