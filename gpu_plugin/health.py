"""GPU health from the Level-Zero sidecar, with upstream's rules.

Port of upstream's ``levelzeroservice`` client plus ``healthStatusForCardLZ``:
a card is Unhealthy when the sidecar says memory, bus or SoC is not OK, or a
temperature (truncated to whole degrees, as upstream) is above its limit
(strict >).  Anything that gives no information (sidecar absent, gRPC error,
in-band error code) counts as Healthy, so a restarting sidecar causes no
flapping.  Unlike upstream, an in-band error is not read as "not OK".
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import grpc

from gpu_plugin.deviceplugin.api import Health
from gpu_plugin.levelzero._api import levelzero_pb2 as lz
from gpu_plugin.levelzero._api import levelzero_pb2_grpc as lz_grpc
from gpu_plugin.scan import GpuCard

LOG = logging.getLogger(__name__)

DEFAULT_TEMP_LIMIT = 100

__all__ = ["DEFAULT_TEMP_LIMIT", "TempLimits", "LevelZeroHealth"]


@dataclass(frozen=True)
class TempLimits:
    """``-temp-limit`` (global), ``-gpu-temp-limit``, ``-memory-temp-limit`` in °C."""

    global_: int = DEFAULT_TEMP_LIMIT
    gpu: int = DEFAULT_TEMP_LIMIT
    memory: int = DEFAULT_TEMP_LIMIT


class LevelZeroHealth:
    """Callable ``card -> Health`` asking the sidecar at ``socket_path`` (a unix socket)."""

    def __init__(self, socket_path: str, limits: TempLimits = TempLimits(), *, timeout: float = 2.0) -> None:
        self.socket_path = socket_path
        self.limits = limits
        self.timeout = timeout
        # Short reconnect backoff: after a sidecar restart, answers resume within one scan period.
        self._channel = grpc.insecure_channel(f"unix://{socket_path}", options=[
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000)])
        self._stub = lz_grpc.LevelzeroStub(self._channel)  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self._statuses: dict[str, Health] = {}
        self._reachable = True

    def close(self) -> None:
        self._channel.close()

    def __call__(self, card: GpuCard) -> Health:
        if card.bdf is None:
            return Health.HEALTHY
        health = self._health(card.bdf)
        with self._lock:
            previous = self._statuses.get(card.name)
            if previous is not health:
                log = LOG.debug if previous is None and health is Health.HEALTHY else LOG.info
                log("%s (%s): %s => %s", card.name, card.bdf,
                    previous.value if previous else "new", health.value)
                self._statuses[card.name] = health
        return health

    def _rpc_failed(self, what: str, err: grpc.RpcError) -> None:
        with self._lock:
            first = self._reachable
            self._reachable = False
        log = LOG.warning if first else LOG.debug
        log("Level-Zero %s failed (%s); treating devices as healthy", what, err.code())

    def _health(self, bdf: str) -> Health:
        device = lz.DeviceId(bdfAddress=bdf)
        try:
            dh = self._stub.GetDeviceHealth(device, timeout=self.timeout)
        except grpc.RpcError as err:
            self._rpc_failed("device health retrieval", err)
            return Health.HEALTHY
        with self._lock:
            if not self._reachable:
                LOG.info("Level-Zero sidecar at %s answers again", self.socket_path)
            self._reachable = True
        if dh.HasField("error") and dh.error.errorcode != 0:
            LOG.debug("%s: health request returned internal error 0x%X (%s)", bdf, dh.error.errorcode,
                      dh.error.description)
            return Health.HEALTHY
        LOG.debug("%s: health indicators memory=%s bus=%s soc=%s", bdf, dh.memory_ok, dh.bus_ok, dh.soc_ok)
        if not (dh.memory_ok and dh.bus_ok and dh.soc_ok):
            return Health.UNHEALTHY
        try:
            temps = self._stub.GetDeviceTemperature(device, timeout=self.timeout)
        except grpc.RpcError as err:
            self._rpc_failed("device temperature retrieval", err)
            return Health.HEALTHY
        if temps.HasField("error") and temps.error.errorcode != 0:
            LOG.debug("%s: temperature request returned internal error 0x%X (%s)", bdf, temps.error.errorcode,
                      temps.error.description)
            return Health.HEALTHY
        glob, gpu, mem = int(getattr(temps, "global")), int(temps.gpu), int(temps.memory)
        LOG.debug("%s: temperatures memory=%dC gpu=%dC global=%dC", bdf, mem, gpu, glob)
        if gpu > self.limits.gpu or glob > self.limits.global_ or mem > self.limits.memory:
            return Health.UNHEALTHY
        return Health.HEALTHY
