"""The node's GPUs as DRA devices: the device plugin's scan in, ``resource.k8s.io/v1`` devices out.

Pure functions (no gRPC, no API server).  The cards come from :func:`gpu_plugin.cards.discover_cards`
and the device nodes and by-path mounts from :func:`gpu_plugin.scan.device_tree`, the very tree the
device plugin advertises, so one scan serves both APIs and the two can never disagree on what a
GPU is: PFs with provisioned SR-IOV VFs are left out and their VFs published instead, control
nodes never, by-path links only the card's own (no upstream bug #2296).

Names follow Intel's DRA driver (intel-resource-drivers-for-kubernetes, ``pkg/gpu/device``) so
DeviceClasses and CEL selectors written for it select the same devices here:

- device name: the PCI address and the PCI device ID with ``:`` and ``.`` as ``-``
  (``0000-03-00-0-0x56c0``), a DNS label that stays put across reboots, unlike ``cardN``;
- attributes (in the driver's domain, ``device.attributes["gpu.intel.com"].model``): ``model``,
  ``family`` (``Unknown`` for an ID not in :data:`MODELS`), ``driver`` (i915/xe), ``sriov``
  (the PF can have VFs), ``pciId``, ``pciAddress`` (Intel's deprecated one, kept for old
  selectors), ``health``; and the standard ``resource.kubernetes.io/pcieRoot`` and
  ``resource.kubernetes.io/pciBusID``.  Ours on top: ``type`` (``gpu`` or ``vf``), so a claim can
  ask for a VF without a PCI-ID list;
- capacity: ``memory`` (sysfs ``lmem_total_bytes`` where the kernel has it, else 0: integrated
  GPUs and VFs without it) and ``millicores`` (1000 per device), as Intel's.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gpu_plugin.cards import GpuCard
from gpu_plugin.deviceplugin.api import DeviceInfo, Health
from gpu_plugin.scan import ScanOptions, device_tree

DRIVER_NAME = "gpu.intel.com"
STANDARD_PREFIX = "resource.kubernetes.io/"
HEALTHY, UNHEALTHY = "Healthy", "Unhealthy"
#: what a device-taint key says for an unhealthy GPU (resource.k8s.io/v1 DeviceTaint)
TAINT_KEY = DRIVER_NAME + "/unhealthy"

#: PCI device ID -> (model, family): public product names of the IDs Intel's driver names too
MODELS: Mapping[str, tuple[str, str]] = {
    "0x56a0": ("A770", "Arc"), "0x56a1": ("A750", "Arc"), "0x56a2": ("A580", "Arc"),
    "0x56b1": ("A40/A50", "Arc Pro"),
    "0x56c0": ("Flex 170", "Data Center Flex"), "0x56c1": ("Flex 140", "Data Center Flex"),
    "0x0bd5": ("Max 1550", "Data Center Max"), "0x0bd6": ("Max 1450", "Data Center Max"),
    "0x0bda": ("Max 1100", "Data Center Max"),
    "0xa7a0": ("Raptor Lake-P", "Iris Xe"),
}

__all__ = ["DRIVER_NAME", "DraDevice", "dra_devices", "device_name", "slice_device", "MODELS",
           "HEALTHY", "UNHEALTHY", "TAINT_KEY"]

HealthSource = Callable[[GpuCard], Health]


@dataclass(frozen=True)
class DraDevice:
    """One GPU or VF as published in the node's ResourceSlice and prepared for a claim."""

    name: str                 #: ``0000-03-00-0-0x56c0``
    card: str                 #: ``card0`` (for logs and the health sources)
    bdf: str
    pci_id: str
    driver: str
    vf: bool
    sriov: bool
    pcie_root: str | None
    memory_bytes: int
    healthy: bool
    info: DeviceInfo          #: device nodes and mounts, as the device plugin's tree has them

    @property
    def health(self) -> str:
        return HEALTHY if self.healthy else UNHEALTHY


