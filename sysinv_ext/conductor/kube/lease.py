"""Leader election of the conductors through a coordination.k8s.io/v1 Lease (as client-go).

sysinv runs on two controllers, so two conductors share one database; only the holder of the
Lease serves RPC, audits and patches nodes. Rules (client-go's leaderelection): a candidate
takes the Lease when it is free or when its record has not changed for ``duration`` seconds
of the candidate's own clock (no clock comparison between hosts, except that a renewal's
apparent age, bounded by ``retry_period``, is counted as already elapsed); updates carry the
resourceVersion, so of two candidates exactly one wins (409 for the other). The holder renews
every ``retry_period`` and steps down if it could not renew for ``renew_deadline`` (shorter
than ``duration``: it stops before anyone else may start). A standby tries every
``retry_period`` too, or just after the observed expiry of the peer's Lease when that comes
sooner (client-go waits for its next period): after kill -9 of the holder the standby takes over
at most ``duration`` later, not ``duration + retry_period``. A clean stop releases the Lease,
so the standby takes over at its next try instead of after ``duration``.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException
from oslo_log import log as logging

from sysinv_ext.common import exception
from sysinv_ext.conductor.kube import KubeClient, json_body

LOG = logging.getLogger(__name__)
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # MicroTime
LEASES_PATH = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
LEASE_PATH = LEASES_PATH + "/{name}"
EXPIRY_MARGIN = 0.01  # s: a standby tries this long after the peer's Lease expires


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def _now() -> str:
    return datetime.now(timezone.utc).strftime(_TIME)


def _age(micro_time: object) -> float:
    """Seconds since a MicroTime by this host's wall clock (0 if unparsable or future)."""
    if not isinstance(micro_time, str):
        return 0.0
    for fmt in (_TIME, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            then = datetime.strptime(micro_time, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
        return max(0.0, (datetime.now(timezone.utc) - then).total_seconds())
    return 0.0


class LeaderElector:
    """Runs the election on a thread; ``on_started``/``on_stopped`` run on that thread."""

    def __init__(self, client: KubeClient, config: LeaseConfig, *, on_started: Callable[[], None],
                 on_stopped: Callable[[], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._client = client
        self._on_started, self._on_stopped = on_started, on_stopped
        self._clock = clock
        self._stop = threading.Event()
        self._leading = threading.Event()
        self._observed: dict[str, Any] | None = None   # last spec seen
        self._observed_at = 0.0                         # when (our clock, backdated)
        self._renewed_at = 0.0
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    def wait_leading(self, timeout: float | None = None) -> bool:
        return self._leading.wait(timeout)

    def start(self) -> LeaderElector:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop electing; a leader steps down (``on_stopped``) and releases the Lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        cfg = self.config
        LOG.info("Leader election: %s competes for Lease %s/%s (duration %.0f s)", cfg.identity,
                 cfg.namespace, cfg.name, cfg.duration)
        while not self._stop.is_set():
            ok = self._try()
            now = self._clock()
            if ok:
                self._renewed_at = now
                if not self.is_leader:
                    LOG.info("Leader election: %s is now the active conductor", cfg.identity)
                    self._leading.set()
                    self._call(self._on_started, "start serving")
            elif self.is_leader and now - self._renewed_at > cfg.renew_deadline:
                LOG.error("Leader election: %s could not renew Lease %s/%s for %.0f s; stepping down",
                          cfg.identity, cfg.namespace, cfg.name, now - self._renewed_at)
                self._leading.clear()
                self._call(self._on_stopped, "stop serving")
            self._stop.wait(self._next_wait())
        if self.is_leader:
            self._leading.clear()
            self._call(self._on_stopped, "stop serving")
            self._release()

    def _next_wait(self) -> float:
        """Seconds until the next try: ``retry_period``, or less for a standby whose peer's
        Lease expires sooner (by the observed record): it tries just after the expiry instead of
        up to ``retry_period`` later, so a takeover after kill -9 takes at most ``duration``."""
        cfg = self.config
        try:
            expiry = None if self.is_leader else self._peer_expiry()
        except (TypeError, ValueError):  # a malformed record: _try logged it
            expiry = None
        expires_in = None if expiry is None else expiry - self._clock()
        if expires_in is None or expires_in <= 0:  # ours, free, or expired and not taken: as usual
            return cfg.retry_period
        return min(cfg.retry_period, expires_in + EXPIRY_MARGIN)

    def _peer_expiry(self) -> float | None:
        """When, by this host's clock, the observed Lease of a peer expires; None when the Lease
        is free or ours. Raises ValueError/TypeError on a malformed ``leaseDurationSeconds``."""
        spec = self._observed or {}
        holder = spec.get("holderIdentity")
        if not holder or holder == self.config.identity:
            return None
        return self._observed_at + float(spec.get("leaseDurationSeconds") or self.config.duration)

    def _call(self, func: Callable[[], None], what: str) -> None:
        try:
            func()
        except Exception:  # the election must outlive a failing callback
            LOG.exception("Leader election: failed to %s", what)

    def _read(self) -> dict[str, Any]:
        cfg = self.config
        return json_body(self._client.request("GET", LEASE_PATH,
                                              path_params={"namespace": cfg.namespace, "name": cfg.name}))

    def _write(self, body: dict[str, Any], *, create: bool = False) -> None:
        cfg = self.config
        if create:
            response = self._client.request("POST", LEASES_PATH, path_params={"namespace": cfg.namespace},
                                            body=body)
        else:
            response = self._client.request("PUT", LEASE_PATH, path_params={
                "namespace": cfg.namespace, "name": cfg.name}, body=body)
        response.release_conn()

    def _try(self) -> bool:
        """One acquire-or-renew attempt; False when someone else holds it or on any error."""
        cfg = self.config
        try:
            try:
                lease = self._read()
            except ApiException as err:
                if err.status != 404:
                    raise
                self._write(self._body(None), create=True)
                self._observe(self._body(None)["spec"], backdate=0.0)
                return True
            spec = lease.get("spec") or {}
            if spec != self._observed:
                self._observe(spec, backdate=min(_age(spec.get("renewTime")), cfg.retry_period))
            expiry = self._peer_expiry()
            if expiry is not None and self._clock() < expiry:
                return False  # held by a live peer
            silent = self._clock() - self._observed_at  # since the peer's record last changed
            body = self._body(lease)
            self._write(body)
            self._observe(body["spec"], backdate=0.0)
            if expiry is not None:
                LOG.warning("Leader election: took Lease %s/%s over from %s (not renewed for %.0f s)",
                            cfg.namespace, cfg.name, spec.get("holderIdentity"), silent)
            return True
        except ApiException as err:
            if err.status != 409:  # 409: another candidate won this round
                LOG.warning("Leader election: Lease %s/%s: HTTP %s %s", cfg.namespace, cfg.name,
                            err.status, err.reason)
        except (urllib3.exceptions.HTTPError, OSError, ValueError, TypeError,
                exception.KubeAPIError) as err:
            LOG.warning("Leader election: Lease %s/%s unreachable: %s", cfg.namespace, cfg.name, err)
        return False

    def _observe(self, spec: dict[str, Any], backdate: float) -> None:
        self._observed = dict(spec)
        self._observed_at = self._clock() - backdate

    def _body(self, lease: dict[str, Any] | None, *, release: bool = False) -> dict[str, Any]:
        cfg = self.config
        spec = (lease or {}).get("spec") or {}
        mine = spec.get("holderIdentity") == cfg.identity
        now = _now()
        new_spec = {
            "holderIdentity": "" if release else cfg.identity,
            "leaseDurationSeconds": 1 if release else max(1, int(round(cfg.duration))),
            "acquireTime": spec.get("acquireTime") if mine else now,
            "renewTime": now,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if mine or not spec else 1),
        }
        meta: dict[str, Any] = {"name": cfg.name, "namespace": cfg.namespace}
        if lease is not None:
            meta["resourceVersion"] = (lease.get("metadata") or {}).get("resourceVersion")
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": new_spec}

    def _release(self) -> None:
        cfg = self.config
        try:
            lease = self._read()
            if (lease.get("spec") or {}).get("holderIdentity") != cfg.identity:
                return
            self._write(self._body(lease, release=True))
            LOG.info("Leader election: %s released Lease %s/%s", cfg.identity, cfg.namespace, cfg.name)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError,
                exception.KubeAPIError) as err:
            LOG.warning("Leader election: could not release Lease %s/%s: %s", cfg.namespace,
                        cfg.name, err)
