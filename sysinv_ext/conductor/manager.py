"""Server side of the conductor RPC API: device plugin reports in, node labels out.

``normalize_payload`` (pure) turns both StarlingX payloads into one report; ``ConductorManager``
reconciles it under a lock (endpoints run on a thread pool): enabled + reported labels are
recorded and PATCHed on the node at once, enabled + not reported are removed, keys of plugins
not enabled are never touched. ``audit()`` re-applies recorded labels that went missing.
Knows nothing of the agent; reaches Kubernetes only through ``kube`` and the DB through ``db.api``.
"""
from __future__ import annotations

import reprlib
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_log import log as logging

from sysinv_ext.common import exception
from sysinv_ext.conductor import audit as audit_mod
from sysinv_ext.conductor.kube import KubeClient, Node, index_by_system_uuid
from sysinv_ext.conductor.metrics import NO_CONDUCTOR_METRICS, ConductorMetrics, outcome_of
from sysinv_ext.conductor.plugins import PluginsFile, is_label_key, is_label_value
from sysinv_ext.conf.conductor import database_url
from sysinv_ext.db import api as db_api

LOG = logging.getLogger(__name__)

MAX_REPORTED = 64
AUDIT_PATCH_WORKERS = 8  # concurrent PATCHes while an audit restores labels
_EXPECTED = (exception.InvalidPayload, exception.HostNotFound, exception.NodeNotFound,
             exception.KubeAPIError, exception.DatabaseError)


@dataclass(frozen=True)
class PluginReport:
    """One agent report: the host (lower case) and the label keys it supports."""

    host_uuid: str
    keys: frozenset[str]
    form: str  # "2023" (device_plugins) or "2019" (device_plugin_labels)


def _invalid(host_uuid: object, reason: str, limit: int = 300) -> exception.InvalidPayload:
    """The error logged and sent back to the caller: bounded, whatever the payload's size."""
    host = repr(host_uuid[:81] if isinstance(host_uuid, str) else host_uuid)
    host = host if len(host) <= 80 else host[:80] + "..."
    if len(reason) > limit:
        reason = f"{reason[:limit]}... ({len(reason)} chars)"
    return exception.InvalidPayload(host_uuid=host, reason=reason)


def _check_list(host_uuid: object, name: str, value: object) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise _invalid(host_uuid, f"{name} must be a list, not {type(value).__name__}")
    if len(value) > MAX_REPORTED:
        raise _invalid(host_uuid, f"{name} has {len(value)} entries (at most {MAX_REPORTED})")
    return list(value)


def normalize_payload(host_uuid: object, device_plugins: object = None,
                      device_plugin_labels: object = None) -> PluginReport:
    """Both StarlingX payload forms -> one PluginReport; raises InvalidPayload for anything else.

    2023: ``device_plugins=["intelgpu"]`` (label keys). 2019: ``device_plugin_labels=
    [{"label_key": "intelgpu", "label_value": "enabled"}]``. An empty list is valid (no GPU).
    """
    if not isinstance(host_uuid, str) or not host_uuid.strip() or len(host_uuid.strip()) > 64 \
            or any(ch.isspace() for ch in host_uuid.strip()):
        raise _invalid(host_uuid, "host_uuid must be a non-empty string without spaces (<= 64 chars)")
    if device_plugins is not None and device_plugin_labels is not None:
        raise _invalid(host_uuid, "both device_plugins and device_plugin_labels given; send one")
    keys: list[str] = []
    if device_plugins is not None:
        for entry in _check_list(host_uuid, "device_plugins", device_plugins):
            if not is_label_key(entry):
                raise _invalid(host_uuid, f"device_plugins entry {reprlib.repr(entry)} is not a "
                               "label key")
            keys.append(entry)
        form = "2023"
    elif device_plugin_labels is not None:
        for entry in _check_list(host_uuid, "device_plugin_labels", device_plugin_labels):
            if not isinstance(entry, Mapping) or not is_label_key(entry.get("label_key")) \
                    or not is_label_value(entry.get("label_value")):
                raise _invalid(host_uuid, f"device_plugin_labels entry {reprlib.repr(entry)} is "
                               "not {'label_key': KEY, 'label_value': VALUE}")
            keys.append(str(entry["label_key"]))
        form = "2019"
    else:
        raise _invalid(host_uuid, "neither device_plugins nor device_plugin_labels given")
    return PluginReport(host_uuid=host_uuid.strip().lower(), keys=frozenset(keys), form=form)


