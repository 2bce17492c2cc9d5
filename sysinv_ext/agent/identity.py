"""Which host uuid the agent reports: the one its conductor looks the report up by.

Our conductor matches the Kubernetes node's ``status.nodeInfo.systemUUID``, i.e. the DMI
``product_uuid`` (``dmi``). sysinv's own conductor looks hosts up by sysinv's host uuid, which
sysinv-agent appends as ``UUID=<uuid>`` to /etc/platform/platform.conf once the conductor told
it (agent/manager.py; tsconfig reads it back); ``platform_conf`` reads that line. A configured
``[agent]host_uuid`` wins over both. Pure file reading; no RPC.
"""
from __future__ import annotations

import os

from oslo_log import log as logging

from sysinv_ext.agent import pci

LOG = logging.getLogger(__name__)

SOURCES = ("dmi", "platform_conf")
MAX_PLATFORM_CONF = 65536  # bytes of platform.conf read


def read_platform_conf_uuid(path: str | os.PathLike[str]) -> str | None:
    """The value of the line starting ``UUID=`` (not ``INSTALL_UUID=``), or None."""
    try:  # a regular file, bounded (platform.conf is a few hundred bytes)
        text = pci.read_attribute(path, MAX_PLATFORM_CONF)
    except OSError as err:
        LOG.warning("Cannot read host UUID from %s: %s", path, err)
        return None
    for line in text.splitlines():
        if line.startswith("UUID="):  # sysinv: line.find("UUID=") == 0
            value = line[len("UUID="):].strip().strip('"')
            return value or None
    LOG.warning("No UUID= line in %s (sysinv-agent writes it once its conductor knows the "
                "host)", path)
    return None


def host_uuid(configured: str | None, source: str, *, sysfs_root: str,
              platform_conf: str) -> str | None:
    """``configured`` if set, else the uuid from ``source`` (``dmi`` or ``platform_conf``)."""
    if configured and configured.strip():
        return configured.strip()
    if source == "platform_conf":
        return read_platform_conf_uuid(platform_conf)
    if source != "dmi":
        raise ValueError(f"host_uuid_source must be one of {SOURCES}, not {source!r}")
    return pci.read_host_uuid(sysfs_root)


def describe(source: str, *, sysfs_root: str, platform_conf: str) -> str:
    """Where the uuid is read from, for log lines."""
    if source == "platform_conf":
        return f"the UUID= line of {platform_conf}"
    return f"{sysfs_root}/class/dmi/id/product_uuid"
