"""Kubernetes API access of the conductor; the only package that imports ``kubernetes``.

Owns: building the client from a kubeconfig, one LIST of nodes, a raw node WATCH, lookup by
systemUUID, label PATCHes (JSON merge patch: a value sets, ``None`` removes), Lease reads and
writes, and bounded retry with back-off on 5xx/429 and connection errors. ``ApiException``
never leaves this package: callers get ``NodeNotFound``, ``KubeAPIError`` or ``WatchExpired``
(original chained). Nodes are decoded from raw JSON (no model deserialization) so a LIST of
5,000 nodes stays cheap. ``cache`` (LIST + WATCH node cache) and ``lease`` (leader election)
build on this client.

Requests go through the official client's generic path, ``ApiClient.param_serialize`` +
``call_api`` (what every generated method ends in: the kubeconfig's host, TLS, token and proxy
apply unchanged), not through ``CoreV1Api``/``CoordinationV1Api``: loading those classes builds
pydantic validators for hundreds of methods (22 MB of the conductor's RSS, about 1 s at start)
and validates every call's arguments, for the six requests the conductor sends.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from oslo_config import cfg
from oslo_log import log as logging

from sysinv_ext.common import exception
from sysinv_ext.common import kubeconfig as kubeconfig_check

LOG = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
NODES_PATH = "/api/v1/nodes"
NODE_PATH = "/api/v1/nodes/{name}"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
T = TypeVar("T")
POOL_SIZE = 32  # concurrent requests (reports of different hosts, audit PATCHes, watch, lease)
TOKEN_CHECK_INTERVAL = 1.0  # s between two runs of the kubeconfig's token refresh hook


class ThrottledRefresh:
    """The kubeconfig loader's token refresh hook, run at most once per ``interval`` seconds.

    The official client runs ``refresh_api_key_hook`` before every request. For a token user
    it re-applies the whole kubeconfig entry to the configuration, and setting ``host`` there
    re-reads the proxy environment: about a fifth of the conductor's CPU per report. The hook
    reloads a token only once it is within 5 minutes of its expiry (the loader's
    EXPIRY_SKEW_PREVENTION_DELAY), so a check once a second renews it just as early. Client
    certificates (StarlingX's admin.conf) install no hook.
    """

    def __init__(self, hook: Callable[[Any], None], interval: float = TOKEN_CHECK_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._hook, self.interval, self._clock = hook, interval, clock
        self._last: float | None = None

    def __call__(self, configuration: Any) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        self._hook(configuration)


class WatchExpired(Exception):
    """The watch's resourceVersion is older than the server's history (410 Gone): re-LIST."""


@dataclass(frozen=True)
class Node:
    """What the conductor needs of a Kubernetes node. ``system_uuid`` is lower-cased."""

    name: str
    system_uuid: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    resource_version: str = ""

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Node:
        meta = obj.get("metadata") or {}
        info = (obj.get("status") or {}).get("nodeInfo") or {}
        labels = meta.get("labels") or {}
        return cls(name=str(meta.get("name", "")),
                   system_uuid=str(info.get("systemUUID") or "").strip().lower(),
                   labels=MappingProxyType({str(k): str(v) for k, v in labels.items()}),
                   resource_version=str(meta.get("resourceVersion") or ""))

    def newer_than(self, other: Node) -> bool:
        """True unless ``other`` is known to be a later version of the node (resourceVersions
        are opaque strings; etcd's are integers, compared as such when both parse)."""
        try:
            return int(self.resource_version) >= int(other.resource_version)
        except ValueError:
            return True


class _RawWatch(k8s_watch.Watch):
    """The client's watch without model deserialization: events carry the raw JSON dict."""

    def get_return_type(self, func: Any) -> None:
        return None


def warm_up() -> None:
    """Load the client classes the first request needs now rather than inside the first RPC
    (the package loads them lazily); no network access."""
    _ = k8s_client.ApiClient, k8s_client.Configuration


def index_by_system_uuid(nodes: Iterable[Node]) -> dict[str, Node]:
    """systemUUID (lower case) -> node; nodes without a systemUUID are left out."""
    return {node.system_uuid: node for node in nodes if node.system_uuid}


def find_node(nodes: Iterable[Node], system_uuid: str) -> Node | None:
    """The node whose systemUUID equals ``system_uuid`` (case-insensitive), or None."""
    wanted = system_uuid.strip().lower()
    return next((node for node in nodes if node.system_uuid == wanted), None)


def label_patch(labels: Mapping[str, str | None]) -> dict[str, Any]:
    """The merge-patch body setting (value) or removing (None) ``labels``."""
    return {"metadata": {"labels": dict(labels)}}


class KubeClient:
    """Thread-safe access to the node API. The client is built lazily, on first use, so a
    conductor starts (and keeps serving RPC) even while the kubeconfig is not there yet."""

    def __init__(self, kubeconfig: str, *, context: str | None = None, request_timeout: float = 5.0,
                 retry_attempts: int = 3, retry_backoff: float = 0.1,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.request_timeout = request_timeout
        self.retry_attempts = max(1, retry_attempts)
        self.retry_backoff = max(0.0, retry_backoff)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._api_client: k8s_client.ApiClient | None = None

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> KubeClient:
        group = conf.kubernetes
        return cls(group.kubeconfig, context=group.context, request_timeout=group.request_timeout,
                   retry_attempts=group.retry_attempts, retry_backoff=group.retry_backoff)

    # -- public API -------------------------------------------------------------------------
    def list_nodes(self) -> list[Node]:
        """All nodes, with one LIST request."""
        return self.list_nodes_at()[0]

    def list_nodes_at(self) -> tuple[list[Node], str]:
        """All nodes and the list's resourceVersion (where a watch starts), one LIST request."""
        def call() -> tuple[list[Node], str]:
            body = _json(self.request("GET", NODES_PATH))
            version = str((body.get("metadata") or {}).get("resourceVersion") or "")
            return [Node.from_dict(item) for item in body.get("items") or []], version
        return self._with_retry("list nodes", None, call)

    def watch_nodes(self, resource_version: str, timeout: int, *,
                    on_open: Callable[[Callable[[], None]], None] | None = None,
                    ) -> Iterator[tuple[str, Node]]:
        """(event type, node) from ``resource_version`` on, for at most ``timeout`` s (one
        WATCH request, no retry: the cache re-LISTs). Raises WatchExpired on 410 Gone and
        KubeAPIError on any other failure; a normal end of stream just ends the iterator.
        ``on_open`` receives a function that closes the stream from another thread."""
        watcher: Any = _RawWatch()  # type: ignore[no-untyped-call]

        def close() -> None:
            watcher.stop()
            response = getattr(watcher, "_resp", None)
            if response is not None:
                response.shutdown() if hasattr(response, "shutdown") else response.close()

        if on_open is not None:
            on_open(close)
        try:
            for event in watcher.stream(self._list_node, resource_version=resource_version,
                                        timeout_seconds=timeout,
                                        _request_timeout=(self.request_timeout, timeout + 10)):
                kind, obj = event.get("type"), event.get("object")
                if kind in ("ADDED", "MODIFIED", "DELETED") and isinstance(obj, dict):
                    yield str(kind), Node.from_dict(obj)
        except ApiException as err:
            if err.status == 410:
                raise WatchExpired(str(err.reason)) from err
            raise exception.KubeAPIError(action="watch nodes",
                                         reason=f"HTTP {err.status} {err.reason}") from err
        except (urllib3.exceptions.HTTPError, OSError, ValueError, KeyError, TypeError) as err:
            raise exception.KubeAPIError(action="watch nodes", reason=f"stream error: {err}") from err
        finally:
            watcher.stop()

    def find_node(self, system_uuid: str) -> Node | None:
        """The node with this systemUUID (one LIST), or None."""
        return find_node(self.list_nodes(), system_uuid)

    def get_node(self, name: str) -> Node:
        """Node ``name`` as it is now (one GET); raises NodeNotFound."""
        def call() -> Node:
            return Node.from_dict(_json(self.request("GET", NODE_PATH, path_params={"name": name})))
        return self._with_retry("read", name, call)

    def patch_node_labels(self, name: str, labels: Mapping[str, str | None], *,
                          deadline: float | None = None) -> Node:
        """Set (value) or remove (None) ``labels`` on node ``name``; returns the patched node.

        With ``deadline`` (``time.monotonic()``), no try starts after it and each waits at
        most until it (connect and read), so the call returns by then, answered or not."""
        body = label_patch(labels)

        def call() -> Node:
            timeout: Any = None
            if deadline is not None:
                left = max(0.05, min(self.request_timeout, deadline - time.monotonic()))
                timeout = (left, left)
            return Node.from_dict(_json(self.request("PATCH", NODE_PATH, path_params={"name": name},
                                                     body=body, content_type=MERGE_PATCH,
                                                     timeout=timeout)))
        return self._with_retry(f"patch labels {sorted(labels)}", name, call, deadline=deadline)

    def request(self, method: str, path: str, *, path_params: Mapping[str, str] | None = None,
                query: Sequence[tuple[str, Any]] = (), body: Any = None,
                content_type: str | None = None, timeout: Any = None) -> Any:
        """One request (no retry) through ``ApiClient.param_serialize`` + ``call_api``.

        ``path`` may hold ``{name}`` placeholders filled (quoted) from ``path_params``. Returns
        the raw urllib3 response of a 2xx answer, body unread (stream it or pass it to
        ``json_body``); raises ``ApiException`` (404: ``NotFoundException``) otherwise, as the
        generated methods do with ``_preload_content=False``.
        """
        api = self.api_client()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        method_, url, headers_, body_, post = api.param_serialize(
            method=method, resource_path=path, path_params=dict(path_params or {}),
            query_params=list(query), header_params=headers, body=body,
            auth_settings=["BearerToken"])
        response = api.call_api(method_, url, headers_, body_, post,
                                _request_timeout=self.request_timeout if timeout is None else timeout)
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    # -- internals --------------------------------------------------------------------------
    def _list_node(self, *, watch: bool = False, resource_version: str | None = None,
                   timeout_seconds: int | None = None, _request_timeout: Any = None,
                   _preload_content: bool = False) -> Any:
        """``list_node`` as ``Watch.stream`` calls it: the raw response of a node LIST/WATCH."""
        query: list[tuple[str, Any]] = [("watch", True)] if watch else []
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if timeout_seconds is not None:
            query.append(("timeoutSeconds", timeout_seconds))
        return self.request("GET", NODES_PATH, query=query, timeout=_request_timeout)

    def api_client(self) -> k8s_client.ApiClient:
        """The shared ApiClient, built from the kubeconfig on first use (KubeAPIError if the
        kubeconfig cannot be loaded; the next call tries again)."""
        with self._lock:
            if self._api_client is None:
                configuration = k8s_client.Configuration()
                try:
                    kubeconfig_check.check_file(self.kubeconfig)  # no aliases, bounded depth
                    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                        config_file=self.kubeconfig, context=self.context,
                        client_configuration=configuration, persist_config=False)
                except (ConfigException, OSError, ValueError, TypeError) as err:
                    raise exception.KubeAPIError(
                        action=f"load kubeconfig {self.kubeconfig}", reason=str(err)) from err
                configuration.retries = 0  # our own bounded retry is the only one
                if configuration.refresh_api_key_hook is not None:
                    configuration.refresh_api_key_hook = ThrottledRefresh(configuration.refresh_api_key_hook)
                configuration.connection_pool_maxsize = POOL_SIZE
                self._api_client = k8s_client.ApiClient(configuration)
            return self._api_client

    def with_retry(self, action: str, call: Callable[[], T]) -> T:
        """``call`` with this client's bounded retry and error wrapping (no node context)."""
        return self._with_retry(action, None, call)

    def _with_retry(self, action: str, node: str | None, call: Callable[[], T], *,
                    deadline: float | None = None) -> T:
        delay = self.retry_backoff
        for attempt in range(1, self.retry_attempts + 1):
            try:
                return call()
            except ApiException as err:
                if err.status == 404 and node is not None:
                    raise exception.NodeNotFound(node=node) from err
                retriable = err.status in _RETRY_STATUSES
                reason = f"HTTP {err.status} {err.reason}"
                error: Exception = err
            except (urllib3.exceptions.HTTPError, OSError) as err:
                retriable, reason, error = True, f"connection error: {err}", err
            except ValueError as err:  # undecodable body
                retriable, reason, error = False, f"bad response: {err}", err
            where = f"{action} on node {node}" if node else action
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise exception.KubeAPIError(action=where, reason=f"{reason} (after {attempt} "
                                             "tries, out of time)") from error
            if not retriable or attempt == self.retry_attempts:
                raise exception.KubeAPIError(action=where,
                                             reason=f"{reason} (after {attempt} tries)") from error
            LOG.warning("Kubernetes API %s failed (%s), try %d of %d; retrying in %.2f s",
                        where, reason, attempt,
                        self.retry_attempts, delay)
            self._sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover


def json_body(response: Any) -> dict[str, Any]:
    """Decode a raw response (``_preload_content=False``) as a JSON object."""
    return _json(response)


def _json(response: Any) -> dict[str, Any]:
    """Decode a raw urllib3 response body (``_preload_content=False``) as a JSON object."""
    try:
        data = response.data
    finally:
        response.release_conn()
    decoded = json.loads(data)
    if not isinstance(decoded, dict):
        raise ValueError(f"expected a JSON object, got {type(decoded).__name__}")
    return decoded
