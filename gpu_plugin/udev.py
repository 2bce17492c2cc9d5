"""Kernel uevents for the ``drm`` subsystem as a "rescan now" trigger.

pyudev is used only as an event source (it ignores SYSFS_PATH, so scanning
itself always reads the configured sysfs root).  Where udev/netlink is not
available (containers without it, test machines) :meth:`DrmEvents.start`
returns False and the plugin relies on its periodic rescans.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger(__name__)

__all__ = ["DrmEvents"]


class DrmEvents:
    """Calls ``on_event()`` from a thread for every drm uevent until :meth:`stop`."""

    def __init__(self, on_event: Callable[[], None], *, poll_timeout: float = 0.5) -> None:
        self._on_event = on_event
        self._poll_timeout = poll_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._monitor: Any = None

    def start(self) -> bool:
        """Start listening; False (logged once) when udev is not usable here."""
        try:
            import pyudev

            monitor = pyudev.Monitor.from_netlink(pyudev.Context())
            monitor.filter_by(subsystem="drm")
            monitor.start()
        except Exception as err:  # noqa: BLE001 - any failure just means "no udev here"
            LOG.info("udev events not available (%s); relying on periodic rescans", err)
            return False
        self._monitor = monitor
        self._thread = threading.Thread(target=self._run, name="udev-drm", daemon=True)
        self._thread.start()
        LOG.debug("Listening to drm uevents")
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self._poll_timeout + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                device = self._monitor.poll(timeout=self._poll_timeout)
            except Exception as err:  # noqa: BLE001 - keep the plugin alive, fall back to rescans
                LOG.warning("udev monitor failed (%s); relying on periodic rescans", err)
                return
            if device is not None:
                LOG.debug("drm uevent: %s %s", device.action, device.sys_name)
                self._on_event()
