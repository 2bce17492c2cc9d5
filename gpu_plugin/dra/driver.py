"""The GPU DRA driver: scan loop, ResourceSlice publishing, claim preparation, health.

:class:`GpuDraDriver` is what :mod:`gpu_plugin.dra.server` calls (the ``DraDriver`` protocol):

- :meth:`~GpuDraDriver.scan_once` discovers the cards (the device plugin's discovery), applies the
  health source (Level-Zero sidecar or xpumd, the device plugin's), and publishes the devices in
  the node's ResourceSlice; :meth:`~GpuDraDriver.run` repeats it every ``scan_interval`` seconds
  and at once on a drm uevent.  An API error is logged and retried with backoff (1 s doubling to
  ``max_backoff``), never fatal; a failed scan keeps the last devices.
- :meth:`~GpuDraDriver.prepare` reads each claim from the API server (kubelet sends only namespace,
  name and UID), takes the allocation results for this driver and this node's pool, writes the
  claim's CDI spec and checkpoints it; a claim already in the checkpoint is answered from it
  (nothing prepared twice).  A device that is no longer on the node, a claim that is gone,
  re-created (other UID) or not allocated: an error for that claim only.
- :meth:`~GpuDraDriver.unprepare` removes the claim's CDI spec and its checkpoint entry; unknown
  claims succeed (kubelet retries unprepare until it succeeds).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gpu_plugin.cards import discover_cards
from gpu_plugin.dra.api import ApiError, ClaimRef, DeviceHealth, PrepareResult
from gpu_plugin.dra.devices import DRIVER_NAME, DraDevice, HealthSource, dra_devices, slice_device
from gpu_plugin.dra.slices import SliceApi, SlicePublisher
from gpu_plugin.dra.state import Checkpoint, ClaimSpecs, PreparedClaim, PreparedDevice, valid_uid
from gpu_plugin.udev import DrmEvents

LOG = logging.getLogger(__name__)

_MAX_ERROR = 500

__all__ = ["DriverConfig", "GpuDraDriver", "ClaimApi"]


class ClaimApi(SliceApi, Protocol):
    def get_claim(self, namespace: str, name: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class DriverConfig:
    node_name: str
    sysfs_root: str
    devfs_root: str
    cdi_dir: str
    checkpoint_path: str
    scan_interval: float = 5.0
    max_backoff: float = 30.0
    taints: bool = True
    use_udev: bool = True


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR] + "..."


class GpuDraDriver:
    """See the module docstring."""

    def __init__(self, config: DriverConfig, api: ClaimApi, health: HealthSource | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.api = api
        self.health = health
        self.clock = clock
        self.publisher = SlicePublisher(api, config.node_name)
        self.specs = ClaimSpecs(config.cdi_dir)
        self.checkpoint = Checkpoint(config.checkpoint_path)
        self._claims_lock = threading.Lock()
        self.prepared: dict[str, PreparedClaim] = self.checkpoint.load()
        self._changed = threading.Condition()
        self._devices: dict[str, DraDevice] = {}
        self._health_time = 0
        self._generation = 0  # bumped on every device/health change, wakes the health streams
        self._wake = threading.Event()
        self._publish_due = 0.0
        self._backoff = 1.0
        self._last_error = ""
        if self.prepared:
            LOG.info("Restored %d prepared claim(s) from %s", len(self.prepared), config.checkpoint_path)

    # ------------------------------------------------------------------ scanning and publishing
    @property
    def devices(self) -> dict[str, DraDevice]:
        with self._changed:
            return dict(self._devices)

    def rescan(self) -> None:
        self._wake.set()

    def scan_once(self) -> None:
        try:
            cards = discover_cards(self.config.sysfs_root)
            found = {d.name: d for d in dra_devices(cards, self.config.sysfs_root, self.config.devfs_root,
                                                    self.health)}
        except OSError as err:
            LOG.warning("GPU scan failed (%s); keeping the last devices", err)
            found = self.devices
        with self._changed:
            if found != self._devices:
                added = sorted(set(found) - set(self._devices))
                removed = sorted(set(self._devices) - set(found))
                if added or removed:
                    LOG.info("GPU devices: %d (added %s, removed %s)", len(found), added, removed)
                for name in sorted(set(found) & set(self._devices)):
                    if found[name].healthy != self._devices[name].healthy:
                        LOG.info("%s (%s): %s -> %s", name, found[name].card, self._devices[name].health,
                                 found[name].health)
                self._devices = found
                self._health_time = int(self.clock())
                self._generation += 1
                self._changed.notify_all()
        self._publish()

    def _publish(self) -> None:
        now = time.monotonic()
        if now < self._publish_due:
            return
        try:
            self.publisher.publish([slice_device(d, taints=self.config.taints)
                                    for _, d in sorted(self.devices.items())])
        except Exception as err:  # ApiError, or a bad answer: never let it end the loop
            message = _bounded(str(err))
            (LOG.warning if message != self._last_error else LOG.debug)(
                "Publishing the ResourceSlice failed (%s); retrying in %.0f s", message, self._backoff)
            self._last_error = message
            self._publish_due = now + self._backoff
            self._backoff = min(self._backoff * 2, self.config.max_backoff)
            return
        if self._last_error:
            LOG.info("ResourceSlice published again")
        self._last_error = ""
        self._backoff = 1.0
        self._publish_due = 0.0

    def run(self, stop: threading.Event, each: Callable[[], None] | None = None) -> None:
        """Scan and publish until ``stop``; ``each`` runs after every pass (the registration check)."""
        udev = DrmEvents(self.rescan) if self.config.use_udev else None
        if udev is not None:
            udev.start()
        def wake_on_stop() -> None:
            stop.wait()
            self._wake.set()

        stop_waker = threading.Thread(target=wake_on_stop, name="dra-stop", daemon=True)
        stop_waker.start()
        try:
            while not stop.is_set():
                self._wake.clear()
                self.scan_once()
                if each is not None:
                    each()
                wait = self.config.scan_interval
                if self._publish_due:
                    wait = min(wait, max(0.05, self._publish_due - time.monotonic()))
                self._wake.wait(wait)
        finally:
            if udev is not None:
                udev.stop()
            with self._changed:
                self._changed.notify_all()

    # ------------------------------------------------------------------ claims
    def prepare(self, claims: Sequence[ClaimRef]) -> dict[str, PrepareResult]:
        results: dict[str, PrepareResult] = {}
        with self._claims_lock:
            for claim in claims:
                try:
                    results[claim.uid] = self._prepare_one(claim)
                except ApiError as err:  # the claim is gone, or no API server: kubelet retries
                    LOG.warning("Preparing claim %s/%s failed: %s", claim.namespace[:253], claim.name[:253],
                                _bounded(str(err)))
                    results[claim.uid] = PrepareResult(error=_bounded(f"prepare failed: {err}"))
                except Exception as err:  # one claim's failure is that claim's error, never a crash
                    LOG.exception("Preparing claim %s/%s failed", claim.namespace[:253], claim.name[:253])
                    results[claim.uid] = PrepareResult(error=_bounded(f"prepare failed: {err}"))
        return results

    def _prepare_one(self, claim: ClaimRef) -> PrepareResult:
        known = self.prepared.get(claim.uid)
        if known is not None:
            LOG.debug("Claim %s already prepared", claim.uid)
            return PrepareResult(devices=known.devices)
        if not valid_uid(claim.uid):
            return PrepareResult(error=_bounded(f"invalid claim UID {claim.uid!r}"))
        obj = self.api.get_claim(claim.namespace, claim.name)
        if obj.get("metadata", {}).get("uid") != claim.uid:
            return PrepareResult(error=_bounded(
                f"claim {claim.namespace}/{claim.name} has UID {obj.get('metadata', {}).get('uid')}, "
                f"not {claim.uid} (deleted and re-created?)"))
        allocation = (obj.get("status") or {}).get("allocation")
        if not allocation:
            return PrepareResult(error=_bounded(f"claim {claim.namespace}/{claim.name} is not allocated"))
        current = self.devices
        picked: list[tuple[str, Any]] = []
        requests: dict[str, list[str]] = {}
        for result in (allocation.get("devices") or {}).get("results") or []:
            if result.get("driver") != DRIVER_NAME or result.get("pool") != self.config.node_name:
                continue
            name = str(result.get("device"))
            device = current.get(name)
            if device is None:
                return PrepareResult(error=_bounded(
                    f"device {name} of claim {claim.namespace}/{claim.name} is not on node "
                    f"{self.config.node_name} any more"))
            if name not in requests:
                picked.append((name, device.info))
                requests[name] = []
            requests[name].append(str(result.get("request", "")))
        cdi_ids = self.specs.write(claim.uid, picked) if picked else []
        devices = tuple(PreparedDevice(request_names=tuple(requests[name]), pool=self.config.node_name,
                                       device=name, cdi_ids=(cdi,))
                        for (name, _), cdi in zip(picked, cdi_ids, strict=True))
        prepared = dict(self.prepared)
        prepared[claim.uid] = PreparedClaim(uid=claim.uid, namespace=claim.namespace, name=claim.name,
                                            devices=devices)
        self.checkpoint.save(prepared)
        self.prepared = prepared
        LOG.info("Prepared claim %s/%s (%s): %s", claim.namespace[:253], claim.name[:253], claim.uid,
                 [d.device for d in devices])
        return PrepareResult(devices=devices)

    def unprepare(self, claims: Sequence[ClaimRef]) -> dict[str, str]:
        results: dict[str, str] = {}
        with self._claims_lock:
            for claim in claims:
                try:
                    if valid_uid(claim.uid):
                        self.specs.remove(claim.uid)
                    if claim.uid in self.prepared:
                        prepared = dict(self.prepared)
                        del prepared[claim.uid]
                        self.checkpoint.save(prepared)
                        self.prepared = prepared
                        LOG.info("Unprepared claim %s/%s (%s)", claim.namespace[:253], claim.name[:253],
                                 claim.uid)
                    results[claim.uid] = ""
                except OSError as err:
                    LOG.error("Unpreparing claim %s failed: %s", claim.uid, err)
                    results[claim.uid] = _bounded(f"unprepare failed: {err}")
        return results

    # ------------------------------------------------------------------ health
    def health_snapshot(self) -> list[DeviceHealth]:
        with self._changed:
            return [DeviceHealth(pool=self.config.node_name, device=name, healthy=d.healthy,
                                 updated=self._health_time) for name, d in sorted(self._devices.items())]

    def health_updates(self, active: Callable[[], bool]) -> Iterator[list[DeviceHealth]]:
        seen = -1
        while active():
            with self._changed:
                if self._generation == seen:
                    self._changed.wait(1.0)
                    continue
                seen = self._generation
            yield self.health_snapshot()
