"""Kernel uevents for the ``drm`` subsystem as a "rescan now" trigger.

pyudev is used only as an event source (it ignores SYSFS_PATH, so scanning
itself always reads the configured sysfs root).  Where udev/netlink is not
available (containers without it, test machines) :meth:`DrmEvents.start`
returns False and the plugin relies on its periodic rescans.

Without a running udev daemon (no ``/run/udev/control``: the plugin's pod, which mounts no
``/run/udev`` and has its own network namespace, where no uevent arrives anyway) libudev's
monitor receives nothing: libudev itself disables it then. So does :meth:`DrmEvents.start`,
before pyudev is even imported (pyudev, libudev and ctypes.util cost about 1 MB of idle RSS
on every GPU node, for a thread that would never wake).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger(__name__)

__all__ = ["DrmEvents", "UDEV_CONTROL"]

#: udevd's control socket: libudev's test for "udev is running" (udev_monitor_new_from_netlink)
UDEV_CONTROL = "/run/udev/control"


class DrmEvents:
    """Calls ``on_event()`` from a thread for every drm uevent until :meth:`stop`."""

    def __init__(self, on_event: Callable[[], None], *, poll_timeout: float = 0.5,
                 udev_control: str = UDEV_CONTROL) -> None:
        self._on_event = on_event
        self._udev_control = udev_control
        self._poll_timeout = poll_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._monitor: Any = None

    def start(self) -> bool:
        """Start listening; False (logged once) when udev is not usable here."""
        if not os.path.exists(self._udev_control):
            LOG.info("udev is not running here (no %s): no drm uevents; relying on periodic rescans",
                     self._udev_control)
            return False
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
