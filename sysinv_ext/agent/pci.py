"""Intel GPU detection from sysfs, as pure functions over a configurable sysfs root.

Reads ``<sysfs_root>/bus/pci/devices/*`` (vendor, class, the ``driver`` link; PFs and SR-IOV
VFs alike) and turns the GPUs found into the device plugin labels a host supports. Knows
nothing of RPC, udev or the conductor. A device list that cannot be read raises ``ScanError``:
a read failure is not "no GPU" (reporting none would remove the node's label). Bad entries are
skipped with one summary line per scan, however many there are; a host UUID file that is not a
UUID is refused without echoing it. Unlike sysinv (``lspci`` text class "VGA" and i915 only)
it accepts display controllers (class 0x0380) and the ``xe`` driver.
"""
from __future__ import annotations

import errno
import os
import stat
import string
from dataclasses import dataclass
from pathlib import Path

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

INTEL_VENDOR_ID = 0x8086
# PCI base class 0x03 (display): 0x00 VGA compatible controller, 0x80 display controller.
GPU_CLASSES = frozenset({0x0300, 0x0380})
GPU_DRIVERS = frozenset({"i915", "xe"})
# StarlingX constants.K8S_INTEL_GPU_DEVICE_PLUGIN, and the value its conductor labels nodes with.
INTEL_GPU_LABEL_KEY = "intelgpu"
INTEL_GPU_LABEL_VALUE = "enabled"
MAX_HOST_UUID = 64  # what the conductor accepts; a DMI product_uuid is 36
_UUID_CHARS = frozenset(string.ascii_letters + string.digits + "-")
_SKIP_EXAMPLES = 3  # bad entries named in the per-scan summary line
MAX_ATTRIBUTE = 4096  # bytes read of one sysfs attribute (a page: what the kernel serves at most)


class ScanError(Exception):
    """The PCI device list itself could not be read."""


@dataclass(frozen=True)
class PciGpu:
    """One Intel GPU PCI function bound to a GPU driver."""

    address: str
    device_id: int
    pci_class: int
    driver: str
    is_vf: bool


def read_attribute(path: str | os.PathLike[str], limit: int = MAX_ATTRIBUTE) -> str:
    """A small sysfs attribute: one bounded read of a regular file.

    Opened non-blocking and refused (OSError EINVAL) unless a regular file, as sysfs attributes
    are: a FIFO in place of ``vendor`` blocked the agent for good (no report, not even the
    removal of another GPU, and a slow SIGTERM), and a 200 MB sparse ``vendor`` read whole cost
    1 GB of RSS per scan (issue 21 item 11). The same rule as the plugin's reader
    (``gpu_plugin.cards._read``), written again here: the agent and the plugin are separate
    programs, packaged apart, and the agent imports nothing of ``gpu_plugin``.

    :raises OSError: absent, not a regular file, unreadable
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        return os.read(fd, limit).decode("ascii", "replace")
    finally:
        os.close(fd)


def _read_hex(path: Path) -> int:
    return int(read_attribute(path).strip(), 16)


def read_pci_gpu(device_dir: Path) -> PciGpu | None:
    """The GPU at ``device_dir``, or None if it is not a supported Intel GPU.

    :raises OSError, ValueError: unreadable or malformed sysfs attributes
    """
    if _read_hex(device_dir / "vendor") != INTEL_VENDOR_ID:
        return None
    pci_class = _read_hex(device_dir / "class")
    if pci_class >> 8 not in GPU_CLASSES:
        return None
    driver_link = device_dir / "driver"
    if not driver_link.is_symlink():
        return None
    driver = os.path.basename(os.readlink(driver_link))
    if driver not in GPU_DRIVERS:
        return None
    device_file = device_dir / "device"
    device_id = _read_hex(device_file) if device_file.exists() else 0
    return PciGpu(address=device_dir.name, device_id=device_id, pci_class=pci_class,
                  driver=driver, is_vf=(device_dir / "physfn").is_symlink())


def scan_gpus(sysfs_root: str | os.PathLike[str]) -> list[PciGpu]:
    """All supported Intel GPUs under ``sysfs_root``; bad entries are skipped (one log line).

    :raises ScanError: the device directory cannot be listed
    """
    devices = Path(sysfs_root) / "bus" / "pci" / "devices"
    try:
        entries = sorted(devices.iterdir())
    except OSError as err:
        raise ScanError(f"Cannot list PCI devices in {devices}: {err.strerror or err}") from err
    gpus, skipped = [], []
    for entry in entries:
        try:
            gpu = read_pci_gpu(entry)
        except (OSError, ValueError) as err:
            skipped.append(f"{entry.name} ({_reason(err)})")
            continue
        if gpu is not None:
            gpus.append(gpu)
    if skipped:
        more = len(skipped) - _SKIP_EXAMPLES
        LOG.warning("Skipping %d unreadable PCI device(s) in %s: %s%s", len(skipped), devices,
                    ", ".join(skipped[:_SKIP_EXAMPLES]), f" and {more} more" if more > 0 else "")
    return gpus


def _reason(err: Exception) -> str:
    """A short reason that never quotes file content (ValueError of int() does)."""
    if isinstance(err, OSError):
        return err.strerror or type(err).__name__
    return "malformed attribute"


def supported_device_plugins(gpus: list[PciGpu]) -> dict[str, str]:
    """Device plugin labels (key -> value) for the GPUs found; empty when there are none."""
    return {INTEL_GPU_LABEL_KEY: INTEL_GPU_LABEL_VALUE} if gpus else {}


def detect_device_plugins(sysfs_root: str | os.PathLike[str]) -> dict[str, str]:
    return supported_device_plugins(scan_gpus(sysfs_root))


def valid_host_uuid(text: str) -> str | None:
    """``text`` stripped if it looks like a host UUID (letters, digits, dashes, <= 64), else None."""
    value = text.strip()
    if value and len(value) <= MAX_HOST_UUID and set(value) <= _UUID_CHARS:
        return value
    return None


def read_host_uuid(sysfs_root: str | os.PathLike[str]) -> str | None:
    """``<sysfs_root>/class/dmi/id/product_uuid`` (root-only on most hosts), or None.

    Reads at most a few hundred bytes of a regular file; anything that is not a UUID is refused
    unquoted."""
    path = Path(sysfs_root) / "class" / "dmi" / "id" / "product_uuid"
    try:
        raw = read_attribute(path, 4 * MAX_HOST_UUID + 1)
    except OSError as err:
        LOG.warning("Cannot read host UUID from %s: %s", path, err.strerror or err)
        return None
    if not raw.strip():
        return None
    value = valid_host_uuid(raw)
    if value is None:
        LOG.warning("Host UUID file %s holds no UUID (%s%d bytes, not letters, digits and dashes "
                    "of at most %d); ignored", path, "at least " if len(raw) > 4 * MAX_HOST_UUID
                    else "", len(raw), MAX_HOST_UUID)
    return value
