"""CDI spec files for allocated GPUs, as upstream's device-plugin server writes them.

Upstream (pkg/deviceplugin/server.go ``writeCdiSpecToFilesystem``) writes, at
Allocate time, one spec per card to ``/var/run/cdi/intel.cdi.k8s.io-gpu-cardN.yaml``
(cdiVersion 0.5.0, kind ``intel.cdi.k8s.io/gpu``, the card's device nodes and
read-only by-path bind mounts, mode 0644) and returns the name
``intel.cdi.k8s.io/gpu=cardN``; a failed write is logged and the name left out.
Here the file is rewritten atomically whenever its content would change.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace

from gpu_plugin.deviceplugin.api import ContainerAllocation, DeviceID, DeviceInfo, ResourceType
from gpu_plugin.deviceplugin.devices import merge_allocation

LOG = logging.getLogger(__name__)

CDI_VERSION = "0.5.0"

__all__ = ["CDI_VERSION", "spec_text", "devices_spec_text", "spec_file_name", "CdiSpecWriter"]


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return json.dumps(text)


def spec_file_name(kind: str, device: str) -> str:
    """``intel.cdi.k8s.io/gpu`` + ``card0`` -> ``intel.cdi.k8s.io-gpu-card0.yaml`` (upstream's naming)."""
    return f"{kind.replace('/', '-')}-{device}.yaml"


def spec_text(kind: str, device: str, info: DeviceInfo) -> str:
    """The YAML spec for one device: its nodes and its mounts (bind, read-only)."""
    return devices_spec_text(kind, [(device, info)])


def devices_spec_text(kind: str, devices: Sequence[tuple[str, DeviceInfo]]) -> str:
    """The YAML spec for several devices of one kind (the DRA plugin writes one per claim)."""
    lines = [f"cdiVersion: {_q(CDI_VERSION)}", f"kind: {_q(kind)}", "devices:"]
    for device, info in devices:
        lines += [f"  - name: {_q(device)}", "    containerEdits:"]
        if info.nodes:
            lines.append("      deviceNodes:")
            for node in info.nodes:
                lines += [f"        - path: {_q(node.container_path)}",
                          f"          hostPath: {_q(node.host_path)}",
                          f"          permissions: {_q(node.permissions)}"]
        if info.mounts:
            lines.append("      mounts:")
            for mount in info.mounts:
                options = '["bind", "ro"]' if mount.read_only else '["bind", "rw"]'
                lines += [f"        - hostPath: {_q(mount.host_path)}",
                          f"          containerPath: {_q(mount.container_path)}",
                          "          type: \"none\"", f"          options: {options}"]
    return "\n".join(lines) + "\n"


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells a rewritten or replaced file apart: device, inode, size, mtime (ns)."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _read_spec(path: str) -> tuple[str, tuple[int, int, int, int]] | None:
    """(text, identity) of an existing spec file; None if it can't be read."""
    try:
        with open(path, encoding="utf-8") as f:
            ident = _identity(os.fstat(f.fileno()))
            return f.read(), ident
    except (OSError, UnicodeDecodeError):
        return None


class CdiSpecWriter:
    """An :class:`~gpu_plugin.deviceplugin.api.Allocator` that writes the CDI specs of the allocated devices.

    Returns None (the framework's default merge, CDI names included) when every
    spec is in place; otherwise the default merge without the names whose spec
    could not be written, as upstream does.
    """

    def __init__(self, cdi_dir: str) -> None:
        self.cdi_dir = cdi_dir
        self._lock = threading.Lock()
        #: CDI name -> (the DeviceInfo last written/verified, its spec text, the file's identity).
        #: Lets a repeated Allocate of an unchanged device skip re-rendering and re-reading its
        #: spec: one stat shows the file is still the one we wrote or read (rescans replace the
        #: DeviceInfo objects, which renders the text again).
        self._known: dict[str, tuple[DeviceInfo, str, tuple[int, int, int, int]]] = {}

    def allocate(self, resource: ResourceType, device_ids: Sequence[DeviceID],
                 tree: Mapping[DeviceID, DeviceInfo]) -> ContainerAllocation | None:
        failed: set[str] = set()
        infos = [tree[d] for d in device_ids if d in tree]
        for info in infos:
            for name in info.cdi_devices:
                if name not in failed and not self.write(name, info):
                    failed.add(name)
        if not failed:
            return None
        merged = merge_allocation(infos)
        return replace(merged, cdi_devices=tuple(n for n in merged.cdi_devices if n not in failed))

    def write(self, qualified_name: str, info: DeviceInfo) -> bool:
        """Write the spec of ``vendor/class=device`` if missing or different; False (logged) on failure."""
        kind, _, device = qualified_name.partition("=")
        if not kind or not device or "/" in device:
            LOG.error("CDI spec write failed: bad CDI device name %r", qualified_name)
            return False
        path = os.path.join(self.cdi_dir, spec_file_name(kind, device))
        with self._lock:
            known = self._known.get(qualified_name)
            if known is not None and known[0] is info:
                text = known[1]
                try:
                    if _identity(os.stat(path)) == known[2]:
                        return True
                except OSError:
                    pass
            else:
                text = spec_text(kind, device, info)
            self._known.pop(qualified_name, None)
            current = _read_spec(path)
            if current is not None and current[0] == text:
                self._known[qualified_name] = (info, text, current[1])
                return True
            try:
                # on the first write, not in an idle plugin (~0.7 MB with tempfile, random, shutil)
                from gpu_plugin.common.atomic_file import write_beside

                write_beside(path, text)
                self._known[qualified_name] = (info, text, _identity(os.stat(path)))
            except OSError as err:
                LOG.error("CDI spec write failed for %s: %s", qualified_name, err)
                return False
        LOG.info("Wrote CDI spec %s", path)
        return True
