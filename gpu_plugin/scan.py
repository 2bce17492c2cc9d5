"""Intel GPU discovery: sysfs/devfs roots in, plain data out (no gRPC, no threads).

Ports the discovery rules of upstream's ``cmd/gpu_plugin/gpu_plugin.go`` (see
SPEC section 1): which ``class/drm/cardN`` entries are usable Intel GPUs
(:func:`discover_cards`, in :mod:`gpu_plugin.cards`, re-exported here for the side
programs) and the device tree the plugin advertises for them (:func:`device_tree`,
:func:`scan`).  A bad or half-written sysfs entry skips that card with one log line.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gpu_plugin.cards import (  # re-exported (__all__): the public discovery API lives here
    DEFAULT_DRIVER,
    DRIVER_I915,
    DRIVER_XE,
    KNOWN_DRIVERS,
    VENDOR_INTEL,
    GpuCard,
    card_number,
    discover_cards,
    pci_address_for_card,
)
from gpu_plugin.deviceplugin.api import (
    DeviceID,
    DeviceInfo,
    DeviceSpec,
    DeviceTree,
    Health,
    Mount,
    ResourceType,
)

LOG = logging.getLogger(__name__)

MONITOR_SUFFIX = "_monitoring"
MONITOR_COMBINED = "monitoring"
MONITOR_ID = DeviceID("all")
MONITORING_MODES = ("split", "single")
BYPATH_SUFFIXES = ("-card", "-render")  #: the by-path entries of a card that ``single`` mounts
BYPATH_MODES = ("single", "all", "none")
CDI_KIND = "intel.cdi.k8s.io/gpu"
#: Where the containers see the device nodes, whatever the host's devfs root is.
CONTAINER_DEVFS = "/dev"

PCI_ID_RE = re.compile(r"^0x[0-9a-f]{4}$")

__all__ = [
    "ScanOptions", "GpuCard", "discover_cards", "device_tree", "scan", "pci_address_for_card",
    "bypath_mounts", "mei_nodes", "card_number", "parse_pci_ids", "InvalidPciIdError",
    "VENDOR_INTEL", "DRIVER_I915", "DRIVER_XE", "DEFAULT_DRIVER", "KNOWN_DRIVERS",
]


class InvalidPciIdError(ValueError):
    """A PCI device ID list does not have upstream's ``0x[0-9a-f]{4}[,...]`` form."""


def parse_pci_ids(text: str) -> frozenset[str]:
    """Parse ``-allow-ids``/``-deny-ids`` as upstream's validatePCIDeviceIDs does."""
    if text == "":
        return frozenset()
    ids = []
    for item in text.split(","):
        item = item.strip()
        if item == "":
            raise InvalidPciIdError("empty PCI ID")
        if not PCI_ID_RE.match(item):
            raise InvalidPciIdError(f"invalid PCI ID: {item}")
        ids.append(item)
    return frozenset(ids)


@dataclass(frozen=True)
class ScanOptions:
    """The flags that shape the advertised tree."""

    shared_dev_num: int = 1
    enable_monitoring: bool = False
    monitoring_mode: str = "single"  #: upstream's default since 2026-03 (5ed134f1)
    bypath: str = "single"
    allow_ids: frozenset[str] = frozenset()
    deny_ids: frozenset[str] = frozenset()


def _bypath_address(entry: str) -> str | None:
    """The PCI address of a card's own ``by-path`` entry, ``pci-<address>-card`` or ``-render``.

    Upstream mounts every entry that starts with ``pci-<address>``, which includes e.g.
    ``pci-0000:00:02.0-platform-simple-framebuffer.0-card`` (simpledrm) and makes pods fail
    "failed to mkdir … file exists" (upstream bug #2296); only the card's own two belong.
    """
    if not entry.startswith("pci-"):
        return None
    for suffix in BYPATH_SUFFIXES:
        if entry.endswith(suffix):
            address = entry[4:-len(suffix)]
            return address if address and "-" not in address else None
    return None


def bypath_mounts(pci_address: str, bypath_dir: str, entries: Iterable[str],
                  container_dir: str = CONTAINER_DEVFS + "/dri/by-path") -> tuple[Mount, ...]:
    """Read-only mounts of the card's ``pci-<address>-card``/``-render`` entries (``-bypath=single``)."""
    return tuple(Mount(f"{container_dir}/{e}", os.path.join(bypath_dir, e), read_only=True)
                 for e in sorted(entries) if _bypath_address(e) == pci_address)


def _index_bypath(entries: Iterable[str]) -> dict[str, list[str]]:
    """The cards' own ``by-path`` entries grouped by PCI address (one pass, not one per card)."""
    index: dict[str, list[str]] = {}
    for entry in sorted(entries):
        address = _bypath_address(entry)
        if address is not None:
            index.setdefault(address, []).append(entry)
    return index


