"""The pods of this node, from kubelet's HTTPS API or the Kubernetes API server (upstream's rules).

Upstream's resource manager lists pods from kubelet (``https://HOST_IP:10250/pods``, service
account token, kubelet's serving cert) while that works, and falls back for good to the API
server (``GET /api/v1/pods?fieldSelector=spec.nodeName=NODE``, official client, in-cluster config
or a kubeconfig file) after a non-timeout error or 5 timeouts in a row.
"""
from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
from typing import Any

from gpu_plugin.rm.gas import Pod

LOG = logging.getLogger(__name__)

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
KUBELET_CERT = "/var/lib/kubelet/pki/kubelet.crt"
KUBELET_PORT = 10250
KUBELET_API_TIMEOUT = 5.0
KUBELET_API_MAX_RETRIES = 5
API_TIMEOUT = 10.0


class PodListError(Exception):
    """Pods could not be listed."""


class _Timeout(PodListError):
    """The kubelet API did not answer in time (retried)."""


def _only_node(items: list[Any], node_name: str) -> list[Pod]:
    return [Pod.from_json(o) for o in items if isinstance(o, dict)
            and (not node_name or (o.get("spec") or {}).get("nodeName") == node_name)]


class ApiServerPods:
    """Pods bound to ``node_name`` from the API server through the official ``kubernetes`` client."""

    def __init__(self, node_name: str, kubeconfig: str | None = None, timeout: float = API_TIMEOUT) -> None:
        from kubernetes import client, config  # only needed with -resource-manager

        configuration = client.Configuration()
        if kubeconfig:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        self.node_name = node_name
        self.timeout = timeout
        self._api = client.CoreV1Api(client.ApiClient(configuration))

    def list(self) -> list[Pod]:
        from kubernetes.client.exceptions import ApiException

        try:
            reply = self._api.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={self.node_name}", _preload_content=False,
                _request_timeout=self.timeout)
            body = json.loads(reply.data)  # type: ignore[attr-defined]  # raw urllib3 response
        except ApiException as err:
            raise PodListError(f"pod listing failed: HTTP {err.status} {err.reason}") from None
        except Exception as err:  # urllib3 errors (refused, timeouts), garbage JSON
            raise PodListError(f"pod listing failed: {err!r}") from None
        return _only_node(body.get("items") or [], self.node_name)


class KubeletPods:
    """Pods from kubelet's read-only-by-token HTTPS ``/pods`` endpoint (needs ``nodes/proxy`` get)."""

    def __init__(self, host_ip: str, node_name: str, *, token_path: str = SERVICE_ACCOUNT_TOKEN,
                 cert_path: str = KUBELET_CERT, port: int = KUBELET_PORT,
                 timeout: float = KUBELET_API_TIMEOUT) -> None:
        self.host_ip, self.node_name, self.port, self.timeout = host_ip, node_name, port, timeout
        self.token_path, self.cert_path = token_path, cert_path

    def list(self) -> list[Pod]:
        try:
            with open(self.token_path, encoding="utf-8") as f:
                token = f.read().strip()
            context = ssl.create_default_context(cafile=self.cert_path)
        except (OSError, ssl.SSLError) as err:
            raise PodListError(f"kubelet API credentials: {err}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # TLS by hand: the cert names the node, not the IP (upstream sets ServerName: nodeName).
        conn = http.client.HTTPConnection(self.host_ip, self.port, timeout=self.timeout)
        try:
            raw = socket.create_connection((self.host_ip, self.port), timeout=self.timeout)
            try:
                conn.sock = context.wrap_socket(raw, server_hostname=self.node_name)
            except BaseException:
                raw.close()
                raise
            conn.request("GET", "/pods", headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise PodListError(f"kubelet API /pods: HTTP {resp.status}")
            items = json.loads(body).get("items") or []
        except TimeoutError as err:
            raise _Timeout(f"kubelet API timeout: {err}") from None
        except (OSError, ValueError, http.client.HTTPException) as err:
            raise PodListError(f"kubelet API: {err}") from None
        finally:
            conn.close()
        return _only_node(items, "")


class NodePods:
    """Upstream's listPods: kubelet API while it works, else the API server (for good)."""

    def __init__(self, api_server: ApiServerPods | Any, kubelet: KubeletPods | Any | None = None) -> None:
        self.api_server = api_server
        self.kubelet = kubelet
        self._lock = threading.Lock()
        self.use_kubelet = False
        if kubelet is not None:
            try:
                kubelet.list()
                self.use_kubelet = True
                LOG.debug("Using Kubelet API")
            except PodListError as err:
                LOG.debug("Not using Kubelet API: %s", err)

    def list(self) -> list[Pod]:
        """This node's pods; raises :class:`PodListError`."""
        with self._lock:
            use_kubelet = self.use_kubelet
        if use_kubelet and self.kubelet is not None:
            for _ in range(KUBELET_API_MAX_RETRIES):
                try:
                    return list(self.kubelet.list())
                except _Timeout:
                    continue
                except PodListError as err:
                    LOG.warning("Failed to read pods from kubelet API: %s", err)
                    break
            LOG.warning("Stopping Kubelet API use due to error/timeout")
            with self._lock:
                self.use_kubelet = False
        return list(self.api_server.list())

    def with_phases(self, phases: tuple[str, ...]) -> dict[str, Pod]:
        """Pods in one of ``phases`` by key; empty (logged) when listing fails, as upstream."""
        try:
            pods = self.list()
        except PodListError as err:
            LOG.error("pod listing failed: %s", err)
            return {}
        return {p.key: p for p in pods if p.phase in phases}
