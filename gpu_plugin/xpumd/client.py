"""Device health streamed from the XPU Manager daemon (xpumd), as upstream's ``xpumdservice``.

:class:`XpumdService` keeps a ``deviceinfo.DeviceInfo/WatchDeviceHealth`` stream open in a
background thread and caches, per PCI BDF, whether any health domain reports a severity at or
above the limit (``-xpumd-severity-limit``: failed, critical or warning; default critical, as
upstream since PR #2318 and Intel's DRA driver: a warning such as "ECC disabled" is no fault).
:class:`XpumdHealth` is the plugin's health source (``card -> Health``, the call shape of
:class:`gpu_plugin.health.LevelZeroHealth`): no data for a card = no information = Healthy.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import grpc

from gpu_plugin.cards import GpuCard
from gpu_plugin.deviceplugin.api import Health
from gpu_plugin.xpumd._api import deviceinfo_pb2 as pb
from gpu_plugin.xpumd._api import deviceinfo_pb2_grpc as pb_grpc

LOG = logging.getLogger(__name__)

#: upstream's xpumdservice.DefaultSocketPath (what its kustomize overlay passes to -xpumd-endpoint)
DEFAULT_SOCKET_PATH = "/run/xpumd/intelxpuinfo.sock"
#: the severity limit's names -> the lowest xpumd severity that makes a device unhealthy
SEVERITY_LIMITS = {"failed": pb.SEVERITY_LEVEL_FAILED, "critical": pb.SEVERITY_LEVEL_CRITICAL,
                   "warning": pb.SEVERITY_LEVEL_WARNING}
DEFAULT_SEVERITY_LIMIT = "critical"  #: upstream's default since PR #2318 (it was warning)

__all__ = ["DEFAULT_SOCKET_PATH", "DEFAULT_SEVERITY_LIMIT", "SEVERITY_LIMITS", "NoHealthData", "Timing",
           "XpumdService", "XpumdHealth"]


def _severity_name(value: int) -> str:
    try:
        return str(pb.SeverityLevel.Name(value))
    except ValueError:
        return str(value)


class NoHealthData(LookupError):
    """upstream's ErrNoHealthData: nothing received yet for this BDF."""

    def __init__(self, bdf: str) -> None:
        super().__init__(f"no health data available yet: {bdf}")
        self.bdf = bdf


@dataclass(frozen=True)
class Timing:
    """Upstream's reconnect constants, plus ours for what happens after upstream would give up."""

    connect_attempts_max: int = 30         #: upstream connectAttemptsMax
    connect_attempt_interval: float = 10.0  #: upstream connectAttemptInterval (s)
    arbitrary_error_delay: float = 5.0     #: upstream arbitraryErrorDelay (s)
    max_arbitrary_errors: int = 5          #: upstream maxArbitraryErrors
    backoff_cap: float = 300.0             #: ours: longest wait once upstream's limits are exhausted


class _Cancellable(Protocol):
    def cancel(self) -> bool: ...


