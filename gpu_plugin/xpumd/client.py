"""Device health streamed from the XPU Manager daemon (xpumd), as upstream's ``xpumdservice``.

:class:`XpumdService` keeps a ``deviceinfo.DeviceInfo/WatchDeviceHealth`` stream open in a
background thread and caches, per PCI BDF, whether any health domain reports a severity at or
above the limit (``-xpumd-severity-limit``: failed, critical or warning; default critical, as
upstream since PR #2318 and Intel's DRA driver: a warning such as "ECC disabled" is no fault).

xpumd not ready (absent, crash-looping as xpumd v2 on Gen9.5 iGPUs, intel/xpumanager#129, or
refusing the stream while uninitialised): the plugin keeps advertising and allocating; devices
with no xpumd data count as healthy, with one warning per ``warn_interval`` naming why, never one
per scan; it never exits (upstream panics after 30 attempts). It reconnects as soon as xpumd's
socket appears or is re-created (checked twice a second during every wait, on a fresh channel
so no gRPC backoff delays it), and otherwise retries with upstream's intervals, then a doubling
delay capped at ``Timing.backoff_cap``. Once data came, a lost stream keeps the last known health
(no flapping while xpumd restarts), as upstream.
:class:`XpumdHealth` is the plugin's health source (``card -> Health``, the call shape of
:class:`gpu_plugin.health.LevelZeroHealth`): no data for a card = no information = Healthy.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
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
    backoff_cap: float = 60.0              #: ours: longest wait once upstream's limits are exhausted
    socket_poll: float = 0.5               #: ours: how often a wait checks whether the socket (re)appeared


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
        self._fresh_channel = False  #: set when the socket (re)appeared: dial again on a new channel
        self._attempt_socket: tuple[int, int, int] | None = None  #: the socket as the last attempt saw it
        self.streams_opened = 0  #: how many WatchDeviceHealth streams delivered data (for logs and tests)
        #: why xpumd gives no data (None: streaming)
        self.not_ready: str | None = "has sent no health data yet"

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
        while not self._stop.is_set():
            self._fresh_channel = False
            with grpc.insecure_channel(f"unix://{self.socket_path}", options=options) as channel:
                stub = pb_grpc.DeviceInfoStub(channel)  # type: ignore[no-untyped-call]
                while not self._stop.is_set() and not self._fresh_channel:
                    try:
                        self._round(stub)
                    except Exception:  # a long-running listener never dies: log, wait, go on
                        LOG.exception("xpumd: unexpected listener error; retrying")
                        self._wait(self.timing.arbitrary_error_delay)
        LOG.debug("xpumd: listener stopped")

    def _socket_identity(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.socket_path)
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_ctime_ns

    def _wait(self, delay: float) -> None:
        """Wait ``delay`` seconds, less if stopped or if xpumd's socket appeared or was re-created
        since the last attempt (xpumd came back): then the next one dials at once, on a fresh channel."""
        before = self._attempt_socket
        deadline = time.monotonic() + delay
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.wait(min(self.timing.socket_poll, left)):
                return
            now = self._socket_identity()
            if now is not None and now != before:
                LOG.info("xpumd: %s %s, connecting now", self.socket_path,
                         "appeared" if before is None else "was re-created")
                self._fresh_channel = True
                return

    # -- one connect + stream round ---------------------------------------------------------------

    def _track(self, pending: _Cancellable | None) -> None:
        with self._lock:
            self._pending = pending
        if pending is not None and self._stop.is_set():
            pending.cancel()

    def _round(self, stub: pb_grpc.DeviceInfoStub) -> None:
        # Fail-fast, like Go's NewStream: UNAVAILABLE at once while xpumd cannot be reached.
        self._attempt_socket = self._socket_identity()
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
        self.not_ready = None
        self.streams_opened += 1
        if self._connect_failures or self._errors or self.streams_opened == 1:
            LOG.info("xpumd: receiving device health from %s", self.socket_path)
        self._connect_failures = 0

    def _connect_failed(self, why: str) -> None:
        self._connect_failures += 1
        if self.streams_opened == 0 or self.not_ready is not None:
            self.not_ready = f"is unreachable ({why})"
        t, n = self.timing, self._connect_failures
        if n <= t.connect_attempts_max:
            LOG.warning("xpumd: WatchDeviceHealth attempt %d/%d failed (%s at %s)", n, t.connect_attempts_max,
                        why, self.socket_path)
            delay = t.connect_attempt_interval
        else:
            delay = self._backoff(t.connect_attempt_interval, n - t.connect_attempts_max)
            log = LOG.error if n == t.connect_attempts_max + 1 else LOG.debug
            log("xpumd: failed to connect within %d attempts (upstream gives up here); last known health "
                "is kept, devices without data count as healthy; still retrying (next in %.1fs, or as "
                "soon as the socket is re-created)", t.connect_attempts_max, delay)
        self._wait(delay)

    def _receive_failed(self, err: grpc.RpcError) -> None:
        self._errors += 1
        t, n = self.timing, self._errors
        code = err.code() if isinstance(err, grpc.Call) else err
        if self.streams_opened == 0 or self.not_ready is not None:
            self.not_ready = f"refuses the stream ({getattr(code, 'name', code)})"
        if n <= t.max_arbitrary_errors:
            LOG.error("xpumd: error receiving data (%s), retrying (%d/%d)", code, n, t.max_arbitrary_errors)
            delay = t.arbitrary_error_delay
        else:
            delay = self._backoff(t.arbitrary_error_delay, n - t.max_arbitrary_errors)
            log = LOG.error if n == t.max_arbitrary_errors + 1 else LOG.debug
            log("xpumd: %d consecutive errors (upstream gives up here; last: %s), still retrying "
                "(next in %.1fs)", n - 1, code, delay)
        self._wait(delay)

    def _backoff(self, base: float, beyond: int) -> float:
        return float(min(self.timing.backoff_cap, base * 2 ** min(beyond, 30)))


class XpumdHealth:
    """Callable ``card -> Health`` over an :class:`XpumdService` (upstream's healthStatusForCardXpumd).

    A card xpumd has said nothing about is Healthy; that is logged as a warning at most once per
    ``warn_interval`` seconds (the first card of the interval, and why xpumd gives no data), at
    debug level otherwise: a scan every 5 s of 64 cards must not flood the log.
    """

    def __init__(self, socket_path: str, timing: Timing = Timing(), *,
                 severity_limit: str = DEFAULT_SEVERITY_LIMIT, warn_interval: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service = XpumdService(socket_path, timing, severity_limit=severity_limit)
        self.warn_interval = warn_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._statuses: dict[str, Health] = {}
        self._warned_at = float("-inf")

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
            now = self._clock()
            with self._lock:
                due = now - self._warned_at >= self.warn_interval
                if due:
                    self._warned_at = now
            why = self.service.not_ready or "streams, but nothing about this device yet"
            (LOG.warning if due else LOG.debug)(
                "xpumd device health retrieval failed: %s (xpumd %s); treating %s and any other device "
                "without xpumd data as healthy (said again in %.0f s if still so)", err, why, card.name,
                self.warn_interval)
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
