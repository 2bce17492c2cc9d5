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

Hostile or corrupt records (issue 21 item 12). A record's ``leaseDurationSeconds`` is believed
only up to ``PEER_DURATION_FACTOR`` times our own ``duration`` (a foreign holder with
2147483647, which a real API server accepts, stopped both conductors until someone deleted the
Lease); beyond that, or when it is not a positive number, the bound is used and the record is
logged as out of range. A record naming this candidate counts as ours only if this process
wrote it (same spec or same resourceVersion as its last write): a holderIdentity edited to the
standby's name no longer makes it serve beside the active; it waits for that record to expire
as for any peer's (so does a conductor restarted after kill -9: it takes its old record over
after ``duration``, as the standby would). A Lease whose ``spec`` is not an object counts as
held by an unknown holder and is taken over after ``duration``; nothing a record holds ends
the election thread (an unexpected error is logged in one line, rate-limited per cause, and
the next try comes after ``retry_period``). Every field of a record that is logged is bounded.

Why not the official client's ``kubernetes.leaderelection`` (kubernetes 37.0.3, read from its
code): ``LeaderElection.acquire`` and ``renew_loop`` are ``while True`` loops around
``time.sleep(retry_period)`` with no way to stop them, so there is no clean stop and no release
of the Lease on stop (the standby would wait ``duration`` after every planned restart);
``acquire`` sleeps ``retry_period`` after each failed try, never until the observed expiry;
``try_acquire_or_renew`` catches no transport error (``LeaseLock.get`` catches only
``ApiException``: a refused connection or a timeout from urllib3 ends ``run()`` and the
election with it); ``try_acquire_or_renew`` counts a record holding our identity as ours,
whoever wrote it (the edited-holderIdentity case above); ``Config.__init__`` calls
``sys.exit`` on a bad value and refuses ``retry_period < 1`` (our HA tests use 0.5 s);
``LeaseLock`` builds ``client.CoordinationV1Api()`` on the global default configuration
rather than our ``KubeClient`` (the generated API classes cost 22 MB and ~1 s at start, see
``sysinv_ext.conductor.kube``), and the ``leaderelection`` logger formats the 1 MB
holderIdentity of a hostile record into its lines unbounded ("Leader has switched to {}").
It does ignore the record's ``leaseDurationSeconds`` (it uses its own), which is the one
thing it would have got right here.
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
PEER_DURATION_FACTOR = 2.0  # a record's leaseDurationSeconds is believed up to this x ours
MAX_LOGGED = 80  # characters of a field taken from a record, in a log line
LOG_EVERY = 60.0  # s: the same problem of the Lease is logged at most this often
MALFORMED_HOLDER = "<spec is not an object>"  # not a host name: cannot be a candidate's


