"""Intel GPU DRM cards as sysfs describes them: ``class/drm/cardN`` in, :class:`GpuCard` out.

Ports upstream's per-card checks (vendor, PCI class, ``device/drm``, driver) from
``cmd/gpu_plugin/gpu_plugin.go``.  The hot path of every rescan (once per card and VF),
so it reads with plain string paths and one open/read/close per attribute.  Reused by
the Level-Zero sysfs source and the labeler through :mod:`gpu_plugin.scan`.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import stat
from dataclasses import dataclass

LOG = logging.getLogger(__name__)

VENDOR_INTEL = "0x8086"
DRIVER_I915 = "i915"
DRIVER_XE = "xe"
DEFAULT_DRIVER = DRIVER_I915
KNOWN_DRIVERS = frozenset({DRIVER_I915, DRIVER_XE})

_CARD_RE = re.compile(r"^card[0-9]+$")
_PCI_ADDRESS_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]$")
#: Linux's largest MAX_NUMNODES (CONFIG_NODES_SHIFT=10); a numa_node at or past it is not real.
MAX_NUMA_NODES = 1 << 10
#: sysfs class/drm dir -> the warnings its last scan reported (see _Warnings)
_LOGGED: dict[str, frozenset[str]] = {}
_LOGGED_MAX = 64

__all__ = ["GpuCard", "discover_cards", "pci_address_for_card", "card_number", "VENDOR_INTEL",
           "DRIVER_I915", "DRIVER_XE", "DEFAULT_DRIVER", "KNOWN_DRIVERS"]


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
    """A small sysfs attribute (one read, as the kernel serves it); None if absent.

    Opened non-blocking, so a FIFO or device node in its place cannot block the scan (an empty
    FIFO or a tty answers at once: nothing, or EAGAIN), and read at most 4 KB.  An empty answer
    from something that is not a regular file (sysfs attributes are) is refused with OSError.
    The file type is checked only then: an fstat per attribute cost the 1,008-VF scan ~10 ms.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, 4096)
        if not data and not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return data.decode("ascii", "replace")
    finally:
        os.close(fd)


_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY


