"""Declarative builder of fake sysfs/devfs trees laid out as the Linux kernel does.

Emulated: the directory/symlink structure of ``/sys`` and ``/dev`` for Intel GPUs
(PCI device dirs under ``sys/devices/pci0000:00``, ``class/drm`` and ``bus/pci``
symlinks, driver links, SR-IOV ``virtfnN``/``physfn`` links, hwmon, MEI, tiles)
with regular files in place of device nodes.  Used by tests and the demo; it
imports nothing from pytest and is never imported by production code.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FakeSysfs", "FakeGpu", "vf_bdf"]


def vf_bdf(pf_bdf: str, index: int) -> str:
    """BDF of VF ``index`` (1-based) of ``pf_bdf`` with offset 1, stride 1 (as i915/xe PFs report)."""
    domain, bus, devfn = pf_bdf.split(":")
    dev, fn = devfn.split(".")
    number = (int(dev, 16) << 3 | int(fn, 16)) + index
    return f"{domain}:{bus}:{number >> 3:02x}.{number & 7:x}"


@dataclass
class FakeGpu:
    """What :meth:`FakeSysfs.add_gpu` laid out for one PCI function (VFs listed in ``vfs``)."""

    bdf: str
    card: int
    render: int | None
    driver: str | None
    vfs: list[FakeGpu] = field(default_factory=list)

    @property
    def card_name(self) -> str:
        return f"card{self.card}"


class FakeSysfs:
    """Builds ``<root>/sys`` and ``<root>/dev``; ``sysfs_root``/``devfs_root`` are the roots to scan."""

    def __init__(self, root: str | os.PathLike[str], *, bypath_dir: bool = True) -> None:
        self.root = Path(root)
        self.sys = self.root / "sys"
        self.dev = self.root / "dev"
        self.gpus: dict[str, FakeGpu] = {}
        for d in ("class/drm", "bus/pci/devices", "bus/pci/drivers/i915", "bus/pci/drivers/xe",
                  "devices/pci0000:00"):
            (self.sys / d).mkdir(parents=True, exist_ok=True)
        (self.dev / "dri").mkdir(parents=True, exist_ok=True)
        if bypath_dir:
            (self.dev / "dri" / "by-path").mkdir(exist_ok=True)

    @property
    def sysfs_root(self) -> str:
        return str(self.sys)

    @property
    def devfs_root(self) -> str:
        return str(self.dev)

    def pci_dir(self, bdf: str) -> Path:
        return self.sys / "devices" / "pci0000:00" / bdf

    def card_dir(self, card: int) -> Path:
        """``sys/class/drm/cardN`` (the symlink)."""
        return self.sys / "class" / "drm" / f"card{card}"

    # -- building ---------------------------------------------------------------------------

    def add_gpu(self, bdf: str = "0000:03:00.0", card: int = 0, render: int | None = 128, *,
                driver: str | None = "i915", device_id: str = "0x56c0", vfs: int = 0,
                numa: int | None = 0, pci_class: str | None = "0x030000", vendor: str = "0x8086",
                sriov_totalvfs: int | None = None, control: int | None = None, devnodes: bool = True,
                bypath: bool = True, lmem_total_bytes: int | None = None, tiles: int = 0,
                temperatures: dict[str, int] | None = None, mei: int | None = None) -> FakeGpu:
        """Lay out one PCI function with its DRM nodes; with ``vfs`` > 0 also its VFs.

        VF *i* gets the next BDF function, ``card + i`` and ``render + i``.
        ``temperatures`` maps hwmon labels (``pkg``, ``vram``) to degrees C; ``mei``
        adds ``/dev/mei<mei>`` under a ``<driver>.mei-gscfi`` aux device.
        """
        pci = self.pci_dir(bdf)
        pci.mkdir(parents=True)
        self._write(pci / "vendor", vendor)
        self._write(pci / "device", device_id)
        if pci_class is not None:
            self._write(pci / "class", pci_class)
        if numa is not None:
            self._write(pci / "numa_node", str(numa))
        if driver is not None:
            (self.sys / "bus" / "pci" / "drivers" / driver).mkdir(parents=True, exist_ok=True)
            os.symlink(f"../../../bus/pci/drivers/{driver}", pci / "driver")
            os.symlink(f"../../../../devices/pci0000:00/{bdf}", self.sys / "bus/pci/drivers" / driver / bdf)
        os.symlink(f"../../../devices/pci0000:00/{bdf}", self.sys / "bus/pci/devices" / bdf)
        if vfs or sriov_totalvfs is not None:
            total = sriov_totalvfs if sriov_totalvfs is not None else max(vfs, 7)
            self._write(pci / "sriov_totalvfs", str(total))
            self._write(pci / "sriov_numvfs", str(vfs))
        gpu = FakeGpu(bdf=bdf, card=card, render=render, driver=driver)
        self._add_drm(gpu, control=control, devnodes=devnodes, bypath=bypath)
        if lmem_total_bytes is not None:
            self._write(pci / "drm" / f"card{card}" / "lmem_total_bytes", str(lmem_total_bytes))
        for t in range(tiles):
            if driver == "xe":
                (pci / f"tile{t}").mkdir()
            else:
                (pci / "drm" / f"card{card}" / "gt" / f"gt{t}").mkdir(parents=True)
        if temperatures:
            hwmon = pci / "hwmon" / "hwmon0"
            hwmon.mkdir(parents=True)
            self._write(hwmon / "name", driver or "i915")
            for n, (label, degrees) in enumerate(sorted(temperatures.items()), start=1):
                self._write(hwmon / f"temp{n}_label", label)
                self._write(hwmon / f"temp{n}_input", str(degrees * 1000))
        if mei is not None:
            (pci / f"{driver or 'i915'}.mei-gscfi.{768 + mei}" / "mei" / f"mei{mei}").mkdir(parents=True)
            self._write(self.dev / f"mei{mei}", "")
        for i in range(1, vfs + 1):
            vbdf = vf_bdf(bdf, i)
            vf = self.add_gpu(vbdf, card + i, None if render is None else render + i, driver=driver,
                              device_id=device_id, numa=numa, pci_class=pci_class, vendor=vendor,
                              devnodes=devnodes, bypath=bypath)
            os.symlink(f"../{vbdf}", pci / f"virtfn{i - 1}")
            os.symlink(f"../{bdf}", self.pci_dir(vbdf) / "physfn")
            gpu.vfs.append(vf)
        self.gpus[bdf] = gpu
        return gpu

    def _add_drm(self, gpu: FakeGpu, *, control: int | None, devnodes: bool, bypath: bool) -> None:
        drm = self.pci_dir(gpu.bdf) / "drm"
        nodes = [f"card{gpu.card}"]
        if gpu.render is not None:
            nodes.append(f"renderD{gpu.render}")
        if control is not None:
            nodes.append(f"controlD{control}")
        for node in nodes:
            (drm / node).mkdir(parents=True)
            os.symlink(f"../../../{gpu.bdf}", drm / node / "device")
            os.symlink(f"../../devices/pci0000:00/{gpu.bdf}/drm/{node}", self.sys / "class" / "drm" / node)
            if devnodes and not node.startswith("controlD"):
                self._write(self.dev / "dri" / node, "")
        by_path = self.dev / "dri" / "by-path"
        if devnodes and bypath and by_path.is_dir():
            os.symlink(f"../card{gpu.card}", by_path / f"pci-{gpu.bdf}-card")
            if gpu.render is not None:
                os.symlink(f"../renderD{gpu.render}", by_path / f"pci-{gpu.bdf}-render")

    def set_numvfs(self, bdf: str, value: str) -> None:
        """Rewrite a PF's ``sriov_numvfs`` (no VFs are created or removed)."""
        self._write(self.pci_dir(bdf) / "sriov_numvfs", value)

    def remove_gpu(self, bdf: str) -> None:
        """Hot-unplug: remove a function laid out by :meth:`add_gpu` (and its VFs) everywhere."""
        gpu = self.gpus.pop(bdf)
        for vf in gpu.vfs:
            self.remove_gpu(vf.bdf)
        drm = self.pci_dir(bdf) / "drm"
        for node in sorted(os.listdir(drm)) if drm.is_dir() else []:
            for path in (self.sys / "class" / "drm" / node, self.dev / "dri" / node):
                if os.path.lexists(path):
                    os.unlink(path)
        by_path = self.dev / "dri" / "by-path"
        for path in (by_path / f"pci-{bdf}-card", by_path / f"pci-{bdf}-render",
                     self.sys / "bus/pci/devices" / bdf):
            if os.path.lexists(path):
                os.unlink(path)
        if gpu.driver is not None and os.path.lexists(self.sys / "bus/pci/drivers" / gpu.driver / bdf):
            os.unlink(self.sys / "bus/pci/drivers" / gpu.driver / bdf)
        for mei in self.dev.glob("mei*"):
            if any(self.pci_dir(bdf).glob(f"*.mei-*/mei/{mei.name}")):
                mei.unlink()
        shutil.rmtree(self.pci_dir(bdf))

    def set_product_uuid(self, uuid: str) -> None:
        """DMI ``sys/class/dmi/id/product_uuid``."""
        self.write("class/dmi/id/product_uuid", uuid)

    def write(self, relpath: str, text: str) -> Path:
        """Write any file below the sysfs root (e.g. to corrupt an entry)."""
        path = self.sys / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write(path, text)
        return path

    @staticmethod
    def _write(path: Path, text: str) -> None:
        """Write an attribute as the kernel shows it (newline-terminated); the parent must exist."""
        with open(path, "w") as f:
            f.write(text if text.endswith("\n") or text == "" else text + "\n")
