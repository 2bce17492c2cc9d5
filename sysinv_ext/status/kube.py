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
from sysinv_ext.common import kubeconfig as kubeconfig_check
from sysinv_ext.status.rows import RESOURCE_PREFIX, NodeView

MAX_BODY = 256 * 1024 * 1024  # bytes of a node LIST answer (5,000 nodes are about 50 MB)


def parse_count(quantity: object) -> int:
    """A device plugin resource quantity ("2", "0") as an int; anything else counts as 0."""
    try:
        return max(0, int(str(quantity)))
    except ValueError:
        return 0


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def node_view(obj: Mapping[str, Any]) -> NodeView:
    """A node as the status rows need it; fields of the wrong type count as absent."""
    meta = _mapping(obj.get("metadata"))
    status = _mapping(obj.get("status"))
    allocatable = _mapping(status.get("allocatable"))
    return NodeView(name=str(meta.get("name", "")),
                    system_uuid=str(_mapping(status.get("nodeInfo")).get("systemUUID") or "").strip().lower(),
                    labels={str(k): str(v) for k, v in _mapping(meta.get("labels")).items()},
                    allocatable={str(k): parse_count(v) for k, v in allocatable.items()
                                 if str(k).startswith(RESOURCE_PREFIX)})


def _short(text: object, limit: int = 200) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else type(text).__name__
    return line if len(line) <= limit else f"{line[:limit]}..."


def _read_body(response: Any, limit: int) -> bytes:
    """The raw response's body, at most ``limit`` bytes (ValueError beyond)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ValueError(f"answer larger than {limit} bytes")
        chunks.append(chunk)


def list_nodes(kubeconfig: str, *, context: str | None = None, timeout: float = 5.0,
               max_body: int = MAX_BODY) -> list[NodeView]:
    """Every node with one LIST; raises KubeAPIError (one line) for anything but a node list.

    The kubeconfig is checked with limits first (``common.kubeconfig``: no aliases, bounded
    depth and size). ``timeout`` bounds the connection and each read; a server that trickles
    its answer is bounded by the command's overall deadline, the body by ``max_body`` bytes.
    """
    configuration = k8s_client.Configuration()
    try:
        kubeconfig_check.check_file(kubeconfig)
        k8s_config.load_kube_config(config_file=kubeconfig, context=context,  # type: ignore[no-untyped-call]
                                    client_configuration=configuration, persist_config=False)
    except (ConfigException, OSError, ValueError, TypeError, AttributeError, KeyError,
            RecursionError) as err:
        raise exception.KubeAPIError(action=f"load kubeconfig {kubeconfig}",
                                     reason=_short(err)) from err
    configuration.retries = 0
    with k8s_client.ApiClient(configuration) as api:
        try:
            response: Any = k8s_client.CoreV1Api(api).list_node(_preload_content=False,
                                                                 _request_timeout=timeout)
            try:
                body = json.loads(_read_body(response, max_body))
            finally:
                response.release_conn()
        except ApiException as err:
            raise exception.KubeAPIError(action="list nodes",
                                         reason=f"HTTP {err.status} {_short(err.reason)}") from err
        except RecursionError as err:
            raise exception.KubeAPIError(action="list nodes",
                                         reason="answer nested too deep to be a node list") from err
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as err:
            raise exception.KubeAPIError(action="list nodes", reason=_short(err)) from err
    items = (body.get("items") or []) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise exception.KubeAPIError(action="list nodes", reason="the answer is not a node list "
                                     f"(a JSON {type(body).__name__} without an items list)")
    return [node_view(item) for item in items if isinstance(item, Mapping)]
