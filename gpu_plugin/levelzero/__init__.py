"""Level-Zero health sidecar (`intel-gpu-levelzero`): result types and Level-Zero status codes.

The readings every source produces (:class:`Health`, :class:`Temperatures`, …) carry a Level-Zero
``ze_result_t`` code that the server returns in-band in the ``error`` field, as upstream's
cmd/gpu_levelzero does. Sources live in :mod:`.sources`, the gRPC server in :mod:`.server`.
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SOCKET = "/var/lib/levelzero/server.sock"
#: upstream's TEMP_ERROR_RET_VAL: the temperature reported when a sensor cannot be read
TEMP_ERROR = -999.0

# ze_result_t values used here (ze_api.h)
ZE_SUCCESS = 0
ZE_ERROR_DEVICE_LOST = 0x70000001
ZE_ERROR_NOT_AVAILABLE = 0x70010001
ZE_ERROR_UNINITIALIZED = 0x78000001
ZE_ERROR_UNSUPPORTED_FEATURE = 0x78000003
ZE_ERROR_INVALID_ARGUMENT = 0x78000004
ZE_ERROR_UNKNOWN = 0x7FFFFFFE

_DESCRIPTIONS = {
    ZE_SUCCESS: "success",
    1: "not ready",
    ZE_ERROR_DEVICE_LOST: "device lost",
    0x70000006: "device requires reset",
    0x70000007: "device in low power state",
    0x70010000: "insufficient permissions",
    ZE_ERROR_NOT_AVAILABLE: "not available",
    0x70020000: "dependency unavailable",
    ZE_ERROR_UNINITIALIZED: "uninitialized",
    0x78000002: "unsupported version",
    ZE_ERROR_UNSUPPORTED_FEATURE: "unsupported feature",
    ZE_ERROR_INVALID_ARGUMENT: "invalid argument",
    0x78000007: "invalid null pointer",
    0x78000005: "invalid null handle",
    ZE_ERROR_UNKNOWN: "unknown",
}


def describe(code: int) -> str:
    """Upstream's ``ze_status_to_string``: ``"device lost (0x70000001)"``."""
    return f"{_DESCRIPTIONS.get(code, 'not known')} (0x{code:X})"


@dataclass(frozen=True)
class Health:
    memory_ok: bool = True
    bus_ok: bool = True
    soc_ok: bool = True
    error: int = ZE_SUCCESS


@dataclass(frozen=True)
class Temperatures:
    """Degrees Celsius; :data:`TEMP_ERROR` where no sensor of that kind could be read."""

    global_: float = TEMP_ERROR
    gpu: float = TEMP_ERROR
    memory: float = TEMP_ERROR
    error: int = ZE_SUCCESS


@dataclass(frozen=True)
class Indices:
    indices: tuple[int, ...] = ()
    error: int = ZE_SUCCESS


@dataclass(frozen=True)
class MemoryAmount:
    size: int = 0
    error: int = ZE_SUCCESS
