"""The emulated machine of the demo: its GPUs, its node name and UUID, and what it should yield.

Plain data shared by ``demo.flow`` and the e2e test: the expected resources are computed here
from the GPU layout (upstream's rules: only VFs when SR-IOV is provisioned, non-Intel cards never),
independently of the plugin's own scan code, so the test can catch a wrong scan.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

NODE = "controller-0"
# DMI spells the UUID in lower case, Kubernetes' nodeInfo in upper case: matched case-insensitively
HOST_UUID = "4c4c4544-0042-3010-8057-b4c04f4e3432"
LABEL = ("intelgpu", "enabled")
BROKER = ("127.0.0.1", 5672)


@dataclass(frozen=True)
class Gpu:
    """One PCI display device of the fake machine."""

    bdf: str
    card: int
    render: int
    driver: str
    vfs: int = 0
    vendor: str = "0x8086"
    pci_class: str = "0x030000"

    @property
    def resource(self) -> str | None:
        """The resource the plugin should advertise it under (None: not an Intel GPU)."""
        return f"gpu.intel.com/{self.driver}" if self.vendor == "0x8086" else None

    @property
    def advertised(self) -> int:
        """Device IDs it yields with -shared-dev-num 1: its VFs when provisioned, else itself."""
        return self.vfs or 1


GPUS = (
    Gpu("0000:00:02.0", card=0, render=128, driver="i915", vfs=2),
    # VF i of card N becomes card N+i (as the kernel numbers them on this fake machine)
    Gpu("0000:03:00.0", card=3, render=131, driver="xe"),
    Gpu("0000:05:00.0", card=4, render=132, driver="nouveau", vendor="0x10de"),
)


def broker_reachable(address: tuple[str, int] = BROKER, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def expected_resources(gpus: tuple[Gpu, ...] = GPUS, shared_dev_num: int = 1) -> dict[str, int]:
    counts: dict[str, int] = {}
    for gpu in gpus:
        if gpu.resource:
            counts[gpu.resource] = counts.get(gpu.resource, 0) + gpu.advertised * shared_dev_num
    return counts
