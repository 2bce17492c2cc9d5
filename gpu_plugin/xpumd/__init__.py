"""Health from the XPU Manager daemon (xpumd) for -xpumd-endpoint, as upstream's xpumdservice.

Only this package touches the vendored deviceinfo stubs (``_api``); the plugin sees
:class:`XpumdHealth`, a ``card -> Health`` source like the Level-Zero one.
"""
from gpu_plugin.xpumd.client import (
    DEFAULT_SEVERITY_LIMIT,
    DEFAULT_SOCKET_PATH,
    SEVERITY_LIMITS,
    NoHealthData,
    Timing,
    XpumdHealth,
    XpumdService,
)

__all__ = ["DEFAULT_SEVERITY_LIMIT", "DEFAULT_SOCKET_PATH", "SEVERITY_LIMITS", "NoHealthData", "Timing",
           "XpumdHealth", "XpumdService"]