def desired_labels(enabled: Mapping[str, str], reported: frozenset[str]) -> dict[str, str | None]:
    """For every enabled label key: its value if reported, None (remove) if not."""
    return {key: (value if key in reported else None) for key, value in enabled.items()}


class ConductorManager:
    """RPC endpoint of the conductor (topic ``sysinv.conductor_manager``).

    Accepts target versions 1.0 and 1.1 (StarlingX agents send 1.0, cap 1.1).
    """

    RPC_API_VERSION = "1.1"
    target = messaging.Target(version=RPC_API_VERSION)

    def __init__(self, conf: cfg.ConfigOpts | None = None, *, kube: KubeClient | None = None,
                 engine: db_api.Engine | None = None, plugins: PluginsFile | None = None,
                 metrics: ConductorMetrics = NO_CONDUCTOR_METRICS) -> None:
        self.metrics = metrics
        if conf is None:
            if kube is None or engine is None or plugins is None:
                raise ValueError("ConductorManager needs conf, or kube, engine and plugins")
            self.kube, self.engine, self.plugins = kube, engine, plugins
        else:
            self.kube = kube if kube is not None else KubeClient.from_conf(conf)
            self.engine = engine if engine is not None else db_api.get_engine(database_url(conf))
            self.plugins = plugins if plugins is not None else PluginsFile(
                conf.conductor.enabled_kube_plugins, conf.conductor.allowed_label_keys)
        self._lock = threading.Lock()
        self._nodes: dict[str, Node] = {}  # systemUUID -> last node seen (LIST, GET or PATCH)
        self._pending = 0  # hosts with recorded labels and no node, as of the last audit

    # -- RPC endpoint -----------------------------------------------------------------------
    @messaging.expected_exceptions(*_EXPECTED)  # type: ignore[untyped-decorator]
    def device_plugin_labels_update_by_ihost(self, context: Any, host_uuid: Any,
                                             device_plugins: Any = None,
                                             device_plugin_labels: Any = None) -> dict[str, Any]:
        """Apply the device plugin labels a host reports (sysinv API 1.1).

        :param context: request context (a dict)
        :param host_uuid: the reporting host; matched to the node's status.nodeInfo.systemUUID
        :param device_plugins: 2023 form, list of label keys, e.g. ["intelgpu"]
        :param device_plugin_labels: 2019 form, [{"label_key": ..., "label_value": ...}]
        :returns: {"node": name, "labels": {key: value}, "removed": [key, ...]}
        :raises: InvalidPayload, HostNotFound, KubeAPIError, NodeNotFound, DatabaseError
        """
        request_id = context.get("request_id") if isinstance(context, Mapping) else None
        return self.report(host_uuid, device_plugins, device_plugin_labels, request_id=request_id)

    # -- callable directly (tests, benchmarks) ----------------------------------------------
    def report(self, host_uuid: Any, device_plugins: Any = None, device_plugin_labels: Any = None,
               *, request_id: str | None = None) -> dict[str, Any]:
        """The endpoint's work, raising our exceptions (not ExpectedException)."""
        started = time.monotonic()
        try:
            report = normalize_payload(host_uuid, device_plugins, device_plugin_labels)
            result = self.reconcile(report)
        except exception.SysinvExtException as err:
            self.metrics.reported(outcome_of(err))
            LOG.warning("Device plugin report %s rejected: %s", request_id or "-", err)
            raise
        self.metrics.reported("applied")
        self.metrics.labelled(time.monotonic() - started)
        return result

    def reconcile(self, report: PluginReport) -> dict[str, Any]:
        """Record and apply one report (serialized: one report or audit at a time)."""
        with self._lock:
            enabled = self.plugins.current()
            ignored = sorted(report.keys - enabled.keys())
            if ignored:
                LOG.info("Host %s reports %s, not enabled in %s: ignored", report.host_uuid,
                         ignored, self.plugins.path)
            desired = desired_labels(enabled, report.keys)
            try:
                node = self._current_node(report.host_uuid)
            except exception.KubeAPIError:
                self._record(report.host_uuid, desired)  # the audit applies it once the API is back
                raise
            self._record(report.host_uuid, desired)
            patch = {k: v for k, v in desired.items() if node.labels.get(k) != v}
            if patch:
                node = self._patch(node, report.host_uuid, patch)
                LOG.info("Node %s (host %s): labels set %s, removed %s", node.name,
                         report.host_uuid, {k: v for k, v in patch.items() if v is not None},
                         sorted(k for k, v in patch.items() if v is None))
            return {"node": node.name,
                    "labels": {k: v for k, v in desired.items() if v is not None},
                    "removed": sorted(k for k, v in patch.items() if v is None)}

    def audit(self) -> audit_mod.AuditResult:
        """One LIST of nodes, then only the PATCHes needed (see audit.plan_audit)."""
        with self._lock:
            enabled = MappingProxyType(dict(self.plugins.current()))
            nodes = self._refresh_nodes()
            plan = audit_mod.plan_audit(self._nodes, db_api.label_get_all(self.engine), enabled,
                                        forget_disabled=self.plugins.valid)
            for record in plan.forget:
                LOG.info("Label %s of host %s: plugin no longer enabled, record dropped "
                         "(node left untouched)", record.label_key, record.host_uuid)
                db_api.label_delete(self.engine, record.host_uuid, record.label_key)
            for record in plan.revalue:
                db_api.label_update(self.engine, record.host_uuid, record.label_key,
                                    enabled[record.label_key])
            self._pending = len(plan.hosts_without_node)
            for host in plan.hosts_without_node:
                LOG.warning("Label audit: no Kubernetes node has systemUUID %s; will retry", host)
            failed = self._apply_patches(plan.patches)
            return audit_mod.AuditResult(nodes=nodes, patched=len(plan.patches) - failed,
                                         failed=failed, forgotten=len(plan.forget),
                                         hosts_without_node=len(plan.hosts_without_node))

    # -- read by the metrics at scrape time --------------------------------------------------
    def cached_nodes(self) -> int:
        return len(self._nodes)

    def pending_hosts(self) -> int:
        return self._pending

    # -- internals (call with the lock held) ------------------------------------------------
    def _apply_patches(self, patches: Mapping[str, Mapping[str, str]]) -> int:
        """PATCH nodes concurrently (a few at a time); returns how many failed."""
        by_name = {node.name: node for node in self._nodes.values()}
        failed = 0
        if not patches:
            return 0
        with ThreadPoolExecutor(max_workers=min(AUDIT_PATCH_WORKERS, len(patches)),
                                thread_name_prefix="audit-patch") as pool:
            futures = {}
            for name, labels in sorted(patches.items()):
                LOG.info("Label audit: restoring %s on node %s", dict(labels), name)
                futures[pool.submit(self.kube.patch_node_labels, name, labels)] = by_name[name]
            for future in as_completed(futures):
                node = futures[future]
                try:
                    self._nodes[node.system_uuid] = future.result()
                except exception.NodeNotFound as err:
                    self._nodes.pop(node.system_uuid, None)
                    failed += 1
                    LOG.warning("Label audit: node %s not updated, will retry: %s", node.name, err)
                except exception.KubeAPIError as err:
                    failed += 1
                    LOG.warning("Label audit: node %s not updated, will retry: %s", node.name, err)
        return failed

    def _refresh_nodes(self) -> int:
        nodes = self.kube.list_nodes()
        self._nodes = index_by_system_uuid(nodes)
        return len(nodes)

    def _current_node(self, host_uuid: str) -> Node:
        cached = self._nodes.get(host_uuid)
        if cached is not None:
            try:
                fresh = self.kube.get_node(cached.name)
                if fresh.system_uuid == host_uuid:
                    self._nodes[host_uuid] = fresh
                    return fresh
            except exception.NodeNotFound:
                pass
        self._refresh_nodes()  # unknown, renamed or deleted node: one LIST
        found = self._nodes.get(host_uuid)
        if found is None:
            raise exception.HostNotFound(host_uuid=host_uuid)
        return found

    def _record(self, host_uuid: str, desired: Mapping[str, str | None]) -> None:
        if desired:
            db_api.label_sync(self.engine, host_uuid, desired)

    def _patch(self, node: Node, host_uuid: str, labels: Mapping[str, str | None]) -> Node:
        try:
            patched = self.kube.patch_node_labels(node.name, labels)
        except exception.NodeNotFound:
            self._nodes.pop(host_uuid, None)
            raise
        self._nodes[host_uuid] = patched
        return patched
