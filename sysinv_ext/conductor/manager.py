"""Server side of the conductor RPC API: device plugin reports in, node labels out.

``normalize_payload`` (pure) turns both StarlingX payloads into one report; ``ConductorManager``
reconciles it (endpoints run on a thread pool): enabled + reported labels are recorded and
PATCHed on the node at once, enabled + not reported are recorded as absent and removed, keys
of plugins not enabled are never touched. Work for one host is ordered by a per-host lock;
different hosts run concurrently. Nodes come from a LIST + WATCH cache (no API request per
report); a host with no node yet is recorded and labelled when its node appears (watch event).
The database is written only when the recorded state changes. ``audit()`` (one LIST) converges
every node both ways. Only the active conductor (Lease, see cmd/conductor) reacts to events.
Knows nothing of the agent; reaches Kubernetes only through ``kube`` and the DB through
``state``/``db.api``.
"""
from __future__ import annotations

import re
import reprlib
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_log import log as logging

from sysinv_ext.common import bounded, exception
from sysinv_ext.common.memory import release_memory
from sysinv_ext.conductor import audit as audit_mod
from sysinv_ext.conductor.apply import HostApplier
from sysinv_ext.conductor.kube import KubeClient, Node, index_by_system_uuid
from sysinv_ext.conductor.kube.cache import NodeCache
from sysinv_ext.conductor.metrics import NO_CONDUCTOR_METRICS, ConductorGauges, ConductorMetrics, outcome_of
from sysinv_ext.conductor.plugins import PluginsFile, is_label_key, is_label_value
from sysinv_ext.conductor.state import DesiredState, HostLocks, LogLimiter
from sysinv_ext.conf.conductor import DEFAULT_PENDING_LIMIT, DEFAULT_PENDING_TTL, database_url
from sysinv_ext.db import api as db_api

LOG = logging.getLogger(__name__)

