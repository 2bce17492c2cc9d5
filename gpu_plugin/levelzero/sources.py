"""Where the health sidecar's readings come from: the Level Zero loader, else the kernel's sysfs.

:class:`LevelZeroSource` (``ze_ctypes.py``) calls libze_loader.so.1 through ctypes (zes* Sysman API,
as upstream's zes.c) and is used only when the loader loads and initializes.
:class:`SysfsSource` reads what the kernel exposes under ``-sysfs-root``; its mapping is:

* temperatures: ``<pci dev>/hwmon/hwmon*/temp*_input`` (millidegrees C). global = hottest sensor;
  memory = hottest sensor labelled ``vram*``/``mem*``/``hbm*``/``mctrl``; gpu = hottest labelled
  ``gt*``/``gpu*``, else ``pkg``/``package``. A kind with no sensor reads -999.0 (which no limit
  can exceed) without an in-band error, so clients that drop a whole answer carrying an error
  still see the other readings; the same holds for the loader source (upstream sets NOT_AVAILABLE).
* bus_ok = false when PCIe AER counts an uncorrectable error: ``aer_dev_fatal`` TOTAL_ERR_FATAL or
  ``aer_dev_nonfatal`` TOTAL_ERR_NONFATAL > 0, or the i915 counter ``soc_fatal_iosf_pciaer`` > 0.
* memory_ok = false when an i915 RAS counter (``<card>/gt/gt*/error_counter/``, ``device/tile*/gt*/
  error_counter/``) whose name has ``fatal`` (not ``nonfatal``) and ``hbm``/``mem`` is > 0;
  soc_ok = false for any other such fatal counter > 0. Correctable counters are ignored.
* memory amount: xe ``device/tile*/physical_vram_size_bytes`` summed; i915 ``lmem_total_bytes`` x
  tiles; else 0 (integrated). Intel indices: 0..n-1 over the Intel GPUs in PCI address order.
Missing files mean "no information" = healthy. An unknown BDF gives error UNKNOWN in-band.
"""
from __future__ import annotations

import glob
import logging
import os
import re
from typing import Protocol

from gpu_plugin import scan
from gpu_plugin.levelzero import (
    TEMP_ERROR,
    ZE_ERROR_UNKNOWN,
    Health,
    Indices,
    MemoryAmount,
    Temperatures,
)
from gpu_plugin.levelzero.ze_ctypes import LOADER, LevelZeroSource

__all__ = ["Source", "SysfsSource", "LevelZeroSource", "LOADER", "aer_total", "open_source"]

LOG = logging.getLogger(__name__)
_MEMORY_LABEL = re.compile(r"^(vram|mem|hbm|mctrl)", re.I)
_GPU_LABEL = re.compile(r"^(gt|gpu)", re.I)
_PKG_LABEL = re.compile(r"^(pkg|package)", re.I)


class Source(Protocol):
    name: str

    def health(self, bdf: str) -> Health: ...
    def temperatures(self, bdf: str) -> Temperatures: ...
    def indices(self) -> Indices: ...
    def memory(self, bdf: str) -> MemoryAmount: ...


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(4096)
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def aer_total(path: str, total_key: str) -> int:
    """An ``aer_dev_*`` file's ``TOTAL_ERR_*`` line (else the sum of its counters); 0 if unreadable."""
    text = _read(path)
    if text is None:
        return 0
    counts: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts[total_key] if total_key in counts else sum(counts.values())


