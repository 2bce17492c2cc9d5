"""One kubelet device-plugin gRPC server per resource type, with registration and restarts.

The only package that touches gRPC and the generated kubelet stubs: ``servicer.py`` is the
DevicePlugin service (dataclasses of ``api.py`` <-> protobuf), ``lifecycle.py`` serves its
socket and registers with kubelet again after kubelet restarts.
"""
from gpu_plugin.deviceplugin.server.lifecycle import (
    KUBELET_SOCKET,
    MAX_SOCKET_PATH,
    DevicePluginServer,
    socket_is_live,
)
from gpu_plugin.deviceplugin.server.servicer import AllocationLog, Servicer, options

__all__ = ["KUBELET_SOCKET", "MAX_SOCKET_PATH", "DevicePluginServer", "socket_is_live",
           "AllocationLog", "Servicer", "options"]
