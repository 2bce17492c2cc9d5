"""The Level Zero loader (libze_loader.so.1) through ctypes: upstream's zes.c in Python.

zes* Sysman calls with struct layouts from zes_api.h v1.x (sizes/offsets compared by
test_levelzero.py with a fake loader written in C, compiled in the test).  Used by
``sources.py`` only when the loader initializes; never run against a real GPU here.
"""
from __future__ import annotations

import ctypes
import logging
import threading

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