MAX_REPORTED = 64
# host_uuid is a UUID (DMI product_uuid) or a name set in agent.conf: a UUID-like charset. Control
# characters never reach the database: PostgreSQL refuses a NUL, and before this check one such
# report failed the other hosts' reports written in the same transaction (issue 21 item 10).
HOST_UUID_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")
MAX_PAYLOAD_DEPTH = 4  # a 2019 payload is a list of maps of strings: 2 levels
AUDIT_PATCH_WORKERS = 16  # concurrent PATCHes while an audit restores labels
EVENT_WORKERS = 8  # threads applying labels on watch events (pending hosts, labels removed by hand)
REPORT_TIMEOUT = 5.0  # s: a report waits at most this long for the API (issue 21 item 15)
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
    host = repr(host_uuid[:81]) if isinstance(host_uuid, str) else bounded.short(host_uuid, 80)
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
    for name, value in (("host_uuid", host_uuid), ("device_plugins", device_plugins),
                        ("device_plugin_labels", device_plugin_labels)):
        if bounded.too_deep(value, MAX_PAYLOAD_DEPTH):  # before anything walks it recursively
            raise _invalid(host_uuid, f"{name} is nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    if not isinstance(host_uuid, str) or not HOST_UUID_RE.fullmatch(host_uuid.strip()):
        raise _invalid(host_uuid, "host_uuid must be 1 to 64 letters, digits, '-', '_' or '.' "
                       "(a UUID), starting with a letter or digit")
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

    Accepts target versions 1.0 and 1.1 (StarlingX agents send 1.0, cap 1.1). Active from
    the start unless ``deactivate()`` is called (the service does so until it holds the Lease).
    """

    RPC_API_VERSION = "1.1"
    target = messaging.Target(version=RPC_API_VERSION)

    def __init__(self, conf: cfg.ConfigOpts | None = None, *, kube: KubeClient | None = None,
                 engine: db_api.Engine | None = None, plugins: PluginsFile | None = None,
                 metrics: ConductorMetrics = NO_CONDUCTOR_METRICS) -> None:
        self.metrics = metrics
        ttl, limit = float(DEFAULT_PENDING_TTL), DEFAULT_PENDING_LIMIT
        if conf is None:
            if kube is None or engine is None or plugins is None:
                raise ValueError("ConductorManager needs conf, or kube, engine and plugins")
            self.kube, self.engine, self.plugins = kube, engine, plugins
        else:
            self.kube = kube if kube is not None else KubeClient.from_conf(conf)
            self.engine = engine if engine is not None else db_api.get_engine(database_url(conf))
            self.plugins = plugins if plugins is not None else PluginsFile(
                conf.conductor.enabled_kube_plugins, conf.conductor.allowed_label_keys)
            ttl, limit = float(conf.conductor.pending_host_ttl), conf.conductor.pending_host_limit
        self.state = DesiredState(self.engine, pending_ttl=ttl, pending_limit=limit)
        self.cache = NodeCache(self.kube, on_change=self._node_changed)
        self._locks = HostLocks()        # orders the records of one host (quick: no API call)
        self._apply_locks = HostLocks()  # orders the PATCHes of one host (may wait on the API)
        self.report_timeout = REPORT_TIMEOUT
        self._applier = HostApplier(self._apply_report, retriable=(exception.KubeAPIError,))
        self._apply_log = LogLimiter()
        self._events = ThreadPoolExecutor(max_workers=EVENT_WORKERS, thread_name_prefix="node-event")
        self._active = threading.Event()
        self._active.set()
        self._pending_log = LogLimiter()
        self._reject_log = bounded.CauseLimiter()  # one caller must not flood the log
        metrics.observe(ConductorGauges(node_cache=self.cache.__len__, pending_hosts=self.state.pending,
                                        watch_restarts=lambda: max(0, self.cache.watches - 1),
                                        leader=self._active.is_set))

    # -- lifecycle (the service; tests may rely on the lazy start) -----------------------------
    def start(self) -> None:
        """Load the recorded state and start the node cache (LIST + WATCH); idempotent, also
        done by the first report or audit."""
        self.state.ensure_loaded()
        self.cache.start()

    def close(self) -> None:
        self._active.clear()
        self.cache.stop(timeout=1.0)
        self._applier.close()
        self._events.shutdown(wait=False, cancel_futures=True)

    def activate(self) -> None:
        """Become the active conductor: re-read the database (the peer may have written)."""
        hosts = self.state.load()
        self._active.set()
        LOG.info("Conductor active: %d hosts recorded, %d nodes cached", hosts, len(self.cache))

    def deactivate(self) -> None:
        self._active.clear()

    @property
    def active(self) -> bool:
        return self._active.is_set()

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
        :returns: {"node": name (None while the host has no node yet), "labels": {key: value},
                   "removed": [key, ...]}
        :raises: InvalidPayload, KubeAPIError, DatabaseError
        """
        request_id = context.get("request_id") if isinstance(context, Mapping) else None
        return self.report(host_uuid, device_plugins, device_plugin_labels,
                           request_id=None if request_id is None else bounded.short(request_id, 64))

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
            allowed, held = self._reject_log.allow(type(err).__name__)
            if allowed:
                LOG.warning("Device plugin report %s rejected: %s%s", request_id or "-", err,
                            bounded.held_note(held))
            raise
        applied = bool(result["node"]) and result.pop("applied", True)
        self.metrics.reported("applied" if applied else "pending")
        if applied:
            self.metrics.labelled(time.monotonic() - started)
        return result

    def reconcile(self, report: PluginReport) -> dict[str, Any]:
        """Record one report (ordered with other reports of the same host), then have it
        applied and wait for that at most ``report_timeout`` seconds: past it the answer says
        the labels are recorded (``"applied": False``, dropped by ``report``) and they land
        when the API answers (``apply.HostApplier``: per host in order, retried)."""
        enabled = self.plugins.current()
        ignored = sorted(report.keys - enabled.keys())
        if ignored:
            LOG.info("Host %s reports %s, not enabled in %s: ignored", report.host_uuid,
                     ignored, self.plugins.path)
        desired = desired_labels(enabled, report.keys)
        host = report.host_uuid
        started = time.monotonic()
        self.start()
        synced = self.cache.wait_synced(min(self.kube.request_timeout, self.report_timeout))
        labels = {k: v for k, v in desired.items() if v is not None}
        with self._locks.hold(host):
            node = self.cache.get(host) if synced else None
            outcome = self.state.record(host, desired, seen=node is not None) if desired else "-"
        if not synced:
            raise exception.KubeAPIError(
                action=f"look up the node of host {host}",
                reason="the node cache has no LIST yet (API unreachable); the report is "
                "recorded and applied once the API answers")
        if node is None:
            self._log_pending(host, outcome)
            return {"node": None, "labels": labels, "removed": []}
        deadline = started + self.report_timeout
        unapplied = {"node": node.name, "labels": labels, "removed": [], "applied": False}
        if self._applier.busy(host):  # an earlier run of this host waits on the API: after it
            ticket = self._applier.request(host)
            if not ticket.wait(max(0.0, deadline - time.monotonic())):
                self._log_unapplied(host)
                return unapplied
            error, result = ticket.error, ticket.result
        else:  # the usual case: PATCHed here, within the bound
            try:
                result, error = self._bring_in_line(host, "report", require_active=False,
                                                    deadline=deadline), None
            except (exception.KubeAPIError, TimeoutError) as err:
                if isinstance(err, exception.KubeAPIError) and time.monotonic() < deadline:
                    raise  # the API answered with an error: as before, the audit retries
                self._applier.request(host)  # no answer within the bound: retried from now on
                self._log_unapplied(host)
                return unapplied
            except exception.NodeNotFound as err:
                error = err
        if isinstance(error, exception.NodeNotFound):  # deleted meanwhile: pending again
            return {"node": None, "labels": labels, "removed": []}
        if error is not None:
            raise error
        patched, patch = result
        return {"node": patched.name if patched is not None else node.name, "labels": labels,
                "removed": sorted(k for k, v in patch.items() if v is None)}

    def audit(self) -> audit_mod.AuditResult:
        """One LIST of nodes; only the changes needed, PATCHed concurrently (bounded)."""
        self.start()
        enabled = MappingProxyType(dict(self.plugins.current()))
        nodes = self.kube.list_nodes()
        self.cache.merge(nodes, notify=False)
        self.state.refresh()
        plan = audit_mod.plan_audit(index_by_system_uuid(nodes), self.state.hosts(), enabled,
                                    forget_disabled=self.plugins.valid)
        forgotten = 0
        for host, keys in plan.forget.items():
            with self._locks.hold(host):
                LOG.info("Labels %s of host %s: plugin no longer enabled, record dropped "
                         "(node left untouched)", sorted(keys), host)
                self.state.drop_keys(host, set(keys))
                forgotten += len(keys)
        for host, values in plan.revalue.items():
            with self._locks.hold(host):
                self.state.revalue(host, values)
        expired = self.state.expire()
        if expired:
            LOG.info("Label audit: forgot %d hosts that reported but never had a node for %.0f s, "
                     "e.g. %s", len(expired), self.state.pending_ttl, expired[:3])
        for node in nodes:  # hosts whose node appeared while no event was seen
            entry = self.state.get(node.system_uuid)
            if entry is not None and not entry.seen:
                with self._locks.hold(node.system_uuid):
                    self.state.mark_seen(node.system_uuid)
        if plan.hosts_without_node:
            LOG.warning("Label audit: %d hosts have recorded labels but no Kubernetes node "
                        "(e.g. %s); labelled when their node appears", len(plan.hosts_without_node),
                        ", ".join(plan.hosts_without_node[:3]))
        patched, failed = self._converge_all(list(plan.patches))
        release_memory()  # the decoded LIST is garbage now
        return audit_mod.AuditResult(nodes=len(nodes), patched=patched, failed=failed,
                                     forgotten=forgotten,
                                     hosts_without_node=len(plan.hosts_without_node),
                                     expired=len(expired))

    # -- internals --------------------------------------------------------------------------
    def _log_pending(self, host: str, outcome: str) -> None:
        allowed, skipped = self._pending_log.allow()
        if not allowed:
            return
        more = f" ({skipped} more such reports not logged)" if skipped else ""
        if outcome == "refused":
            LOG.warning("Host %s has no Kubernetes node and %d hosts are already pending: report "
                        "not recorded (its next periodic report is applied once the node "
                        "exists)%s", host, self.state.pending_limit, more)
        else:
            LOG.info("Host %s has no Kubernetes node yet: recorded, labelled when the node "
                     "appears%s", host, more)

    def _node_changed(self, node: Node) -> None:
        """Watch thread: a node is new or changed. Quick check; real work on the pool."""
        if not self._active.is_set() or not node.system_uuid:
            return
        entry = self.state.get(node.system_uuid)
        if entry is None:
            return
        if entry.seen and not audit_mod.host_patch(entry, node, self.plugins.current()):
            return
        try:
            self._events.submit(self._converge_logged, node.system_uuid)
        except RuntimeError:  # pool shut down (closing)
            pass

    def _converge_logged(self, host: str) -> None:
        try:
            self._converge(host, "watch")
        except exception.SysinvExtException as err:
            LOG.warning("Labels of host %s not applied from the node watch, the audit retries: %s",
                        host, err)

    def _apply_report(self, host: str) -> tuple[Node | None, dict[str, str | None]]:
        """The applier's run for a report: (the node after, the labels PATCHed). Nothing once
        this conductor stepped down: the new active applies the records (its audit)."""
        return self._bring_in_line(host, "report", require_active=True)

    def _converge(self, host: str, why: str) -> bool:
        """Bring the node of ``host`` in line with its record; True if it was PATCHed."""
        return bool(self._bring_in_line(host, why, require_active=True)[1])

    def _bring_in_line(self, host: str, why: str, *, require_active: bool,
                       deadline: float | None = None) -> tuple[Node | None, dict[str, str | None]]:
        """PATCH the node of ``host`` to its latest record, under the host's apply lock (the
        record lock is taken only to mark the host seen: a report of the host is recorded
        while an earlier PATCH still waits on the API, and applied right after it). With
        ``deadline``, returns or raises (TimeoutError: the lock stayed busy; KubeAPIError) by
        then."""
        lock_timeout = None if deadline is None else deadline - time.monotonic()
        with self._apply_locks.hold(host, timeout=lock_timeout):
            entry, node = self.state.get(host), self.cache.get(host)
            if entry is None or node is None or (require_active and not self._active.is_set()):
                return node, {}
            if not entry.seen:
                with self._locks.hold(host):
                    self.state.mark_seen(host)
            patch = audit_mod.host_patch(entry, node, self.plugins.current())
            if not patch:
                return node, {}
            node = self._patch(node, patch, why, deadline=deadline)
            if not entry.seen:  # a pending host's labels landed: from its recorded report on
                self.metrics.labelled(time.time() - entry.reported_at)
            return node, patch

    def _log_unapplied(self, host: str) -> None:
        allowed, skipped = self._apply_log.allow()
        if allowed:
            LOG.warning("Labels of host %s recorded; the Kubernetes API did not answer within "
                        "%.0f s: applied when it does%s", host, self.report_timeout,
                        f" ({skipped} more such reports not logged)" if skipped else "")

    def _converge_all(self, hosts: list[str]) -> tuple[int, int]:
        """``_converge`` for many hosts, a bounded number at a time: (patched, failed)."""
        if not hosts:
            return 0, 0
        patched = failed = 0
        with ThreadPoolExecutor(max_workers=min(AUDIT_PATCH_WORKERS, len(hosts)),
                                thread_name_prefix="audit-patch") as pool:
            futures = {pool.submit(self._converge, host, "audit"): host for host in hosts}
            for future, host in futures.items():
                try:
                    patched += bool(future.result())
                except exception.SysinvExtException as err:
                    failed += 1
                    LOG.warning("Label audit: host %s not updated, will retry: %s", host, err)
        return patched, failed

    def _patch(self, node: Node, labels: Mapping[str, str | None], why: str, *,
               deadline: float | None = None) -> Node:
        patched = (self.kube.patch_node_labels(node.name, labels) if deadline is None
                   else self.kube.patch_node_labels(node.name, labels, deadline=deadline))
        self.cache.update(patched)
        LOG.info("Node %s (host %s, %s): labels set %s, removed %s", node.name, node.system_uuid,
                 why, {k: v for k, v in labels.items() if v is not None},
                 sorted(k for k, v in labels.items() if v is None))
        return patched