def _short(value: object, limit: int = MAX_LOGGED) -> str:
    """``value`` as text for a log line, at most about ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


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
        self._written: dict[str, Any] | None = None     # the spec of our last write
        self._written_version = ""                      # its resourceVersion, if answered
        self._logged: dict[str, float] = {}             # problem -> when last logged
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
            try:
                ok = self._try()
            except Exception as err:  # no record, no bug may end the election thread
                self._warn("unexpected", "Leader election: Lease %s/%s: unexpected %s: %s",
                           cfg.namespace, cfg.name, type(err).__name__, _short(str(err), 200))
                ok = False
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
        is free or ours (written by this process: a record naming us that we did not write is
        a peer's). The record's duration is bounded (``_peer_duration``)."""
        spec = self._observed or {}
        holder = spec.get("holderIdentity")
        if not holder or (holder == self.config.identity and spec == self._written):
            return None
        return self._observed_at + self._peer_duration(spec)

    def _peer_duration(self, spec: dict[str, Any]) -> float:
        """The record's ``leaseDurationSeconds``, believed between 1 s and PEER_DURATION_FACTOR
        times our own duration; outside (or not a number) the bound is used and logged."""
        cfg = self.config
        bound = PEER_DURATION_FACTOR * cfg.duration
        raw = spec.get("leaseDurationSeconds")
        if raw is None:
            return cfg.duration
        try:
            if isinstance(raw, bool):
                raise TypeError("a boolean")
            value = float(raw)
        except (TypeError, ValueError, OverflowError):
            value = float("nan")
        if 1.0 <= value <= bound:  # NaN fails both
            return value
        self._warn(f"duration {_short(raw)}", "Leader election: Lease %s/%s of %s has "
                   "leaseDurationSeconds %s, out of range (1 to %.0f s): waiting %.0f s at most",
                   cfg.namespace, cfg.name, _short(spec.get("holderIdentity")), _short(raw), bound,
                   bound)
        return bound

    def _warn(self, cause: str, message: str, *args: object) -> None:
        """A warning, logged at most once per LOG_EVERY seconds for the same ``cause``."""
        now = time.monotonic()
        last = self._logged.get(cause)
        if last is not None and now - last < LOG_EVERY:
            return
        if len(self._logged) > 64:
            self._logged.clear()
        self._logged[cause] = now
        LOG.warning(message, *args)

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
        """Create or replace the Lease with ``body``; remembers it as our last write (its spec,
        and the resourceVersion the server answered, when the answer is readable)."""
        cfg = self.config
        if create:
            response = self._client.request("POST", LEASES_PATH, path_params={"namespace": cfg.namespace},
                                            body=body)
        else:
            response = self._client.request("PUT", LEASE_PATH, path_params={
                "namespace": cfg.namespace, "name": cfg.name}, body=body)
        self._written, self._written_version = dict(body["spec"]), ""
        try:
            answer = json_body(response)
        except ValueError:  # written all the same; only the version is unknown
            return
        meta = answer.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("resourceVersion"), str):
            self._written_version = meta["resourceVersion"]

    def _spec_of(self, lease: object) -> dict[str, Any]:
        """The Lease's spec; one that is not an object counts as held by an unknown holder
        (taken over once it has not changed for ``duration``), logged."""
        cfg = self.config
        spec = lease.get("spec") if isinstance(lease, dict) else lease
        if spec is None:
            return {}
        if isinstance(spec, dict):
            if isinstance(lease, dict) and spec.get("holderIdentity") == cfg.identity \
                    and self._written is not None and spec != self._written and self._written_version \
                    and (lease.get("metadata") or {}).get("resourceVersion") == self._written_version:
                return self._written  # ours, as the server spells it
            return spec
        self._warn("spec", "Leader election: Lease %s/%s has a spec that is not an object (%s "
                   "%s): treated as held by an unknown holder", cfg.namespace, cfg.name,
                   type(spec).__name__, _short(spec))
        return {"holderIdentity": MALFORMED_HOLDER, "malformed": _short(spec, 200)}

    def _try(self) -> bool:
        """One acquire-or-renew attempt; False when someone else holds it or on any error."""
        cfg = self.config
        try:
            try:
                lease = self._read()
            except ApiException as err:
                if err.status != 404:
                    raise
                body = self._body(None)
                self._write(body, create=True)
                self._observe(body["spec"], backdate=0.0)
                return True
            spec = self._spec_of(lease)
            if spec != self._observed:
                self._observe(spec, backdate=min(_age(spec.get("renewTime")), cfg.retry_period))
                if spec.get("holderIdentity") == cfg.identity and spec != self._written:
                    self._warn("not ours", "Leader election: Lease %s/%s names %s, but this "
                               "process did not write that record: held by someone else until "
                               "it expires", cfg.namespace, cfg.name, _short(cfg.identity))
            expiry = self._peer_expiry()
            if expiry is not None and self._clock() < expiry:
                return False  # held by a live peer
            silent = self._clock() - self._observed_at  # since the peer's record last changed
            body = self._body(lease if isinstance(lease.get("spec"), dict) else
                              {"metadata": lease.get("metadata")}, taken=expiry is not None)
            self._write(body)
            self._observe(body["spec"], backdate=0.0)
            if expiry is not None:
                LOG.warning("Leader election: took Lease %s/%s over from %s (not renewed for %.0f s)",
                            cfg.namespace, cfg.name, _short(spec.get("holderIdentity")), silent)
            return True
        except ApiException as err:
            if err.status != 409:  # 409: another candidate won this round
                self._warn(f"HTTP {err.status}", "Leader election: Lease %s/%s: HTTP %s %s",
                           cfg.namespace, cfg.name, err.status, _short(err.reason))
        except (urllib3.exceptions.HTTPError, OSError, ValueError, TypeError,
                exception.KubeAPIError) as err:
            self._warn(f"unreachable {type(err).__name__}", "Leader election: Lease %s/%s "
                       "unreachable: %s", cfg.namespace, cfg.name, _short(str(err), 200))
        return False

    def _observe(self, spec: dict[str, Any], backdate: float) -> None:
        self._observed = dict(spec)
        self._observed_at = self._clock() - backdate

    def _body(self, lease: dict[str, Any] | None, *, release: bool = False,
              taken: bool = False) -> dict[str, Any]:
        """The Lease we write; ``taken``: over from another holder (or a record naming us that
        we did not write): a new acquireTime and one more transition."""
        cfg = self.config
        spec = (lease or {}).get("spec") or {}
        mine = spec.get("holderIdentity") == cfg.identity and not taken
        now = _now()
        new_spec = {
            "holderIdentity": "" if release else cfg.identity,
            "leaseDurationSeconds": 1 if release else max(1, int(round(cfg.duration))),
            "acquireTime": spec.get("acquireTime") if mine else now,
            "renewTime": now,
            "leaseTransitions": 0,
        }
        try:
            transitions = int(spec.get("leaseTransitions") or 0)
        except (TypeError, ValueError, OverflowError):
            transitions = 0
        new_spec["leaseTransitions"] = max(0, min(transitions, 2**31 - 2)) + (
            0 if mine or not spec else 1)
        meta: dict[str, Any] = {"name": cfg.name, "namespace": cfg.namespace}
        if lease is not None:
            old_meta = lease.get("metadata")
            meta["resourceVersion"] = old_meta.get("resourceVersion") if isinstance(old_meta, dict) \
                else None
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": new_spec}

    def _release(self) -> None:
        cfg = self.config
        try:
            lease = self._read()
            spec = lease.get("spec")
            if not isinstance(spec, dict) or spec.get("holderIdentity") != cfg.identity:
                return
            self._write(self._body(lease, release=True))
            LOG.info("Leader election: %s released Lease %s/%s", cfg.identity, cfg.namespace, cfg.name)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError, TypeError,
                exception.KubeAPIError) as err:
            LOG.warning("Leader election: could not release Lease %s/%s: %s", cfg.namespace,
                        cfg.name, _short(str(err), 200))
