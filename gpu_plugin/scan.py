"""Intel GPU discovery: sysfs/devfs roots in, plain data out (no gRPC, no threads).

Ports the discovery rules of upstream's ``cmd/gpu_plugin/gpu_plugin.go`` (see
SPEC section 1): which ``class/drm/cardN`` entries are usable Intel GPUs
(:func:`discover_cards`, reused by the side programs) and the device tree the
plugin advertises for them (:func:`device_tree`, :func:`scan`).  A bad or
half-written sysfs entry skips that card with one log line.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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

VENDOR_INTEL = "0x8086"
DRIVER_I915 = "i915"
DRIVER_XE = "xe"
DEFAULT_DRIVER = DRIVER_I915
KNOWN_DRIVERS = frozenset({DRIVER_I915, DRIVER_XE})
MONITOR_SUFFIX = "_monitoring"
MONITOR_COMBINED = "monitoring"
MONITOR_ID = DeviceID("all")
MONITORING_MODES = ("split", "single")
BYPATH_MODES = ("single", "all", "none")
CDI_KIND = "intel.cdi.k8s.io/gpu"
#: Where the containers see the device nodes, whatever the host's devfs root is.
CONTAINER_DEVFS = "/dev"

_CARD_RE = re.compile(r"^card[0-9]+$")
_PCI_ADDRESS_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]$")
PCI_ID_RE = re.compile(r"^0x[0-9a-f]{4}$")

__all__ = [
    "ScanOptions", "GpuCard", "discover_cards", "device_tree", "scan", "pci_address_for_card",
    "bypath_mounts", "mei_nodes", "card_number", "parse_pci_ids", "InvalidPciIdError",
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
    monitoring_mode: str = "split"
    bypath: str = "single"
    allow_ids: frozenset[str] = frozenset()
    deny_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class GpuCard:
    """One Intel GPU DRM card as sysfs describes it."""

    name: str                    #: ``card0``
    sysfs_path: str              #: ``<sysfs>/class/drm/card0``
    pci_address: str | None      #: BDF from the ``class/drm/cardN`` link target (None if unparsable)
    bdf: str | None              #: basename of ``cardN/device`` (what Level-Zero is asked about)
    driver: str                  #: ``i915`` or ``xe`` (no driver link: ``i915``)
    device_id: str | None        #: first line of ``device/device`` (None if unreadable)
    numa_node: int | None        #: ``device/numa_node`` (None if absent or negative)
    sriov_numvfs: int            #: ``device/sriov_numvfs`` (0 if absent)
    drm_nodes: tuple[str, ...]   #: entries of ``device/drm`` except ``controlD*``, sorted

    @property
    def number(self) -> int:
        return card_number(self.name)

    @property
    def is_pf_with_vfs(self) -> bool:
        return self.sriov_numvfs > 0

    @property
    def render_node(self) -> str | None:
        return next((n for n in self.drm_nodes if n.startswith("renderD")), None)


def card_number(name: str) -> int:
    """``card12`` -> 12."""
    return int(name[4:])


def _read(path: str) -> str | None:
    """A small sysfs attribute (one read, as the kernel serves it); None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, 4096).decode("ascii", "replace")
    finally:
        os.close(fd)


def _resolve(base_dir: str, link: str) -> tuple[str, str | None]:
    """(path to use, link target or None): follow one sysfs link lexically, as the kernel lays them out.

    Resolving ``class/drm/cardN`` and ``cardN/device`` once saves the kernel two symlink walks on
    every attribute read of the card (1,008 VFs x 6 reads per scan).
    """
    path = f"{base_dir}/{link}"
    try:
        target = os.readlink(path)
    except OSError:
        return path, None
    return os.path.normpath(os.path.join(base_dir, target)), target


def pci_address_for_card(card_path: str, name: str) -> str | None:
    """PCI address from the target of the ``class/drm/cardN`` link (upstream's pciAddressForCard)."""
    try:
        target = os.readlink(card_path)
    except OSError:
        return None
    return _pci_address_from_target(target, name)


def _pci_address_from_target(target: str, name: str) -> str | None:
    suffix = os.path.join("drm", name)
    if target.endswith(suffix):
        target = target[: -len(suffix)]
    address = os.path.basename(target.rstrip("/"))
    return address if _PCI_ADDRESS_RE.match(address) else None


