"""What the application knows of a host: sysinv's view (personality, PCI inventory) joined
with its Kubernetes node's labels. Pure data; the sysinv glue fills it in.

"Reported a GPU" means the node carries intelgpu=enabled: sysinv-gpu-conductor sets that label
only when the host's sysinv-gpu-agent reported an Intel GPU (i915 or xe). sysinv's own PCI
inventory is used for hints only (a GPU there but no label points at the agent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from k8sapp_intel_gpu_plugin.common import constants

#: PCI display classes (VGA 0x0300, display 0x0380) and the drivers the GPU plugin serves.
GPU_CLASSES = ("0300", "0380")
GPU_DRIVERS = ("i915", "xe")
INTEL_VENDOR = "8086"


@dataclass(frozen=True)
class Host:
    hostname: str
    personality: str = "worker"
    subfunctions: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)
    #: drivers of the host's Intel GPUs in sysinv's PCI inventory ("i915", "xe")
    gpu_drivers: frozenset[str] = frozenset()
    taints: frozenset[str] = frozenset()  #: "key:effect" of its node

    @property
    def reported_gpu(self) -> bool:
        return self.labels.get(constants.GPU_LABEL_KEY) == constants.GPU_LABEL_VALUE

    @property
    def all_in_one(self) -> bool:
        """A controller that also runs workloads (StarlingX AIO simplex/duplex)."""
        return self.personality == "controller" and "worker" in self.subfunctions


def gpu_drivers(pci_devices: Iterable[tuple[str | None, str | None, str | None]]) -> frozenset[str]:
    """(vendor id, class id, driver) rows of sysinv's PCI inventory -> drivers of Intel GPUs.

    sysinv stores ids as hex strings without 0x ("8086", "030000"); the driver column may hold
    several comma-joined module names.
    """
    found: set[str] = set()
    for vendor, pclass, driver in pci_devices:
        if (vendor or "").lower().removeprefix("0x") != INTEL_VENDOR:
            continue
        if not (pclass or "").lower().removeprefix("0x").startswith(GPU_CLASSES):
            continue
        found.update(d for d in (driver or "").split(",") if d.strip() in GPU_DRIVERS)
    return frozenset(d.strip() for d in found)


def subfunctions(text: str | None) -> frozenset[str]:
    """sysinv's comma-joined ``subfunctions`` column ("controller,worker,lowlatency")."""
    return frozenset(p.strip() for p in (text or "").split(",") if p.strip())


def names(hosts: Iterable[Host], limit: int = 5) -> str:
    """Hostnames for a one-line message, at most ``limit`` of them (bounded: hosts come from outside)."""
    listed = sorted(h.hostname[:64] for h in hosts)
    more = len(listed) - limit
    return ", ".join(listed[:limit]) + (f" and {more} more" if more > 0 else "")
