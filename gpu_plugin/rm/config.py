"""Settings of -resource-manager and its setup error: light (no gRPC, no Kubernetes client) for cli.py.

Defaults are upstream's fixed paths: the pod resources socket, the NFD feature file
(``intel-gpu-resources.txt``) and in-cluster API access (``kubeconfig`` None).
"""
from __future__ import annotations

from dataclasses import dataclass

POD_RESOURCES_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
NFD_FEATURE_DIR = "/etc/kubernetes/node-feature-discovery/features.d"
RESOURCE_FILENAME = "intel-gpu-resources.txt"
NFD_FEATURE_FILE = f"{NFD_FEATURE_DIR}/{RESOURCE_FILENAME}"
RESOURCE_NAMES = ("gpu.intel.com/i915", "gpu.intel.com/xe")


class RmSetupError(Exception):
    """The resource manager cannot start (e.g. no usable Kubernetes client configuration)."""


@dataclass(frozen=True)
class RmConfig:
    """What -resource-manager needs besides the plugin's own settings."""

    node_name: str
    kubeconfig: str | None = None  #: None = in-cluster config (service account), as upstream
    host_ip: str = ""  #: kubelet API (https://HOST_IP:10250/pods) tried first when set, as upstream
    podresources_socket: str = POD_RESOURCES_SOCKET
    nfd_feature_file: str | None = NFD_FEATURE_FILE  #: None = no GAS labels file
    resource_names: tuple[str, ...] = RESOURCE_NAMES
    retry_timeout: float = 1.0