class XpumdService:
    """Background WatchDeviceHealth listener with a per-BDF health cache (upstream's XpumdService).

    Unlike upstream, it never gives up: once upstream's attempt limits are used up it says so
    once and keeps retrying with a doubling delay capped at ``timing.backoff_cap``.
    """

    def __init__(self, socket_path: str, timing: Timing = Timing(), *,
                 severity_limit: str = DEFAULT_SEVERITY_LIMIT) -> None:
        if severity_limit not in SEVERITY_LIMITS:
            raise ValueError(f"unknown xpumd severity limit {severity_limit!r} "
                             f"(want one of {', '.join(SEVERITY_LIMITS)})")
        self.socket_path = socket_path
        self.timing = timing
        self.severity_limit = severity_limit
        self._unhealthy_at = SEVERITY_LIMITS[severity_limit]
        self._healths: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pending: _Cancellable | None = None  # the connect wait or stream to cancel on close()
        self._thread: threading.Thread | None = None
        self._connect_failures = 0
        self._errors = 0
        self.streams_opened = 0  #: how many WatchDeviceHealth streams delivered data (for logs and tests)

    # -- upstream's GetDeviceHealth ---------------------------------------------------------------

    def get_device_health(self, bdf: str) -> bool:
        """Latest health of ``bdf`` (True = healthy); :class:`NoHealthData` before any data for it."""
        with self._lock:
            if bdf not in self._healths:
                raise NoHealthData(bdf)
            return self._healths[bdf]

    def apply_device_health_update(self, devices: Iterable[pb.DeviceHealth]) -> None:
        """Upstream's applyDeviceHealthUpdate: devices in the message are replaced, others kept."""
        updates: dict[str, bool] = {}
        for dev in devices:
            if not dev.HasField("info") or not dev.info.HasField("pci"):
                continue
            bdf, healthy = dev.info.pci.bdf, True
            for hs in dev.health:
                if hs.severity >= self._unhealthy_at:
                    LOG.debug("xpumd: device %s health issue in domain %r: severity=%s reason=%r", bdf,
                              hs.name, _severity_name(hs.severity), hs.reason)
                    healthy = False
            updates[bdf] = healthy
        with self._lock:
            self._healths.update(updates)

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> XpumdService:
        self._thread = threading.Thread(target=self.run, name="xpumd-health", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop the listener (upstream: cancel Run's context) and wait for its thread."""
        self._stop.set()
        with self._lock:
            if self._pending is not None:
                self._pending.cancel()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Upstream's Run: blocks until :meth:`close`; never raises."""
        LOG.info("xpumd: starting listener, connecting to unix://%s", self.socket_path)
        options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 2000)]
        with grpc.insecure_channel(f"unix://{self.socket_path}", options=options) as channel:
            stub = pb_grpc.DeviceInfoStub(channel)  # type: ignore[no-untyped-call]
            while not self._stop.is_set():
                try:
                    self._round(stub)
                except Exception:  # a long-running listener never dies: log, wait, go on
                    LOG.exception("xpumd: unexpected listener error; retrying")
                    self._stop.wait(self.timing.arbitrary_error_delay)
        LOG.debug("xpumd: listener stopped")

    # -- one connect + stream round ---------------------------------------------------------------

    def _track(self, pending: _Cancellable | None) -> None:
        with self._lock:
            self._pending = pending
        if pending is not None and self._stop.is_set():
            pending.cancel()

    def _round(self, stub: pb_grpc.DeviceInfoStub) -> None:
        # Fail-fast, like Go's NewStream: UNAVAILABLE at once while xpumd cannot be reached.
        call = stub.WatchDeviceHealth(pb.WatchDeviceHealthRequest())
        self._track(call)
        received = 0
        try:
            for msg in call:
                if received == 0:
                    self._connected()
                received += 1
                self._errors = 0
                LOG.debug("xpumd: received health entries for %d devices", len(msg.devices))
                self.apply_device_health_update(msg.devices)
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else None
            if self._stop.is_set():
                pass
            elif received == 0 and code is grpc.StatusCode.UNAVAILABLE:  # upstream: WatchDeviceHealth failed
                self._connect_failed(code.name)
            else:
                self._receive_failed(err)
            return
        finally:
            self._track(None)
        if self._stop.is_set():
            return
        if received == 0:  # ours: no busy loop against a server that closes at once
            self._connect_failed("stream closed before any data")
        else:
            LOG.error("xpumd: stream closed by remote (EOF), reconnecting")

    def _connected(self) -> None:
        self.streams_opened += 1
        if self._connect_failures or self._errors or self.streams_opened == 1:
            LOG.info("xpumd: receiving device health from %s", self.socket_path)
        self._connect_failures = 0

    def _connect_failed(self, why: str) -> None:
        self._connect_failures += 1
        t, n = self.timing, self._connect_failures
        if n <= t.connect_attempts_max:
            LOG.warning("xpumd: WatchDeviceHealth attempt %d/%d failed (%s at %s)", n, t.connect_attempts_max,
                        why, self.socket_path)
            delay = t.connect_attempt_interval
        else:
            delay = self._backoff(t.connect_attempt_interval, n - t.connect_attempts_max)
            log = LOG.error if n == t.connect_attempts_max + 1 else LOG.debug
            log("xpumd: failed to connect within %d attempts (upstream gives up here); last known health "
                "is kept, devices without data count as healthy; still retrying (next in %.1fs)",
                t.connect_attempts_max, delay)
        self._stop.wait(delay)

    def _receive_failed(self, err: grpc.RpcError) -> None:
        self._errors += 1
        t, n = self.timing, self._errors
        code = err.code() if isinstance(err, grpc.Call) else err
        if n <= t.max_arbitrary_errors:
            LOG.error("xpumd: error receiving data (%s), retrying (%d/%d)", code, n, t.max_arbitrary_errors)
            delay = t.arbitrary_error_delay
        else:
            delay = self._backoff(t.arbitrary_error_delay, n - t.max_arbitrary_errors)
            log = LOG.error if n == t.max_arbitrary_errors + 1 else LOG.debug
            log("xpumd: %d consecutive errors (upstream gives up here; last: %s), still retrying "
                "(next in %.1fs)", n - 1, code, delay)
        self._stop.wait(delay)

    def _backoff(self, base: float, beyond: int) -> float:
        return float(min(self.timing.backoff_cap, base * 2 ** min(beyond, 30)))


class XpumdHealth:
    """Callable ``card -> Health`` over an :class:`XpumdService` (upstream's healthStatusForCardXpumd)."""

    def __init__(self, socket_path: str, timing: Timing = Timing(), *,
                 severity_limit: str = DEFAULT_SEVERITY_LIMIT) -> None:
        self.service = XpumdService(socket_path, timing, severity_limit=severity_limit)
        self._lock = threading.Lock()
        self._statuses: dict[str, Health] = {}
        self._no_data: set[str] = set()

    def start(self) -> XpumdHealth:
        self.service.start()
        return self

    def close(self) -> None:
        self.service.close()

    def __call__(self, card: GpuCard) -> Health:
        if card.bdf is None:
            return Health.HEALTHY
        try:
            healthy = self.service.get_device_health(card.bdf)
        except NoHealthData as err:
            with self._lock:
                first = card.bdf not in self._no_data
                self._no_data.add(card.bdf)
            (LOG.warning if first else LOG.debug)("xpumd device health retrieval failed: %s; treating %s as "
                                                  "healthy", err, card.name)
            health = Health.HEALTHY
        else:
            LOG.debug("xpumd health for %s: Healthy=%s", card.bdf, healthy)
            health = Health.HEALTHY if healthy else Health.UNHEALTHY
        with self._lock:
            previous = self._statuses.get(card.name)
            if previous is not health:
                log = LOG.debug if previous is None and health is Health.HEALTHY else LOG.info
                log("%s (%s): %s => %s", card.name, card.bdf, previous.value if previous else "new",
                    health.value)
                self._statuses[card.name] = health
        return health
