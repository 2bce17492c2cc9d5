"""Exceptions of sysinv_ext, one class per failure, one base with a message template.

Callers raise with keyword arguments that fill ``msg_fmt``; the RPC layer lists this module in
its allowed remote exception modules, so a conductor-side failure reaches the agent with its type.
Original errors (ApiException, SQLAlchemyError, OSError...) are chained with ``raise ... from err``.
"""
from __future__ import annotations

from typing import Any


class SysinvExtException(Exception):
    """Base class: ``msg_fmt`` is filled from the keyword arguments given to the constructor."""

    msg_fmt = "An unknown sysinv_ext error occurred"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError, ValueError):
                # A missing keyword must not hide the real failure behind a formatting error.
                details = ", ".join(f"{key}={value!r}" for key, value in sorted(kwargs.items()))
                message = f"{self.msg_fmt} ({details})"
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class InvalidPayload(SysinvExtException):
    msg_fmt = "Invalid device plugin payload from host %(host_uuid)s: %(reason)s"


class HostNotFound(SysinvExtException):
    msg_fmt = "No Kubernetes node has systemUUID %(host_uuid)s"


class NodeNotFound(SysinvExtException):
    msg_fmt = "Kubernetes node %(node)s not found"


class KubeAPIError(SysinvExtException):
    msg_fmt = "Kubernetes API error during %(action)s: %(reason)s"


class PluginsFileError(SysinvExtException):
    msg_fmt = "Cannot use enabled kube plugins file %(path)s: %(reason)s"


class LabelNotFound(SysinvExtException):
    msg_fmt = "Label %(label_key)s not found for host %(host_uuid)s"


class LabelAlreadyExists(SysinvExtException):
    msg_fmt = "Label %(label_key)s already exists for host %(host_uuid)s"


class DatabaseError(SysinvExtException):
    msg_fmt = "Database error during %(action)s: %(reason)s"


class ConductorUnavailable(SysinvExtException):
    msg_fmt = "Conductor on topic %(topic)s could not be reached: %(reason)s"


class ConfigurationError(SysinvExtException):
    msg_fmt = "Invalid configuration: %(reason)s"
