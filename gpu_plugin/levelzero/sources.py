"""Where the health sidecar's readings come from: the Level Zero loader, else the kernel's sysfs.

:class:`LevelZeroSource` calls libze_loader.so.1 through ctypes (zes* Sysman API, as upstream's
zes.c; struct layouts from zes_api.h v1.x) and is used only when the loader loads and initializes.
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

import ctypes
import glob
import logging
import os
import re
import threading
from typing import Protocol

from gpu_plugin import scan
from gpu_plugin.levelzero import (
    TEMP_ERROR,
    ZE_ERROR_NOT_AVAILABLE,
    ZE_ERROR_UNKNOWN,
    ZE_ERROR_UNSUPPORTED_FEATURE,
    ZE_SUCCESS,
    Health,
    Indices,
    MemoryAmount,
    Temperatures,
)

LOG = logging.getLogger(__name__)

LOADER = "libze_loader.so.1"
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


# --- Level Zero loader (ctypes) -------------------------------------------------------------------

class _PciAddress(ctypes.Structure):
    _fields_ = [("domain", ctypes.c_uint32), ("bus", ctypes.c_uint32), ("device", ctypes.c_uint32),
                ("function", ctypes.c_uint32)]


class _PciSpeed(ctypes.Structure):
    _fields_ = [("gen", ctypes.c_int32), ("width", ctypes.c_int32), ("maxBandwidth", ctypes.c_int64)]


class _PciProperties(ctypes.Structure):
    _fields_ = [("stype", ctypes.c_uint32), ("pNext", ctypes.c_void_p), ("address", _PciAddress),
                ("maxSpeed", _PciSpeed), ("haveBandwidthCounters", ctypes.c_uint8),
                ("havePacketCounters", ctypes.c_uint8), ("haveReplayCounters", ctypes.c_uint8)]


class _PciState(ctypes.Structure):
    _fields_ = [("stype", ctypes.c_uint32), ("pNext", ctypes.c_void_p), ("status", ctypes.c_uint32),
                ("qualityIssues", ctypes.c_uint32), ("stabilityIssues", ctypes.c_uint32),
                ("speed", _PciSpeed)]


class _MemState(ctypes.Structure):
    _fields_ = [("stype", ctypes.c_uint32), ("pNext", ctypes.c_void_p), ("health", ctypes.c_uint32),
                ("free", ctypes.c_uint64), ("size", ctypes.c_uint64)]


class _TempProperties(ctypes.Structure):
    _fields_ = [("stype", ctypes.c_uint32), ("pNext", ctypes.c_void_p), ("type", ctypes.c_uint32),
                ("onSubdevice", ctypes.c_uint8), ("subdeviceId", ctypes.c_uint32),
                ("maxTemperature", ctypes.c_double), ("isCriticalTempSupported", ctypes.c_uint8),
                ("isThreshold1Supported", ctypes.c_uint8), ("isThreshold2Supported", ctypes.c_uint8)]


_MEM_HEALTH_CRITICAL = 3
_PCI_QUAL_ISSUE_SPEED = 1 << 1
_TEMP_KINDS = {"global": 0, "gpu": 1, "memory": 2}
_ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES = 0x3
_ZE_INIT_FLAG_GPU_ONLY = 1
_VENDOR_INTEL = 0x8086


class _ZeError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"0x{code:X}")
        self.code = code


class LevelZeroSource:
    """Upstream's zes.c over ctypes. Not exercised on this project's CI (no loader, no GPU)."""

    name = "levelzero"

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._lock = threading.Lock()
        self._devices: dict[str, ctypes.c_void_p] | None = None

    @classmethod
    def load(cls, wsl: bool = False, path: str = LOADER) -> LevelZeroSource | None:
        """The loader if it loads and initializes (zeInit in WSL, else zesInit), else None."""
        try:
            lib = ctypes.CDLL(path)
        except OSError as err:
            LOG.info("Level Zero loader %s not available: %s", path, err)
            return None
        init = lib.zeInit if wsl else lib.zesInit
        result = init(ctypes.c_uint32(0))
        if result != ZE_SUCCESS:
            LOG.warning("Level Zero %s failed: 0x%X", "zeInit" if wsl else "zesInit", result & 0xFFFFFFFF)
            return None
        return cls(lib)

    def _call(self, func: str, *args: object) -> None:
        result = getattr(self._lib, func)(*args) & 0xFFFFFFFF
        if result != ZE_SUCCESS:
            raise _ZeError(result)

    def _enum(self, func: str, parent: object) -> list[ctypes.c_void_p]:
        count = ctypes.c_uint32(0)
        if parent is None:
            self._call(func, ctypes.byref(count), None)
        else:
            self._call(func, parent, ctypes.byref(count), None)
        handles = (ctypes.c_void_p * count.value)()
        if count.value:
            if parent is None:
                self._call(func, ctypes.byref(count), handles)
            else:
                self._call(func, parent, ctypes.byref(count), handles)
        return [ctypes.c_void_p(h) for h in handles[: count.value]]

    def _device(self, bdf: str) -> ctypes.c_void_p:
        with self._lock:
            if self._devices is None:
                drivers = self._enum("zesDriverGet", None)
                if not drivers:
                    raise _ZeError(ZE_ERROR_NOT_AVAILABLE)
                devices: dict[str, ctypes.c_void_p] = {}
                for handle in self._enum("zesDeviceGet", drivers[0]):
                    props = _PciProperties()
                    try:
                        self._call("zesDevicePciGetProperties", handle, ctypes.byref(props))
                    except _ZeError as err:
                        LOG.warning("PCI properties of a Level Zero device failed: %s", err)
                        continue
                    a = props.address
                    devices[f"{a.domain:04x}:{a.bus:02x}:{a.device:02x}.{a.function:x}"] = handle
                self._devices = devices
            found = self._devices.get(bdf.lower())
        if found is None:
            raise _ZeError(ZE_ERROR_UNKNOWN)
        return found

    def health(self, bdf: str) -> Health:
        try:
            dev = self._device(bdf)
        except _ZeError as err:
            return Health(error=err.code)
        memory_ok, bus_ok, errors = True, True, []
        try:
            for mem in self._enum("zesDeviceEnumMemoryModules", dev):
                state = _MemState()
                self._call("zesMemoryGetState", mem, ctypes.byref(state))
                memory_ok = memory_ok and state.health < _MEM_HEALTH_CRITICAL
        except _ZeError as err:
            errors.append(err.code)
        pci = _PciState()
        try:
            self._call("zesDevicePciGetState", dev, ctypes.byref(pci))
            bus_ok = not pci.qualityIssues & _PCI_QUAL_ISSUE_SPEED
        except _ZeError as err:
            errors.append(ZE_SUCCESS if err.code == ZE_ERROR_UNSUPPORTED_FEATURE else err.code)
        # in-band error only when both reads failed: a partial answer must not hide a bad indicator
        return Health(memory_ok=memory_ok, bus_ok=bus_ok, soc_ok=True,
                      error=errors[-1] if len(errors) == 2 else ZE_SUCCESS)

    def temperatures(self, bdf: str) -> Temperatures:
        try:
            dev = self._device(bdf)
            sensors = self._enum("zesDeviceEnumTemperatureSensors", dev)
        except _ZeError as err:
            return Temperatures(error=err.code)
        found: dict[int, float] = {}
        error = ZE_SUCCESS
        for sensor in sensors:
            props, value = _TempProperties(), ctypes.c_double()
            try:
                self._call("zesTemperatureGetProperties", sensor, ctypes.byref(props))
                if props.type in _TEMP_KINDS.values() and props.type not in found:
                    self._call("zesTemperatureGetState", sensor, ctypes.byref(value))
                    found[props.type] = value.value
            except _ZeError as err:
                error = err.code
        # an in-band error only when nothing was read (missing kinds read -999.0, see module doc)
        return Temperatures(global_=found.get(0, TEMP_ERROR), gpu=found.get(1, TEMP_ERROR),
                            memory=found.get(2, TEMP_ERROR), error=ZE_SUCCESS if found else error)

    def indices(self) -> Indices:
        try:
            self._call("zeInit", ctypes.c_uint32(_ZE_INIT_FLAG_GPU_ONLY))
            drivers = self._enum("zeDriverGet", None)
            if not drivers:
                raise _ZeError(ZE_ERROR_NOT_AVAILABLE)
            found = []
            for index, dev in enumerate(self._enum("zeDeviceGet", drivers[0])):
                props = (ctypes.c_uint32 * 256)()  # ze_device_properties_t is < 1 KiB
                props[0] = _ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES
                try:
                    self._call("zeDeviceGetProperties", dev, ctypes.byref(props))
                except _ZeError:
                    continue
                if props[5] == _VENDOR_INTEL:  # vendorId: offset 20 (stype, pad, pNext, type)
                    found.append(index)
            return Indices(indices=tuple(found))
        except _ZeError as err:
            return Indices(error=err.code)

    def memory(self, bdf: str) -> MemoryAmount:
        try:
            dev = self._device(bdf)
            total = 0
            for mem in self._enum("zesDeviceEnumMemoryModules", dev):
                state = _MemState()
                self._call("zesMemoryGetState", mem, ctypes.byref(state))
                total += state.size
            return MemoryAmount(size=total)
        except _ZeError as err:
            return MemoryAmount(error=err.code)


def open_source(sysfs_root: str, *, wsl: bool = False, kind: str = "auto") -> Source:
    """``kind`` auto: the loader when it initializes, else sysfs; ``levelzero``/``sysfs`` force one."""
    if kind in ("auto", "levelzero"):
        source = LevelZeroSource.load(wsl)
        if source is not None:
            return source
        if kind == "levelzero":
            raise RuntimeError(f"Level Zero loader {LOADER} is not usable")
    return SysfsSource(sysfs_root)
