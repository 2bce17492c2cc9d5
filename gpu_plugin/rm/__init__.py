"""-resource-manager: fractional GPU resources with GPU Aware Scheduling (upstream's removed rm).

Importing this package is light (config only); :func:`wire` loads gRPC, the pod resources
stubs and the ``kubernetes`` client when -resource-manager is on.  Modules: gas (annotations),
podresources, kube (pod lists), manager, scanner (tiles, labels), wiring.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from gpu_plugin.rm.config import RmConfig, RmSetupError

if TYPE_CHECKING:
    from gpu_plugin.deviceplugin.api import Allocator, Scanner
    from gpu_plugin.rm.manager import ResourceManager
    from gpu_plugin.rm.scanner import RmScanner

__all__ = ["RmConfig", "RmSetupError", "wire"]


def wire(config: RmConfig, scanner: Scanner, fallback: Allocator | None,
         sysfs_root: str) -> tuple[RmScanner, ResourceManager]:
    """See :func:`gpu_plugin.rm.wiring.wire`."""
    from gpu_plugin.rm.wiring import wire as _wire

    return _wire(config, scanner, fallback, sysfs_root)
