"""pyudev event source: wakes the agent when PCI or DRM devices come and go.

Only an event source: what changed is read again from sysfs by ``pci``. Where udev or netlink
is unavailable (containers, tests) :meth:`UdevWatcher.start` logs and returns False; the
agent's periodic rescan still runs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

SUBSYSTEMS = ("pci", "drm")


class UdevWatcher:
    """Calls ``on_event()`` from pyudev's observer thread for each event of ``subsystems``."""

    def __init__(self, on_event: Callable[[], None],
                 subsystems: Sequence[str] = SUBSYSTEMS) -> None:
        self._on_event = on_event
        self._subsystems = tuple(subsystems)
        self._observer: Any = None

    def start(self) -> bool:
        try:
            import pyudev

            context = pyudev.Context()
            monitor = pyudev.Monitor.from_netlink(context)
            for subsystem in self._subsystems:
                monitor.filter_by(subsystem=subsystem)
            observer = pyudev.MonitorObserver(monitor, callback=self._event, name="udev-events")
            observer.daemon = True
            observer.start()
        except (ImportError, OSError, ValueError, RuntimeError) as err:
            LOG.info("udev events unavailable (%s); relying on periodic rescans", err)
            return False
        self._observer = observer
        LOG.info("Watching udev events of subsystems %s", ", ".join(self._subsystems))
        return True

    def _event(self, device: Any) -> None:
        LOG.debug("udev %s event for %s", getattr(device, "action", "?"),
                  getattr(device, "sys_path", device))
        self._on_event()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.send_stop()
            self._observer.join(2)
            self._observer = None
