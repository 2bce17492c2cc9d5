"""The Intel GPU plugin's glue: scan loop, health, udev trigger, WSL mode, wiring to the framework.

:class:`GpuScanner` implements the framework's ``Scanner``: it rescans sysfs every
``scan_interval`` seconds (or at once on a drm uevent or :meth:`GpuScanner.rescan`),
applies health, and hands the framework whole trees (the framework dedupes).
:func:`build_manager` connects a scanner, the allocation policy and the CDI writer
to a :class:`~gpu_plugin.deviceplugin.manager.Manager`.  Defaults live in cli.py.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from gpu_plugin import scan as gpuscan
from gpu_plugin.cdi import CdiSpecWriter
from gpu_plugin.common import memory
from gpu_plugin.deviceplugin.api import (
    Allocator,
    DeviceID,
    DeviceInfo,
    DeviceSpec,
    DeviceTree,
    Health,
    Mount,
    Notifier,
    PreferredAllocator,
    ResourceType,
    Scanner,
)
from gpu_plugin.deviceplugin.manager import Manager
from gpu_plugin.deviceplugin.metrics import FrameworkMetrics
from gpu_plugin.metrics import NO_SCAN_METRICS, ScanMetrics, scan_metrics
from gpu_plugin.policies import PolicyAllocator
from gpu_plugin.rm import RmConfig
from gpu_plugin.rm import wire as rm_wire
from gpu_plugin.udev import DrmEvents

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

LOG = logging.getLogger(__name__)

NAMESPACE = "gpu.intel.com"
WSL_RESOURCE = ResourceType("dxg")
WSL_LIB_PATH = "/usr/lib/wsl"
ZE_AFFINITY_MASK = "ZE_AFFINITY_MASK"

HealthSource = Callable[[gpuscan.GpuCard], Health]

__all__ = ["NAMESPACE", "GpuScanner", "WslScanner", "PluginConfig", "build_manager"]


class _Loop:
    """Wait ``interval`` seconds, or less when woken, until ``stop`` is set."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event, once: Callable[[], None]) -> None:
        def wake_on_stop() -> None:
            stop.wait()
            self._wake.set()

        threading.Thread(target=wake_on_stop, name="scan-stop", daemon=True).start()
        while not stop.is_set():
            self._wake.clear()
            once()
            self._wake.wait(min(self.interval, threading.TIMEOUT_MAX))  # inf would overflow


class GpuScanner:
    """Scans ``sysfs_root``/``devfs_root`` for Intel GPUs and notifies whole trees."""

    def __init__(self, sysfs_root: str, devfs_root: str,
                 options: gpuscan.ScanOptions = gpuscan.ScanOptions(), *, scan_interval: float = 5.0,
                 health: HealthSource | None = None, use_udev: bool = True,
                 metrics: ScanMetrics = NO_SCAN_METRICS) -> None:
        self.sysfs_root = sysfs_root
        self.metrics = metrics
        self.devfs_root = devfs_root
        self.options = options
        self.health = health
        self.use_udev = use_udev
        self._loop = _Loop(scan_interval)
        # As upstream: by-path mounts only if dri/by-path existed when the plugin started.
        self.bypath_found = os.path.isdir(os.path.join(devfs_root, "dri", "by-path"))
        if not self.bypath_found:
            LOG.warning("No %s: by-path mounts disabled", os.path.join(devfs_root, "dri", "by-path"))
        self._counts: dict[str, int] = {}
        self._failure: str | None = None  #: the failure logged last (None: last scan worked)

    def rescan(self) -> None:
        """Scan now instead of at the end of the current interval."""
        self._loop.wake()

    def scan_once(self) -> DeviceTree:
        return gpuscan.scan(self.sysfs_root, self.devfs_root, self.options,
                            bypath_found=self.bypath_found, health=self.health)

    def scan(self, notifier: Notifier, stop: threading.Event) -> None:
        LOG.info("GPU (i915/xe) resource share count = %d", self.options.shared_dev_num)
        udev = DrmEvents(self.rescan) if self.use_udev else None
        if udev is not None:
            udev.start()

        def once() -> None:
            try:
                with self.metrics.scan():
                    tree = self.scan_once()
            except Exception as err:  # never die: log (once per distinct failure), keep the last tree
                self._scan_failed(err)
                return
            if self._failure is not None:
                LOG.info("GPU scan works again (%s)", self._failure)
                self._failure = None
            changed = self._log_counts(tree)
            notifier.notify(tree)
            if changed:  # the scan's and the update's garbage back to the kernel: idle RSS
                memory.release_free_memory()

        try:
            self._loop.run(stop, once)
        finally:
            if udev is not None:
                udev.stop()

    def _scan_failed(self, err: Exception) -> None:
        """A failed scan keeps the devices advertised (a read failure is not "no GPU"; upstream
        would advertise none).  Logged when it starts or changes, not on every rescan: one line
        for an OSError (e.g. class/drm unreadable), a traceback for anything unexpected."""
        text = str(err) if isinstance(err, OSError) else repr(err)
        if text == self._failure:
            LOG.debug("GPU scan still failing: %s", text)
            return
        self._failure = text
        if isinstance(err, OSError):
            LOG.error("GPU scan failed: %s; keeping the last device tree, retrying every %g s",
                      text, self._loop.interval)
        else:
            LOG.error("GPU scan failed; keeping the last device tree", exc_info=err)

    def _log_counts(self, tree: DeviceTree) -> bool:
        """Log each resource whose device count changed; True if any did."""
        changed = False
        for name in sorted(set(tree) | set(self._counts)):
            count = len(tree.get(ResourceType(name), {}))
            if count != self._counts.get(name, 0):
                LOG.info("GPU scan update: %d->%d '%s' resources found",
                         self._counts.get(name, 0), count, name)
                self._counts[name] = count
                changed = True
        return changed


