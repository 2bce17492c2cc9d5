"""Kubernetes side of the demo, through the official ``kubernetes`` client over HTTP.

Reads node labels and the applied DaemonSet, decides whether the DaemonSet would schedule on the
node (its nodeSelector against the node's labels: this is the EMULATED part of "the DaemonSet
schedules the plugin"), turns the DaemonSet's container args into a local command line, and
patches the node's status.allocatable the way kubelet does.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

#: Flags the demo points at its temp dirs; any value the DaemonSet gives them is replaced.
LOCAL_PATH_FLAGS = ("sysfs-root", "devfs-root", "kubelet-dir")


def api_client(kubeconfig: Path) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))


def node_labels(api: k8s.ApiClient, node: str) -> dict[str, str]:
    return dict(k8s.CoreV1Api(api).read_node(node).metadata.labels or {})


def read_daemonset(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The DaemonSet as the API server holds it, as a plain dict (camelCase keys)."""
    obj = k8s.AppsV1Api(api).read_namespaced_daemon_set(name, namespace)
    return api.sanitize_for_serialization(obj)  # type: ignore[no-any-return]


def node_selector(daemonset: Mapping[str, Any]) -> dict[str, str]:
    return dict(daemonset.get("spec", {}).get("template", {}).get("spec", {}).get("nodeSelector") or {})


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """nodeSelector semantics: every key present with exactly that value (an empty selector matches)."""
    return all(labels.get(key) == value for key, value in selector.items())


def plugin_container(daemonset: Mapping[str, Any]) -> dict[str, Any]:
    """The first container of the pod template (the plugin; upstream's DaemonSet has one)."""
    containers = daemonset.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    if not containers:
        raise ValueError("DaemonSet has no containers")
    return dict(containers[0])


def local_args(container_args: Sequence[str], overrides: Mapping[str, str]) -> list[str]:
    """The container's args with every flag named in ``overrides`` replaced by the given value.

    Accepts the plugin's flag forms: ``-flag value``, ``-flag=value``, single or double dash.
    """
    out: list[str] = []
    skip_next = False
    for arg in container_args:
        if skip_next:
            skip_next = False
            continue
        name, has_value, _ = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name in overrides:
            skip_next = not has_value
            continue
        out.append(arg)
    for name, value in overrides.items():
        out += [f"-{name}", value]
    return out


def set_allocatable(api: k8s.ApiClient, node: str, resources: Mapping[str, int]) -> dict[str, str]:
    """Patch status.capacity/allocatable like kubelet does after a plugin registers; return the
    allocatable map read back from the API server."""
    values = {name: str(count) for name, count in resources.items()}
    core = k8s.CoreV1Api(api)
    core.patch_node_status(node, {"status": {"capacity": values, "allocatable": values}})
    return dict(core.read_node(node).status.allocatable or {})
