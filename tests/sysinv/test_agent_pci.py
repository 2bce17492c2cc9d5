"""sysinv_ext.agent.pci: Intel GPU detection on a fake sysfs tree (tests/fakes/sysfs.py).

Covers vendor/class/driver filtering (VGA 0x0300 and display 0x0380; i915 and xe), PFs with
VFs, bad entries skipped with a log line, the label set and the host UUID file.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sysinv_ext.agent import pci
from tests.fakes.sysfs import FakeSysfs, vf_bdf


@pytest.fixture
def sysfs(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path)


@pytest.mark.parametrize(("vendor", "pci_class", "driver", "detected"), [
    ("0x8086", "0x030000", "i915", True),   # VGA compatible controller (what StarlingX saw)
    ("0x8086", "0x038000", "i915", True),   # display controller (Flex/Max): StarlingX missed it
    ("0x8086", "0x030000", "xe", True),     # xe driver: StarlingX missed it
    ("0x8086", "0x038000", "xe", True),
    ("0x10de", "0x030000", "i915", False),  # not Intel
    ("0x8086", "0x020000", "i915", False),  # Intel NIC class
    ("0x8086", "0x030200", "i915", False),  # 3D controller subclass 0x02: not in the contract
    ("0x8086", "0x030000", "vfio-pci", False),  # passed through to a VM
    ("0x8086", "0x030000", None, False),    # no driver bound
])
def test_filter(sysfs: FakeSysfs, vendor: str, pci_class: str, driver: str | None,
                detected: bool) -> None:
    sysfs.add_gpu("0000:03:00.0", vendor=vendor, pci_class=pci_class, driver=driver)
    gpus = pci.scan_gpus(sysfs.sysfs_root)
    assert [g.address for g in gpus] == (["0000:03:00.0"] if detected else [])
    assert pci.detect_device_plugins(sysfs.sysfs_root) == (
        {"intelgpu": "enabled"} if detected else {})


def test_pf_and_vfs(sysfs: FakeSysfs) -> None:
    sysfs.add_gpu("0000:03:00.0", device_id="0x56c0", vfs=2)
    gpus = {g.address: g for g in pci.scan_gpus(sysfs.sysfs_root)}
    assert set(gpus) == {"0000:03:00.0", vf_bdf("0000:03:00.0", 1), vf_bdf("0000:03:00.0", 2)}
    assert not gpus["0000:03:00.0"].is_vf
    assert gpus[vf_bdf("0000:03:00.0", 1)].is_vf
    assert gpus["0000:03:00.0"].device_id == 0x56C0 and gpus["0000:03:00.0"].driver == "i915"


def test_vfs_alone_still_enable_the_plugin(sysfs: FakeSysfs) -> None:
    """A host that only sees VFs (PF on another driver) still supports the plugin."""
    sysfs.add_gpu("0000:03:00.0", vfs=1, driver="i915")
    pf = sysfs.pci_dir("0000:03:00.0")
    (pf / "driver").unlink()
    gpus = pci.scan_gpus(sysfs.sysfs_root)
    assert [g.is_vf for g in gpus] == [True]
    assert pci.supported_device_plugins(gpus) == {"intelgpu": "enabled"}


@pytest.mark.parametrize(("relpath", "text"), [
    ("devices/pci0000:00/0000:04:00.0/vendor", "garbage"),
    ("devices/pci0000:00/0000:04:00.0/class", ""),
])
def test_bad_entry_skipped_with_log(sysfs: FakeSysfs, caplog: pytest.LogCaptureFixture,
                                    relpath: str, text: str) -> None:
    sysfs.add_gpu("0000:03:00.0", card=0)
    sysfs.add_gpu("0000:04:00.0", card=1, render=129)
    sysfs.write(relpath, text)
    with caplog.at_level(logging.WARNING):
        gpus = pci.scan_gpus(sysfs.sysfs_root)
    assert [g.address for g in gpus] == ["0000:03:00.0"]
    assert "0000:04:00.0" in caplog.text and "Skipping" in caplog.text


def test_missing_class_file_skipped(sysfs: FakeSysfs) -> None:
    sysfs.add_gpu("0000:03:00.0", pci_class=None)
    assert pci.scan_gpus(sysfs.sysfs_root) == []


def test_removed_gpu_gives_empty_set(sysfs: FakeSysfs) -> None:
    sysfs.add_gpu("0000:03:00.0", vfs=1)
    assert pci.detect_device_plugins(sysfs.sysfs_root) == {"intelgpu": "enabled"}
    sysfs.remove_gpu("0000:03:00.0")
    assert pci.detect_device_plugins(sysfs.sysfs_root) == {}


def test_missing_sysfs_root_is_a_scan_error_not_no_gpu(tmp_path: Path) -> None:
    with pytest.raises(pci.ScanError, match="Cannot list PCI devices"):
        pci.scan_gpus(tmp_path / "nope")


def test_unlistable_pci_devices_is_a_scan_error(sysfs: FakeSysfs) -> None:
    devices = Path(sysfs.sysfs_root) / "bus" / "pci" / "devices"
    devices.rmdir()
    devices.write_text("not a directory")
    with pytest.raises(pci.ScanError, match="Not a directory"):
        pci.detect_device_plugins(sysfs.sysfs_root)


def test_1000_garbage_pci_devices_one_summary_line(sysfs: FakeSysfs,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    sysfs.add_gpu("0000:03:00.0")
    devices = Path(sysfs.sysfs_root) / "bus" / "pci" / "devices"
    for i in range(1000):
        entry = devices / f"0000:{0x10 + i // 32:02x}:{i % 32:02x}.0"
        entry.mkdir()
        (entry / "vendor").write_text("\x00junk" * 100 if i % 2 else "0x8086")
    with caplog.at_level(logging.WARNING):
        assert pci.detect_device_plugins(sysfs.sysfs_root) == {"intelgpu": "enabled"}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines[:5]
    assert "Skipping 1000 unreadable PCI device(s)" in lines[0] and "and 997 more" in lines[0]
    assert len(lines[0]) < 400 and "junk" not in lines[0]


def test_10mb_product_uuid_refused_without_echo(sysfs: FakeSysfs,
                                                caplog: pytest.LogCaptureFixture) -> None:
    sysfs.set_product_uuid("A" * 10_000_000)
    with caplog.at_level(logging.WARNING):
        assert pci.read_host_uuid(sysfs.sysfs_root) is None
    assert len(caplog.records) == 1 and len(caplog.records[0].getMessage()) < 300
    assert "holds no UUID" in caplog.text


@pytest.mark.parametrize("text", ["not a uuid", "4C4C4544;rm -rf", "\xff\xfe", "a" * 65])
def test_host_uuid_garbage_refused(sysfs: FakeSysfs, text: str) -> None:
    sysfs.set_product_uuid(text)
    assert pci.read_host_uuid(sysfs.sysfs_root) is None


def test_host_uuid(sysfs: FakeSysfs) -> None:
    assert pci.read_host_uuid(sysfs.sysfs_root) is None
    sysfs.set_product_uuid("4C4C4544-0042-3510-8052-B4C04F4E4B32")
    assert pci.read_host_uuid(sysfs.sysfs_root) == "4C4C4544-0042-3510-8052-B4C04F4E4B32"
    sysfs.set_product_uuid("")
    assert pci.read_host_uuid(sysfs.sysfs_root) is None


# -- attributes that are not small regular files (issue 21 item 11) ----------------------------
def _scan_in_thread(root: str, timeout: float = 20.0) -> list[pci.PciGpu]:
    """scan_gpus on a thread: a scan that blocks fails the test instead of hanging it."""
    import threading

    result: list[list[pci.PciGpu]] = []
    worker = threading.Thread(target=lambda: result.append(pci.scan_gpus(root)), daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), "the scan blocked"
    return result[0]


def test_fifo_as_vendor_blocks_no_scan_other_gpus_and_removals_reported(
        sysfs: FakeSysfs, caplog: pytest.LogCaptureFixture) -> None:
    import os

    sysfs.add_gpu("0000:03:00.0")
    sysfs.add_gpu("0000:04:00.0", card=1, render=129)
    vendor = sysfs.pci_dir("0000:03:00.0") / "vendor"
    vendor.unlink()
    os.mkfifo(vendor)  # nobody ever writes: open() for reading would block for good
    caplog.set_level(logging.WARNING)
    assert [g.address for g in _scan_in_thread(sysfs.sysfs_root)] == ["0000:04:00.0"]
    assert "0000:03:00.0 (not a regular file)" in caplog.text
    sysfs.remove_gpu("0000:04:00.0")
    assert _scan_in_thread(sysfs.sysfs_root) == []  # the removal is seen (reported empty)


def test_fifo_as_product_uuid_does_not_block(sysfs: FakeSysfs) -> None:
    import os
    import threading

    path = Path(sysfs.sysfs_root) / "class" / "dmi" / "id" / "product_uuid"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    result: list[str | None] = []
    worker = threading.Thread(target=lambda: result.append(pci.read_host_uuid(sysfs.sysfs_root)),
                              daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive() and result == [None]


def test_200_mb_sparse_vendor_is_read_bounded(sysfs: FakeSysfs) -> None:
    """A 200 MB sparse ``vendor`` cost the agent 1 GB of RSS per scan: read whole, then
    decoded and stripped. Now one read of at most a page (peak Python allocations measured)."""
    import tracemalloc

    sysfs.add_gpu("0000:03:00.0")
    sysfs.add_gpu("0000:04:00.0", card=1, render=129)
    vendor = sysfs.pci_dir("0000:03:00.0") / "vendor"
    with open(vendor, "r+b") as handle:
        handle.truncate(200 * 1024 * 1024)
    tracemalloc.start()
    try:
        gpus = pci.scan_gpus(sysfs.sysfs_root)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [g.address for g in gpus] == ["0000:04:00.0"]
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes"