def _read_card(sysfs_drm: str, name: str) -> GpuCard | None:
    """One ``class/drm`` entry; None if not a usable Intel GPU.  Raises ValueError/OSError if bad."""
    card_path = f"{sysfs_drm}/{name}"
    card_real, card_target = _resolve(sysfs_drm, name)
    device, device_target = _resolve(card_real, "device")
    vendor = _read(f"{device}/vendor")
    if vendor is None:
        LOG.warning("Skipping %s: can't read its vendor file", name)
        return None
    if vendor.strip() == "":
        raise ValueError("empty vendor file")
    if vendor.strip() != VENDOR_INTEL:
        LOG.debug("Non-Intel GPU: %s", name)
        return None
    pci_class = _read(f"{device}/class")
    if pci_class is not None and int(pci_class.strip(), 16) >> 16 != 0x03:
        LOG.debug("Skipping %s: PCI class %s is not a display controller", name, pci_class.strip())
        return None
    try:
        entries = os.listdir(f"{device}/drm")
    except FileNotFoundError:
        LOG.debug("Skipping %s: no device/drm", name)
        return None
    numvfs_text = _read(f"{device}/sriov_numvfs")
    numvfs = int(numvfs_text.strip()) if numvfs_text is not None else 0
    numa_text = _read(f"{device}/numa_node")
    numa = int(numa_text.strip()) if numa_text is not None else -1
    device_id = _read(f"{device}/device")
    try:
        driver = os.path.basename(os.readlink(f"{device}/driver"))
    except FileNotFoundError:
        LOG.debug("%s has no driver link, using %s", name, DEFAULT_DRIVER)
        driver = DEFAULT_DRIVER
    if driver not in KNOWN_DRIVERS:
        LOG.warning("Skipping %s: bound to driver %r, not i915 or xe", name, driver)
        return None
    bdf = os.path.basename(device_target.rstrip("/")) if device_target is not None else None
    address = _pci_address_from_target(card_target, name) if card_target is not None else None
    return GpuCard(
        name=name, sysfs_path=card_path, pci_address=address, bdf=bdf,
        driver=driver, device_id=device_id.split("\n")[0].strip() if device_id is not None else None,
        numa_node=numa if numa >= 0 else None, sriov_numvfs=numvfs,
        drm_nodes=tuple(sorted(e for e in entries if not e.startswith("controlD"))),
    )


def discover_cards(sysfs_root: str) -> list[GpuCard]:
    """Every Intel GPU card under ``<sysfs_root>/class/drm``, in card-number order.

    PFs with VFs are included (``is_pf_with_vfs``); callers decide.  A missing
    ``class/drm`` means no cards.
    """
    sysfs_drm = os.path.join(sysfs_root, "class", "drm")
    try:
        names = [n for n in os.listdir(sysfs_drm) if _CARD_RE.match(n)]
    except FileNotFoundError:
        return []
    cards = []
    for name in sorted(names, key=card_number):
        try:
            card = _read_card(sysfs_drm, name)
        except (ValueError, OSError) as err:
            LOG.warning("Skipping %s: bad sysfs entry: %s", name, err)
            continue
        if card is not None:
            cards.append(card)
    return cards


def bypath_mounts(pci_address: str, bypath_dir: str, entries: Iterable[str],
                  container_dir: str = CONTAINER_DEVFS + "/dri/by-path") -> tuple[Mount, ...]:
    """Read-only mounts of the ``by-path`` entries starting with ``pci-<address>`` (upstream's ``single``)."""
    prefix = "pci-" + pci_address
    return tuple(Mount(f"{container_dir}/{e}", os.path.join(bypath_dir, e), read_only=True)
                 for e in sorted(entries) if e.startswith(prefix))


def _index_bypath(entries: Iterable[str]) -> dict[str, list[str]]:
    """``by-path`` entries grouped by the PCI address they start with (one pass, not one per card)."""
    index: dict[str, list[str]] = {}
    for entry in sorted(entries):
        if entry.startswith("pci-"):
            index.setdefault(entry[4:4 + len("0000:00:00.0")], []).append(entry)
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


def device_tree(cards: Iterable[GpuCard], devfs_root: str, options: ScanOptions, *,
                bypath_found: bool = True, health: Callable[[GpuCard], Health] | None = None) -> DeviceTree:
    """The tree to advertise for ``cards`` (upstream's scan() after the directory walk).

    ``bypath_found`` is upstream's "dri/by-path existed when the plugin started".
    ``health`` is asked once per advertised card (default: Healthy).
    """
    dri = os.path.join(devfs_root, "dri")
    dri_entries = _existing_entries(dri)
    bypath_dir = os.path.join(dri, "by-path")
    bypath_index = _index_bypath(_listdir(bypath_dir)) if bypath_found and options.bypath == "single" else {}
    tree: DeviceTree = {}
    monitor: dict[str, list[DeviceSpec]] = {}
    for card in cards:
        if (options.allow_ids or options.deny_ids) and card.device_id is None:
            LOG.warning("Skipping %s: can't read its PCI device ID", card.name)
            continue
        if options.allow_ids and card.device_id not in options.allow_ids:
            LOG.debug("Skipping %s (%s): not in allow list", card.name, card.device_id)
            continue
        if options.deny_ids and card.device_id in options.deny_ids:
            LOG.debug("Skipping %s (%s): in deny list", card.name, card.device_id)
            continue
        if card.is_pf_with_vfs:
            continue
        nodes = tuple(DeviceSpec(f"{CONTAINER_DEVFS}/dri/{n}", f"{dri}/{n}", "rw")
                      for n in card.drm_nodes if n in dri_entries)
        if not nodes:
            continue
        mounts: tuple[Mount, ...] = ()
        if bypath_found and options.bypath == "all":
            mounts = (Mount(f"{CONTAINER_DEVFS}/dri/by-path", bypath_dir, True),)
        elif bypath_found and options.bypath == "single" and card.pci_address is not None:
            mounts = bypath_mounts(card.pci_address, bypath_dir, bypath_index.get(card.pci_address, ()))
        info = DeviceInfo(
            health=health(card) if health is not None else Health.HEALTHY, nodes=nodes, mounts=mounts,
            numa_nodes=(card.numa_node,) if card.numa_node is not None else (),
            cdi_devices=(f"{CDI_KIND}={card.name}",),
        )
        devices = tree.setdefault(ResourceType(card.driver), {})
        for i in range(options.shared_dev_num):
            devices[DeviceID(f"{card.name}-{i}")] = info
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
