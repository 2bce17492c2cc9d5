"""Least privilege, proven on the REAL kube-apiserver (RBAC authorizer v1.34.1).

The plugin's identity where it needs the API (``-resource-manager``: the ServiceAccount, ClusterRole
and binding of deployments/gpu_plugin/overlays/fractional_resources) can do its job, listing this
node's pods, and is refused (403) anything else. The conductor's identity is proven the same way
in test_whole_flow_cluster.py (it runs the flow with it).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from localcluster import LocalCluster

OVERLAY = (Path(__file__).resolve().parents[2] / "deployments" / "gpu_plugin" / "overlays"
           / "fractional_resources")


def test_resource_manager_identity_lists_pods_and_nothing_else(cluster: LocalCluster, tmp_path: Path) -> None:
    for manifest in ("serviceaccount.yaml", "clusterrole.yaml", "clusterrolebinding.yaml"):
        cluster.kubectl("apply", "--validate=strict", "-n", "kube-system", "-f", str(OVERLAY / manifest))
    token = cluster.kubectl("create", "token", "intel-device-plugin", "-n", "kube-system",
                            "--duration=1h").stdout.strip()
    api = k8s_config.new_client_from_config(
        config_file=str(cluster.token_kubeconfig(tmp_path / "plugin.kubeconfig", token)))
    core = k8s.CoreV1Api(api)
    # its job: this node's pods, as gpu_plugin/rm/kube.py asks for them
    pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={cluster.node_name}")
    assert pods.items is not None
    forbidden: list[tuple[str, Callable[[], Any]]] = [
        ("delete a node", lambda: core.delete_node(cluster.node_name)),
        ("read a secret", lambda: core.list_namespaced_secret("kube-system")),
        ("patch a pod", lambda: core.patch_namespaced_pod("any", "default",
                                                          {"metadata": {"labels": {"a": "b"}}})),
        ("label a node", lambda: core.patch_node(cluster.node_name, {"metadata": {"labels": {"a": "b"}}})),
        ("read a pod by name", lambda: core.read_namespaced_pod("any", "default")),
        ("watch pods", lambda: core.list_pod_for_all_namespaces(watch=True, timeout_seconds=1)),
    ]
    for what, call in forbidden:
        with pytest.raises(k8s.ApiException) as err:
            call()
        assert err.value.status == 403, f"{what}: {err.value.status} {err.value.reason}"
    # kubelet's /pods through nodes/proxy is allowed by the role (tried first by the plugin)
    review = cluster.kubectl("auth", "can-i", "get", "nodes/proxy", "--as",
                             "system:serviceaccount:kube-system:intel-device-plugin", check=False)
    assert review.stdout.strip() == "yes"
