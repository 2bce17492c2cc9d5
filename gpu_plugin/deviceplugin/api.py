"""The contract between the generic device-plugin framework and a plugin.

A plugin (here: the Intel GPU scanner) produces whole snapshots of its devices
as a :data:`DeviceTree` and hands them to a :class:`Notifier`; the framework
(`manager.py`, `server.py`) works out what changed and runs one kubelet gRPC
server per resource type.  Everything here is plain Python data: the protobuf
messages of the kubelet API never leave `server.py`, so scanners and
allocation policies stay free of gRPC.
"""
from __future__ import annotations

import enum
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NewType, Protocol

#: A device ID as advertised to kubelet, e.g. ``card0-1``.
DeviceID = NewType("DeviceID", str)
#: A resource type within the plugin's namespace, e.g. ``i915`` (full name ``gpu.intel.com/i915``).
ResourceType = NewType("ResourceType", str)

#: Kubelet's API version string sent in RegisterRequest.
API_VERSION = "v1beta1"
#: Longest unix socket path Linux accepts: sizeof(sockaddr_un.sun_path) - 1 (the NUL).
MAX_SOCKET_PATH = 107


class Health(str, enum.Enum):
    """Device health as kubelet spells it."""

    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"


@dataclass(frozen=True)
class DeviceSpec:
    """A device node to create in the container (kubelet ``DeviceSpec``)."""

    container_path: str
    host_path: str
    permissions: str = "rw"


@dataclass(frozen=True)
class Mount:
    """A bind mount into the container (kubelet ``Mount``)."""

    container_path: str
    host_path: str
    read_only: bool = True


@dataclass(frozen=True)
class DeviceInfo:
    """Everything the framework needs to advertise and allocate one device ID.

    ``numa_nodes`` becomes the device's TopologyInfo (empty = no topology).
    ``cdi_devices`` are fully qualified CDI names (``vendor/class=name``)
    returned by Allocate.
    """

    health: Health = Health.HEALTHY
    nodes: tuple[DeviceSpec, ...] = ()
    mounts: tuple[Mount, ...] = ()
    envs: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    numa_nodes: tuple[int, ...] = ()
    cdi_devices: tuple[str, ...] = ()


#: resource type -> device ID -> info.  A plugin always sends the whole tree.
DeviceTree = dict[ResourceType, dict[DeviceID, DeviceInfo]]


@dataclass(frozen=True)
class ContainerAllocation:
    """What Allocate returns for one container request."""

    devices: tuple[DeviceSpec, ...] = ()
    mounts: tuple[Mount, ...] = ()
    envs: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    cdi_devices: tuple[str, ...] = ()


class DevicePluginError(Exception):
    """Base class of the framework's errors."""


class UnknownDeviceError(DevicePluginError):
    """Allocate or GetPreferredAllocation named a device ID that is not advertised."""

    def __init__(self, resource: str, device_id: str) -> None:
        super().__init__(f"{resource}: unknown device ID {device_id!r}")
        self.device_id = device_id


class UnhealthyDeviceError(DevicePluginError):
    """Allocate named a device ID that is advertised but Unhealthy (refused, as upstream)."""

    def __init__(self, resource: str, device_id: str) -> None:
        super().__init__(f"{resource}: device {device_id!r} is unhealthy")
        self.device_id = device_id


class AllocationError(DevicePluginError):
    """A policy or allocator could not satisfy a request (e.g. more devices than available)."""


class SocketInUseError(DevicePluginError):
    """The plugin socket path is held by a live server (another plugin instance)."""


class RegistrationError(DevicePluginError):
    """Kubelet could not be reached or refused the registration (retried with backoff)."""


class ScannerError(DevicePluginError):
    """The scanner thread failed; raised by ``Manager.run`` in the main thread."""


class Notifier(Protocol):
    """Receives whole device trees from a scanner (implemented by the framework)."""

    def notify(self, tree: DeviceTree) -> None: ...


class Scanner(Protocol):
    """Finds devices and reports snapshots until ``stop`` is set (implemented by a plugin).

    Runs in its own thread; must return promptly once ``stop`` is set and must
    not raise for a bad device (log and skip it).
    """

    def scan(self, notifier: Notifier, stop: threading.Event) -> None: ...


class PreferredAllocator(Protocol):
    """Optional: answers GetPreferredAllocation for one container request."""

    def preferred_allocation(self, resource: ResourceType, available: Sequence[DeviceID],
                             must_include: Sequence[DeviceID], size: int) -> list[DeviceID]: ...


class Allocator(Protocol):
    """Optional: replaces the default Allocate for one container request.

    Return None to fall back to the default (union of the devices' nodes,
    mounts, envs, annotations and CDI names).
    """

    def allocate(self, resource: ResourceType, device_ids: Sequence[DeviceID],
                 tree: Mapping[DeviceID, DeviceInfo]) -> ContainerAllocation | None: ...