class WslScanner:
    """``-wsl``: devices are Level-Zero indices (``dxg`` resource, ``/dev/dxg``), as upstream's wslGpuScan."""

    def __init__(self, levelzero_socket: str, devfs_root: str, shared_dev_num: int = 1, *,
                 scan_interval: float = 5.0, timeout: float = 2.0) -> None:
        self.levelzero_socket = levelzero_socket
        self.devfs_root = devfs_root
        self.shared_dev_num = shared_dev_num
        self.timeout = timeout
        self._loop = _Loop(scan_interval)

    def tree_for(self, indices: list[int]) -> DeviceTree:
        node = DeviceSpec("/dev/dxg", os.path.join(self.devfs_root, "dxg"), "rw")
        mount = Mount(WSL_LIB_PATH, WSL_LIB_PATH, True)
        info = DeviceInfo(health=Health.HEALTHY, nodes=(node,), mounts=(mount,))
        devices: dict[DeviceID, DeviceInfo] = {}
        for index in indices:
            per_index = DeviceInfo(health=info.health, nodes=info.nodes, mounts=info.mounts,
                                   envs={ZE_AFFINITY_MASK: str(index)})
            for i in range(self.shared_dev_num):
                devices[DeviceID(f"card{index}-{i}")] = per_index
        return {WSL_RESOURCE: devices}

    def scan(self, notifier: Notifier, stop: threading.Event) -> None:
        # -wsl only: the Level-Zero stubs load with it, not in every plugin (issue 21, item 5)
        from gpu_plugin.levelzero._api import levelzero_pb2 as lz
        from gpu_plugin.levelzero._api import levelzero_pb2_grpc as lz_grpc

        options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 2000)]
        with grpc.insecure_channel(f"unix://{self.levelzero_socket}", options=options) as channel:
            stub = lz_grpc.LevelzeroStub(channel)  # type: ignore[no-untyped-call]

            def once() -> None:
                try:
                    reply = stub.GetIntelIndices(lz.GetIntelIndicesMessage(), timeout=self.timeout)
                except grpc.RpcError as err:
                    LOG.warning("Failed to get Intel indices from Level-Zero: %s", err.code())
                    return
                if reply.HasField("error") and reply.error.errorcode != 0:
                    LOG.warning("indices request returned internal error: 0x%X (%s)",
                                reply.error.errorcode, reply.error.description)
                notifier.notify(self.tree_for(list(reply.indices)))

            self._loop.run(stop, once)


@dataclass(frozen=True)
class PluginConfig:
    """Everything :func:`build_manager` needs; cli.py fills it from the flags."""

    sysfs_root: str
    devfs_root: str
    kubelet_dir: str
    cdi_dir: str
    scan: gpuscan.ScanOptions
    allocation_policy: str = "none"
    scan_interval: float = 5.0
    wsl: bool = False
    levelzero_socket: str = "/var/lib/levelzero/server.sock"
    use_udev: bool = True
    resource_manager: RmConfig | None = None  #: -resource-manager (fractional resources with GAS)


def build_manager(config: PluginConfig, health: HealthSource | None = None, *,
                  registry: CollectorRegistry | None = None) -> tuple[Manager, Scanner]:
    """The framework manager wired to a GPU (or WSL) scanner, the policy and the CDI writer;
    with a ``registry``, the framework and the scan loop record their metrics on it."""
    scanner: Scanner
    if config.wsl:
        scanner = WslScanner(config.levelzero_socket, config.devfs_root, config.scan.shared_dev_num,
                             scan_interval=config.scan_interval)
    else:
        scanner = GpuScanner(config.sysfs_root, config.devfs_root, config.scan,
                             scan_interval=config.scan_interval, health=health, use_udev=config.use_udev,
                             metrics=NO_SCAN_METRICS if registry is None else scan_metrics(registry))
    preferred: PreferredAllocator = PolicyAllocator(config.allocation_policy)
    allocator: Allocator | None = None if config.wsl else CdiSpecWriter(config.cdi_dir)
    if config.resource_manager is not None:  # GAS decides; the defaults are the fallback
        scanner, resource_manager = rm_wire(config.resource_manager, scanner, allocator, config.sysfs_root)
        preferred = allocator = resource_manager
    manager = Manager(NAMESPACE, scanner, config.kubelet_dir, preferred_allocator=preferred,
                      allocator=allocator, metrics=None if registry is None else FrameworkMetrics(registry))
    return manager, scanner
