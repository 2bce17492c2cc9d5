"""-resource-manager: fractional GPU resources with GPU Aware Scheduling (upstream's removed rm).

:func:`wire` turns the plugin's scanner and default allocator into the -resource-manager trio
(scanner wrapper, preferred allocator, allocator); :class:`RmConfig` holds its settings.
Needs the ``kubernetes`` client (API server access) only when :func:`wire` runs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from gpu_plugin.deviceplugin.api import Allocator, Scanner
from gpu_plugin.rm.manager import ResourceManager
from gpu_plugin.rm.podresources import DEFAULT_SOCKET, PodResourcesClient
from gpu_plugin.rm.scanner import NFD_FEATURE_DIR, RESOURCE_FILENAME, GasLabeler, RmScanner

__all__ = ["RmConfig", "ResourceManager", "wire"]


@dataclass(frozen=True)
class RmConfig:
    """Settings of -resource-manager (defaults: upstream's fixed paths; kubeconfig None = in-cluster)."""

    node_name: str
    resource_names: tuple[str, ...] = ("gpu.intel.com/i915", "gpu.intel.com/xe")
    kubeconfig: str | None = None
    host_ip: str = ""  #: kubelet API (https://HOST_IP:10250/pods) tried first when set
    podresources_socket: str = DEFAULT_SOCKET
    nfd_feature_file: str | None = os.path.join(NFD_FEATURE_DIR, RESOURCE_FILENAME)
    retry_timeout: float = 1.0


def wire(config: RmConfig, scanner: Scanner, fallback: Allocator | None,
         sysfs_root: str) -> tuple[RmScanner, ResourceManager]:
    """The scanner wrapper and the manager (PreferredAllocator + Allocator, ``fallback`` = default)."""
    from gpu_plugin.rm.kube import ApiServerPods, KubeletPods, NodePods

    kubelet = KubeletPods(config.host_ip, config.node_name) if config.host_ip else None
    pods = NodePods(ApiServerPods(config.node_name, config.kubeconfig), kubelet)
    rm = ResourceManager(pods, PodResourcesClient(config.podresources_socket), config.resource_names,
                         fallback=fallback, retry_timeout=config.retry_timeout)
    labels = GasLabeler(sysfs_root, config.nfd_feature_file) if config.nfd_feature_file else None
    return RmScanner(scanner, rm, sysfs_root, labels), rm