def device_name(bdf: str, pci_id: str) -> str:
    """``0000:03:00.0`` + ``0x56c0`` -> ``0000-03-00-0-0x56c0`` (Intel's device UID)."""
    return f"{bdf.replace(':', '-').replace('.', '-')}-{pci_id}"


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return int(f.read(64).strip(), 0)
    except (OSError, ValueError):
        return None


def _pcie_root(sysfs_root: str, card: GpuCard) -> str | None:
    """``pci<domain>:<bus>``: the first component under ``<sysfs>/devices`` of the card's PCI device
    (what k8s.io/dynamic-resource-allocation/deviceattribute resolves from bus/pci/devices/<bdf>)."""
    devices = os.path.realpath(os.path.join(sysfs_root, "devices"))
    real = os.path.realpath(os.path.join(card.sysfs_path, "device"))
    if not real.startswith(devices + "/"):
        return None
    first = real[len(devices) + 1:].split("/", 1)[0]
    return first if first.startswith("pci") else None


def dra_devices(cards: Iterable[GpuCard], sysfs_root: str, devfs_root: str,
                health: HealthSource | None = None) -> list[DraDevice]:
    """The DRA devices for ``cards`` (sorted by name); the device plugin's rules decide which."""
    cards = list(cards)
    tree = device_tree(cards, devfs_root, ScanOptions())
    infos = {str(device_id)[: -len("-0")]: info
             for resource in tree.values() for device_id, info in resource.items()}
    out = []
    for card in cards:
        info = infos.get(card.name)
        if info is None or card.bdf is None or card.device_id is None:
            continue
        pci = os.path.join(card.sysfs_path, "device")
        healthy = health(card) is not Health.UNHEALTHY if health is not None else True
        out.append(DraDevice(
            name=device_name(card.bdf, card.device_id), card=card.name, bdf=card.bdf,
            pci_id=card.device_id, driver=card.driver, vf=os.path.lexists(os.path.join(pci, "physfn")),
            sriov=(_read_int(os.path.join(pci, "sriov_totalvfs")) or 0) > 0,
            pcie_root=_pcie_root(sysfs_root, card),
            memory_bytes=_read_int(os.path.join(card.sysfs_path, "lmem_total_bytes")) or 0,
            healthy=healthy, info=info))
    return sorted(out, key=lambda d: d.name)


def _s(value: str) -> dict[str, Any]:
    return {"string": value}


def _memory(size: int) -> str:
    """A binary-SI quantity, as Intel's driver writes it (``16384Mi``) where it is whole MiB."""
    return f"{size >> 20}Mi" if size and size % (1 << 20) == 0 else str(size)


def slice_device(device: DraDevice, *, taints: bool = True) -> dict[str, Any]:
    """The ``resource.k8s.io/v1`` Device for ``device`` (a JSON-ready dict).

    An unhealthy device carries a NoSchedule taint when ``taints`` (the API server keeps it only
    with the DRADeviceTaints feature gate, alpha and off in 1.34; without the gate it drops the
    field, and the ``health`` attribute is what a selector can use).
    """
    model, family = MODELS.get(device.pci_id, ("Unknown", "Unknown"))
    attributes: dict[str, Any] = {
        "model": _s(model), "family": _s(family), "driver": _s(device.driver),
        "sriov": {"bool": device.sriov}, "pciId": _s(device.pci_id), "pciAddress": _s(device.bdf),
        "health": _s(device.health), "type": _s("vf" if device.vf else "gpu"),
        STANDARD_PREFIX + "pciBusID": _s(device.bdf),
    }
    if device.pcie_root is not None:
        attributes[STANDARD_PREFIX + "pcieRoot"] = _s(device.pcie_root)
    out: dict[str, Any] = {
        "name": device.name,
        "attributes": attributes,
        "capacity": {"memory": {"value": _memory(device.memory_bytes)}, "millicores": {"value": "1000"}},
    }
    if taints and not device.healthy:
        out["taints"] = [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}]
    return out
