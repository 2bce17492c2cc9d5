"""The status command's read-only view of the nodes: one LIST, labels and ``gpu.intel.com/*``.

Kept apart from ``conductor.kube`` (the conductor's read-write client with retries, watch and
cache) because the command only reads, once, and needs ``status.allocatable`` that the
conductor never looks at. ``ApiException`` and connection errors become ``KubeAPIError``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from sysinv_ext.common import exception
from sysinv_ext.status.rows import RESOURCE_PREFIX, NodeView


def parse_count(quantity: object) -> int:
    """A device plugin resource quantity ("2", "0") as an int; anything else counts as 0."""
    try:
        return max(0, int(str(quantity)))
    except ValueError:
        return 0


def node_view(obj: Mapping[str, Any]) -> NodeView:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    allocatable = status.get("allocatable") or {}
    return NodeView(name=str(meta.get("name", "")),
                    system_uuid=str((status.get("nodeInfo") or {}).get("systemUUID") or "").strip().lower(),
                    labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
                    allocatable={str(k): parse_count(v) for k, v in allocatable.items()
                                 if str(k).startswith(RESOURCE_PREFIX)})


def list_nodes(kubeconfig: str, *, context: str | None = None, timeout: float = 5.0) -> list[NodeView]:
    """Every node with one LIST; raises KubeAPIError."""
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config(config_file=kubeconfig, context=context,  # type: ignore[no-untyped-call]
                                    client_configuration=configuration, persist_config=False)
    except (ConfigException, OSError, ValueError, TypeError) as err:
        raise exception.KubeAPIError(action=f"load kubeconfig {kubeconfig}", reason=str(err)) from err
    configuration.retries = 0
    with k8s_client.ApiClient(configuration) as api:
        try:
            response: Any = k8s_client.CoreV1Api(api).list_node(_preload_content=False,
                                                                 _request_timeout=timeout)
            try:
                body = json.loads(response.data)
            finally:
                response.release_conn()
        except ApiException as err:
            raise exception.KubeAPIError(action="list nodes",
                                         reason=f"HTTP {err.status} {err.reason}") from err
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as err:
            raise exception.KubeAPIError(action="list nodes", reason=str(err)) from err
    return [node_view(item) for item in (body.get("items") or []) if isinstance(item, Mapping)]
