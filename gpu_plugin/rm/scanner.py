"""What -resource-manager adds around the GPU scanner: tile counts, the driver check, NFD labels.

:class:`RmScanner` wraps the plugin's scanner (a framework ``Scanner``): every snapshot tells
the :class:`~gpu_plugin.rm.manager.ResourceManager` the node's tiles per card (only when all
GPUs agree), refuses a node with both i915 and xe GPUs (fatal, as upstream), and wakes the
GAS labeler that writes the NFD feature file ``intel-gpu-resources.txt`` (upstream's
``labeler.Run``: on device count changes and every 5 minutes; removed on stop).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from gpu_plugin.deviceplugin.api import DeviceTree, Notifier, Scanner
from gpu_plugin.nfdhook import labeler
from gpu_plugin.rm.manager import ResourceManager

LOG = logging.getLogger(__name__)

LABELER_MAX_INTERVAL = 5 * 60.0
MONITOR_SUFFIX = "_monitoring"


class MultipleDriversError(Exception):
    """The resource manager does not support GPUs of several DRM drivers on one node."""


def card_resources(tree: DeviceTree) -> dict[str, set[str]]:
    """Driver resource type -> card names (``cardN``), monitoring resources left out."""
    out: dict[str, set[str]] = {}
    for rtype, devices in tree.items():
        if devices and not rtype.endswith(MONITOR_SUFFIX) and rtype != "monitoring":
            out[rtype] = {d.split("-")[0] for d in devices}
    return out


class GasLabeler:
    """Writes upstream's GPU labels to the NFD feature file when woken or every ``interval`` s."""

    def __init__(self, sysfs_root: str, feature_file: str, interval: float = LABELER_MAX_INTERVAL,
                 env: Mapping[str, str] | None = None) -> None:
        self.drm_dir = os.path.join(sysfs_root, "class", "drm")
        self.feature_file = feature_file
        self.interval = interval
        self.env = env
        self._wake = threading.Event()
        self._labels: dict[str, str] | None = None

    def wake(self) -> None:
        self._wake.set()

    def update(self) -> None:
        """One round: write the file if the labels changed (retried next round on failure)."""
        try:
            labels = labeler.create_labels(self.drm_dir, self.env)
        except (labeler.LabelerError, OSError) as err:
            LOG.warning("label creation failed: %s", err)
            return
        if labels == self._labels:
            return
        try:
            os.makedirs(os.path.dirname(self.feature_file) or ".", exist_ok=True)
            labeler.write_labels_file(labels, self.feature_file)
            self._labels = labels
            LOG.info("GPU labels written to %s", self.feature_file)
        except OSError as err:
            LOG.warning("failed to write labels to file: %s", err)
            self._labels = None

    def run(self, stop: threading.Event) -> None:
        def wake_on_stop() -> None:
            stop.wait()
            self._wake.set()

        threading.Thread(target=wake_on_stop, name="gas-labeler-stop", daemon=True).start()
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if stop.is_set():
                break
            self.update()
        try:
            os.remove(self.feature_file)
        except FileNotFoundError:
            pass
        except OSError as err:
            LOG.error("Failed to cleanup label file: %s", err)


class _Proxy:
    """The notifier the wrapped scanner sees."""

    def __init__(self, owner: RmScanner, notifier: Notifier) -> None:
        self.owner, self.notifier = owner, notifier

    def notify(self, tree: DeviceTree) -> None:
        self.owner.observe(tree)
        self.notifier.notify(tree)


class RmScanner:
    """A framework ``Scanner`` around the GPU scanner for -resource-manager."""

    def __init__(self, inner: Scanner, rm: ResourceManager, sysfs_root: str,
                 labels: GasLabeler | None = None) -> None:
        self.inner, self.rm, self.sysfs_root, self.labels = inner, rm, sysfs_root, labels
        self._counts: dict[str, int] = {}

    def tile_count(self, card: str) -> int:
        return labeler.tile_count(os.path.join(self.sysfs_root, "class", "drm", card))

    def observe(self, tree: DeviceTree) -> None:
        """Check drivers, set tiles per card, wake the labeler if a device count changed."""
        cards = card_resources(tree)
        if len(cards) > 1:
            LOG.warning("Plugin with RM doesn't support multiple DRM drivers: %s", sorted(cards))
            raise MultipleDriversError("resource manager: GPUs of several DRM drivers "
                                       f"({', '.join(sorted(cards))}) on one node are not supported")
        counts = sorted({self.tile_count(c) for names in cards.values() for c in names})
        if len(counts) == 1:
            self.rm.set_tile_count_per_card(counts[0])
        elif counts:
            LOG.warning("Node's GPUs are heterogenous (min: %d, max: %d tiles)", counts[0], counts[-1])
        sizes = {str(k): len(v) for k, v in tree.items()}
        if sizes != self._counts:
            self._counts = sizes
            if self.labels is not None:
                self.labels.wake()

    def scan(self, notifier: Notifier, stop: threading.Event) -> None:
        threads = [threading.Thread(target=self.rm.run_cleanup, args=(stop,), name="rm-cleanup", daemon=True)]
        if self.labels is not None:
            threads.append(threading.Thread(target=self.labels.run, args=(stop,), name="gas-labeler",
                                            daemon=True))
        for t in threads:
            t.start()
        self.inner.scan(_Proxy(self, notifier), stop)