class _Warnings:
    """The warnings of one scan, each logged only if the previous scan of the same root did not
    report it too: a bad attribute is logged when it appears, not on every rescan, and again if
    it goes away and comes back."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.previous = _LOGGED.get(root, frozenset())
        self.seen: set[str] = set()

    def __call__(self, key: str, message: str, *args: object) -> None:
        self.seen.add(key)
        if key not in self.previous:
            LOG.warning(message, *args)

    def done(self) -> None:
        if len(_LOGGED) >= _LOGGED_MAX and self.root not in _LOGGED:
            _LOGGED.clear()
        _LOGGED[self.root] = frozenset(self.seen)


def _numa_node(name: str, text: str | None, warn: _Warnings) -> int | None:
    """``device/numa_node``: None when absent, negative (-1: no NUMA) or not a plausible node number
    (garbage or past Linux's MAX_NUMNODES, which kubelet's int64 topology field can't always hold)."""
    if text is None:
        return None
    try:
        numa = int(text.strip())
    except ValueError:
        numa = None
    if numa is None or numa >= MAX_NUMA_NODES:
        shown = text.strip()[:40]
        warn(f"{name}:numa_node:{shown}", "%s: ignoring its NUMA node %r (not a node number below %d); "
             "advertised without topology", name, shown, MAX_NUMA_NODES)
        return None
    return numa if numa >= 0 else None


def _follow(base_dir: str, target: str) -> str:
    """``base_dir`` joined with the symlink ``target`` and normalised lexically (as os.path.normpath).

    ``base_dir`` must already be normal.  Fast path for sysfs's ``../../x/y`` targets without
    string-heavy posixpath calls; anything unusual goes through normpath.
    """
    if base_dir in ("/", ".") or base_dir.startswith("//"):
        return os.path.normpath(os.path.join(base_dir, target))
    head, rest = base_dir, target
    while rest.startswith("../"):
        cut = head.rfind("/")
        if cut <= 0 or head[cut + 1:] == "..":
            return os.path.normpath(os.path.join(base_dir, target))
        head = head[:cut]
        rest = rest[3:]
    if rest.startswith("/") or rest.endswith("/") or "//" in rest or "/." in "/" + rest:
        return os.path.normpath(os.path.join(base_dir, target))
    return f"{head}/{rest}" if rest else head


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
    return _follow(base_dir, target), target


def pci_address_for_card(card_path: str, name: str) -> str | None:
    """PCI address from the target of the ``class/drm/cardN`` link (upstream's pciAddressForCard)."""
    try:
        target = os.readlink(card_path)
    except OSError:
        return None
    return _pci_address_from_target(target, name)


def _pci_address_from_target(target: str, name: str) -> str | None:
    suffix = "drm/" + name
    if target.endswith(suffix):
        target = target[: -len(suffix)]
    address = target.rstrip("/").rpartition("/")[2]
    return address if _PCI_ADDRESS_RE.match(address) else None


def _read_card(sysfs_drm: str, name: str, base: str | None = None,
               warn: _Warnings | None = None) -> GpuCard | None:
    """One ``class/drm`` entry; None if not a usable Intel GPU.  Raises ValueError/OSError if bad.

    Hot path (once per card and VF per scan): plain string paths, one open+read+close per
    attribute, no Path objects.  ``base`` is ``sysfs_drm`` normalised (computed once per scan).
    """
    warn = _Warnings(sysfs_drm) if warn is None else warn
    card_path = f"{sysfs_drm}/{name}"
    card_real, card_target = _resolve(os.path.normpath(sysfs_drm) if base is None else base, name)
    device, device_target = _resolve(card_real, "device")
    vendor = _read(device + "/vendor")
    if vendor is None:
        warn(f"{name}:vendor", "Skipping %s: can't read its vendor file", name)
        return None
    vendor = vendor.strip()
    if vendor != VENDOR_INTEL:
        if vendor == "":
            raise ValueError("empty vendor file")
        LOG.debug("Non-Intel GPU: %s", name)
        return None
    pci_class = _read(device + "/class")
    if pci_class is not None and int(pci_class.strip(), 16) >> 16 != 0x03:
        LOG.debug("Skipping %s: PCI class %s is not a display controller", name, pci_class.strip())
        return None
    try:
        entries = os.listdir(device + "/drm")
    except FileNotFoundError:
        LOG.debug("Skipping %s: no device/drm", name)
        return None
    numvfs_text = _read(device + "/sriov_numvfs")
    numvfs = int(numvfs_text.strip()) if numvfs_text is not None else 0
    numa = _numa_node(name, _read(device + "/numa_node"), warn)
    device_id = _read(device + "/device")
    try:
        driver = os.readlink(device + "/driver").rpartition("/")[2]
    except FileNotFoundError:
        LOG.debug("%s has no driver link, using %s", name, DEFAULT_DRIVER)
        driver = DEFAULT_DRIVER
    if driver not in KNOWN_DRIVERS:
        warn(f"{name}:driver:{driver}", "Skipping %s: bound to driver %r, not i915 or xe", name, driver)
        return None
    bdf = device_target.rstrip("/").rpartition("/")[2] if device_target is not None else None
    address = _pci_address_from_target(card_target, name) if card_target is not None else None
    entries.sort()
    return GpuCard(
        name=name, sysfs_path=card_path, pci_address=address, bdf=bdf,
        driver=driver, device_id=device_id.split("\n", 1)[0].strip() if device_id is not None else None,
        numa_node=numa, sriov_numvfs=numvfs,
        drm_nodes=tuple([e for e in entries if not e.startswith("controlD")]),
    )


def discover_cards(sysfs_root: str) -> list[GpuCard]:
    """Every Intel GPU card under ``<sysfs_root>/class/drm``, in card-number order.

    PFs with VFs are included (``is_pf_with_vfs``); callers decide.  A missing
    ``class/drm`` means no cards; one that can't be listed raises OSError (a read failure is
    not "no GPU": the caller keeps what it had).  A bad card is skipped with a warning, logged
    when the problem first appears rather than on every rescan.
    """
    sysfs_drm = os.path.join(sysfs_root, "class", "drm")
    base = os.path.normpath(sysfs_drm)
    try:
        names = [n for n in os.listdir(sysfs_drm) if _CARD_RE.match(n)]
    except FileNotFoundError:
        return []
    cards = []
    warn = _Warnings(sysfs_drm)
    for name in sorted(names, key=card_number):
        try:
            card = _read_card(sysfs_drm, name, base, warn)
        except (ValueError, OSError) as err:
            warn(f"{name}:{err}", "Skipping %s: bad sysfs entry: %s", name, err)
            continue
        if card is not None:
            cards.append(card)
    warn.done()
    return cards
