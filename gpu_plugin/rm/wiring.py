"""Builds -resource-manager from its config: pod sources, pod resources client, manager, scanner wrapper.

The one place that creates the Kubernetes client (in-cluster or kubeconfig) and turns its
configuration errors into :class:`~gpu_plugin.rm.config.RmSetupError`.
"""
from __future__ import annotations

import logging

from gpu_plugin.deviceplugin.api import Allocator, Scanner
from gpu_plugin.rm.config import RmConfig, RmSetupError
from gpu_plugin.rm.kube import ApiServerPods, KubeletPods, NodePods
from gpu_plugin.rm.manager import ResourceManager
from gpu_plugin.rm.podresources import PodResourcesClient
from gpu_plugin.rm.scanner import GasLabeler, RmScanner

LOG = logging.getLogger(__name__)


def wire(config: RmConfig, scanner: Scanner, fallback: Allocator | None,
         sysfs_root: str) -> tuple[RmScanner, ResourceManager]:
    """The scanner wrapper and the manager (PreferredAllocator + Allocator, ``fallback`` = default)."""
    try:
        api_server = ApiServerPods(config.node_name, config.kubeconfig)
    except Exception as err:  # kubernetes.config.ConfigException, unreadable/garbage kubeconfig
        raise RmSetupError(f"couldn't get clientset: {err}") from None
    kubelet = KubeletPods(config.host_ip, config.node_name) if config.host_ip else None
    pods = NodePods(api_server, kubelet)
    rm = ResourceManager(pods, PodResourcesClient(config.podresources_socket), config.resource_names,
                         fallback=fallback, retry_timeout=config.retry_timeout)
    labels = GasLabeler(sysfs_root, config.nfd_feature_file) if config.nfd_feature_file else None
    LOG.info("GPU device plugin resource manager enabled (node %s, pod resources %s)",
             config.node_name, config.podresources_socket)
    return RmScanner(scanner, rm, sysfs_root, labels), rm
