"""The DRA plugin's API-server access: ResourceSlices of its node, the claims it prepares, its Node.

The only module of the DRA plugin that imports the official ``kubernetes`` client.  The installed
client (37.x) has ``ResourceV1Api`` for ``resource.k8s.io/v1``; it is called with
``_preload_content=False`` and the JSON decoded here, so the plugin works on plain dicts and never
depends on how a client release models a young API when reading.  Request bodies are dicts too; this
client release validates them against its models (pydantic, unknown fields refused), which every
field we send passes (taints included: ``V1DeviceTaint`` is in the client).
"""
from __future__ import annotations

import json
import logging
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from gpu_plugin.dra.api import ApiError, Conflict, NotFound

LOG = logging.getLogger(__name__)

__all__ = ["KubeClient", "ApiError", "NotFound", "Conflict", "load_api_client"]


def load_api_client(kubeconfig: str | None) -> client.ApiClient:
    """A client from ``kubeconfig``, or the pod's service account when None/empty."""
    if kubeconfig:
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig)
        return api
    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        response = fn(*args, _preload_content=False, **kwargs)
    except ApiException as err:
        body = (err.body or b"")
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        try:
            message = json.loads(text).get("message", text)
        except ValueError:
            message = text
        kind = NotFound if err.status == 404 else Conflict if err.status == 409 else ApiError
        raise kind(f"{what}: {err.status} {str(message)[:300]}", err.status or 0) from None
    except Exception as err:  # urllib3/socket errors: no answer from the API server
        raise ApiError(f"{what}: {type(err).__name__}: {str(err)[:300]}") from None
    data = response.data
    return json.loads(data) if data else {}


class KubeClient:
    """The calls the DRA plugin makes, on plain JSON dicts."""

    def __init__(self, api_client: client.ApiClient, timeout: float = 10.0) -> None:
        self._resource = client.ResourceV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._timeout = timeout

    def list_slices(self, node: str, driver: str) -> list[dict[str, Any]]:
        selector = f"spec.nodeName={node},spec.driver={driver}"
        doc = _call("list ResourceSlices", self._resource.list_resource_slice,
                    field_selector=selector, _request_timeout=self._timeout)
        return list(doc.get("items") or [])

    def create_slice(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(_call("create ResourceSlice", self._resource.create_resource_slice, body,
                          _request_timeout=self._timeout))

    def replace_slice(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(_call(f"update ResourceSlice {name}", self._resource.replace_resource_slice, name, body,
                          _request_timeout=self._timeout))

    def delete_slice(self, name: str) -> None:
        _call(f"delete ResourceSlice {name}", self._resource.delete_resource_slice, name,
              _request_timeout=self._timeout)

    def node_uid(self, node: str) -> str:
        doc = _call(f"get Node {node}", self._core.read_node, node, _request_timeout=self._timeout)
        return str(doc["metadata"]["uid"])

    def get_claim(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(_call(f"get ResourceClaim {namespace}/{name}",
                          self._resource.read_namespaced_resource_claim, name, namespace,
                          _request_timeout=self._timeout))
