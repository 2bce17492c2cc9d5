"""The contract between the DRA gRPC server (:mod:`gpu_plugin.dra.server`) and the driver behind it.

Plain dataclasses and a Protocol, no protobuf: the server converts, so the driver (scan, claims,
CDI, API server) is written and tested without gRPC, as the device-plugin framework keeps
``gpu_plugin.deviceplugin.api`` apart from its stubs.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from gpu_plugin.dra.state import PreparedDevice

__all__ = ["ClaimRef", "PrepareResult", "DeviceHealth", "DraDriver", "PreparedDevice", "ApiError", "NotFound",
           "Conflict"]


class ApiError(Exception):
    """An API-server call failed; ``status`` is the HTTP status (0: no answer).  Raised by
    :mod:`gpu_plugin.dra.kube`, defined here so the driver can handle it without the client."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


@dataclass(frozen=True)
class ClaimRef:
    """What kubelet names of a claim in NodePrepareResources / NodeUnprepareResources."""

    namespace: str
    uid: str
    name: str


@dataclass(frozen=True)
class PrepareResult:
    """A claim's answer: its devices, or a non-empty ``error`` (kubelet then ignores the devices)."""

    devices: tuple[PreparedDevice, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class DeviceHealth:
    """One device in a dra-health NodeWatchResources message."""

    pool: str
    device: str
    healthy: bool | None   #: None: unknown
    updated: int           #: Unix seconds of the last health determination


class DraDriver(Protocol):
    def prepare(self, claims: Sequence[ClaimRef]) -> dict[str, PrepareResult]: ...

    def unprepare(self, claims: Sequence[ClaimRef]) -> dict[str, str]:
        """claim UID -> error ("" when done)."""
        ...

    def health_updates(self, active: Callable[[], bool]) -> Iterator[list[DeviceHealth]]:
        """The full health list now, then again on every change, while ``active()``."""
        ...