def mei_nodes(card: GpuCard, devfs_root: str) -> tuple[DeviceSpec, ...]:
    """``/dev/meiX`` of the card's ``device/*.mei-*/mei/`` entries (not checked in devfs, as upstream)."""
    device = os.path.join(card.sysfs_path, "device")
    specs: list[DeviceSpec] = []
    try:
        aux = sorted(e for e in os.listdir(device) if ".mei-" in e)
    except OSError:
        return ()
    for entry in aux:
        try:
            meis = sorted(os.listdir(os.path.join(device, entry, "mei")))
        except OSError:
            continue
        specs.extend(DeviceSpec(f"{CONTAINER_DEVFS}/{m}", os.path.join(devfs_root, m), "rw") for m in meis)
    return tuple(specs)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _existing_entries(directory: str) -> set[str]:
    """Names in ``directory`` that exist as upstream's os.Stat sees them (dangling symlinks excluded)."""
    try:
        with os.scandir(directory) as it:
            return {e.name for e in it if not e.is_symlink() or os.path.exists(e.path)}
    except OSError:
        return set()


def _id_allowed(card: GpuCard, options: ScanOptions) -> bool:
    """The ``-allow-ids`` / ``-deny-ids`` filter (logs why a card is left out)."""
    if card.device_id is None:
        LOG.warning("Skipping %s: can't read its PCI device ID", card.name)
        return False
    if options.allow_ids and card.device_id not in options.allow_ids:
        LOG.debug("Skipping %s (%s): not in allow list", card.name, card.device_id)
        return False
    if options.deny_ids and card.device_id in options.deny_ids:
        LOG.debug("Skipping %s (%s): in deny list", card.name, card.device_id)
        return False
    return True


def device_tree(cards: Iterable[GpuCard], devfs_root: str, options: ScanOptions, *,
                bypath_found: bool = True, health: Callable[[GpuCard], Health] | None = None) -> DeviceTree:
    """The tree to advertise for ``cards`` (upstream's scan() after the directory walk).

    ``bypath_found`` is upstream's "dri/by-path existed when the plugin started".
    ``health`` is asked once per advertised card (default: Healthy).
    """
    dri = os.path.join(devfs_root, "dri")
    dri_entries = _existing_entries(dri)
    bypath_dir = os.path.join(dri, "by-path")
    single = bypath_found and options.bypath == "single"
    all_mount: tuple[Mount, ...] = (Mount(f"{CONTAINER_DEVFS}/dri/by-path", bypath_dir, True),) \
        if bypath_found and options.bypath == "all" else ()
    bypath_index = _index_bypath(_listdir(bypath_dir)) if single else {}
    container_bypath = CONTAINER_DEVFS + "/dri/by-path/"
    host_bypath = bypath_dir + "/"
    container_dri = CONTAINER_DEVFS + "/dri/"
    host_dri = dri + "/"
    filtered = bool(options.allow_ids or options.deny_ids)
    shared = range(options.shared_dev_num)
    tree: DeviceTree = {}
    monitor: dict[str, list[DeviceSpec]] = {}
    for card in cards:
        if filtered and not _id_allowed(card, options):
            continue
        if card.sriov_numvfs > 0:
            continue
        nodes = tuple([DeviceSpec(container_dri + n, host_dri + n, "rw")
                       for n in card.drm_nodes if n in dri_entries])
        if not nodes:
            continue
        mounts = all_mount
        if single and card.pci_address is not None:
            # The index holds each card's pci-<address>-card/-render, sorted (= bypath_mounts()).
            mounts = tuple([Mount(container_bypath + e, host_bypath + e, True)
                            for e in bypath_index.get(card.pci_address, ())])
        name = card.name
        info = DeviceInfo(
            health=health(card) if health is not None else Health.HEALTHY, nodes=nodes, mounts=mounts,
            numa_nodes=(card.numa_node,) if card.numa_node is not None else (),
            cdi_devices=(f"{CDI_KIND}={name}",),
        )
        devices = tree.get(ResourceType(card.driver))
        if devices is None:
            devices = tree[ResourceType(card.driver)] = {}
        for i in shared:
            devices[DeviceID(f"{name}-{i}")] = info
        if options.enable_monitoring:
            res = MONITOR_COMBINED if options.monitoring_mode == "single" else card.driver + MONITOR_SUFFIX
            monitor.setdefault(res, []).extend(nodes + mei_nodes(card, devfs_root))
    for res, specs in monitor.items():
        tree[ResourceType(res)] = {MONITOR_ID: DeviceInfo(health=Health.HEALTHY, nodes=tuple(specs))}
    return tree


def scan(sysfs_root: str, devfs_root: str, options: ScanOptions = ScanOptions(), *,
         bypath_found: bool = True, health: Callable[[GpuCard], Health] | None = None) -> DeviceTree:
    """Discover the cards under ``sysfs_root`` and build the tree (both steps above)."""
    return device_tree(discover_cards(sysfs_root), devfs_root, options,
                       bypath_found=bypath_found, health=health)