class SysfsSource:
    """Readings from the kernel (hwmon, AER, i915 RAS counters); see the module docstring."""

    name = "sysfs"

    def __init__(self, sysfs_root: str) -> None:
        self.sysfs_root = sysfs_root

    def _cards(self) -> list[scan.GpuCard]:
        return sorted((c for c in scan.discover_cards(self.sysfs_root) if c.bdf),
                      key=lambda c: c.bdf or "")

    def _card(self, bdf: str) -> scan.GpuCard | None:
        return next((c for c in self._cards() if c.bdf == bdf.lower()), None)

    def health(self, bdf: str) -> Health:
        card = self._card(bdf)
        if card is None:
            return Health(error=ZE_ERROR_UNKNOWN)
        device = os.path.join(card.sysfs_path, "device")
        bus_ok = (aer_total(os.path.join(device, "aer_dev_fatal"), "TOTAL_ERR_FATAL") == 0
                  and aer_total(os.path.join(device, "aer_dev_nonfatal"), "TOTAL_ERR_NONFATAL") == 0)
        memory_ok = soc_ok = True
        counters = glob.glob(os.path.join(glob.escape(card.sysfs_path), "gt", "gt*", "error_counter", "*"))
        counters += glob.glob(os.path.join(glob.escape(device), "tile*", "gt*", "error_counter", "*"))
        for path in counters:
            name = os.path.basename(path)
            if "fatal" not in name or "nonfatal" in name or not (_int(_read(path)) or 0) > 0:
                continue
            LOG.info("%s: RAS counter %s is non-zero", bdf, name)
            if name == "soc_fatal_iosf_pciaer":
                bus_ok = False
            elif "hbm" in name or "mem" in name:
                memory_ok = False
            else:
                soc_ok = False
        return Health(memory_ok=memory_ok, bus_ok=bus_ok, soc_ok=soc_ok)

    def temperatures(self, bdf: str) -> Temperatures:
        card = self._card(bdf)
        if card is None:
            return Temperatures(error=ZE_ERROR_UNKNOWN)
        device = os.path.join(card.sysfs_path, "device")
        sensors: list[tuple[str, float]] = []
        for path in sorted(glob.glob(os.path.join(glob.escape(device), "hwmon", "hwmon*", "temp*_input"))):
            value = _int(_read(path))
            if value is None:
                LOG.debug("%s: unreadable temperature %s", bdf, path)
                continue
            label = (_read(path[: -len("_input")] + "_label") or "").strip()
            sensors.append((label, value / 1000.0))
        if not sensors:
            return Temperatures()

        def hottest(pattern: re.Pattern[str]) -> float | None:
            found = [t for label, t in sensors if pattern.match(label)]
            return max(found) if found else None

        gpu = hottest(_GPU_LABEL)
        gpu = gpu if gpu is not None else hottest(_PKG_LABEL)
        memory = hottest(_MEMORY_LABEL)
        return Temperatures(global_=max(t for _, t in sensors),
                            gpu=TEMP_ERROR if gpu is None else gpu,
                            memory=TEMP_ERROR if memory is None else memory)

    def indices(self) -> Indices:
        return Indices(indices=tuple(range(len(self._cards()))))

    def memory(self, bdf: str) -> MemoryAmount:
        card = self._card(bdf)
        if card is None:
            return MemoryAmount(error=ZE_ERROR_UNKNOWN)
        device = os.path.join(card.sysfs_path, "device")
        vram = [_int(_read(p)) for p in glob.glob(os.path.join(glob.escape(device), "tile*",
                                                             "physical_vram_size_bytes"))]
        if any(v for v in vram):
            return MemoryAmount(size=sum(v for v in vram if v))
        lmem = _int(_read(os.path.join(card.sysfs_path, "lmem_total_bytes")))
        if lmem:
            tiles = len(glob.glob(os.path.join(glob.escape(card.sysfs_path), "gt", "gt*"))) or 1
            return MemoryAmount(size=lmem * tiles)
        return MemoryAmount()


def open_source(sysfs_root: str, *, wsl: bool = False, kind: str = "auto") -> Source:
    """``kind`` auto: the loader when it initializes, else sysfs; ``levelzero``/``sysfs`` force one."""
    if kind in ("auto", "levelzero"):
        source = LevelZeroSource.load(wsl)
        if source is not None:
            return source
        if kind == "levelzero":
            raise RuntimeError(f"Level Zero loader {LOADER} is not usable")
    return SysfsSource(sysfs_root)
