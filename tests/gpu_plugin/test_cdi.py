"""CDI spec files written at Allocate time, in upstream's format and naming."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from gpu_plugin import scan as gs
from gpu_plugin.cdi import CdiSpecWriter, spec_file_name, spec_text
from gpu_plugin.deviceplugin.api import DeviceID, DeviceInfo, DeviceSpec, Mount, ResourceType
from tests.fakes.sysfs import FakeSysfs

I915 = ResourceType("i915")


@pytest.fixture
def tree(fake_sysfs: FakeSysfs) -> dict[DeviceID, DeviceInfo]:
    fake_sysfs.add_gpu("0000:03:00.0", card=0, render=128)
    fake_sysfs.add_gpu("0000:04:00.0", card=1, render=129)
    return gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root, gs.ScanOptions(shared_dev_num=2))["i915"]


def test_spec_matches_upstream_structure(fake_sysfs: FakeSysfs, tree: dict[DeviceID, DeviceInfo]) -> None:
    dri = os.path.join(fake_sysfs.devfs_root, "dri")
    spec = yaml.safe_load(spec_text("intel.cdi.k8s.io/gpu", "card0", tree[DeviceID("card0-0")]))
    assert spec == {
        "cdiVersion": "0.5.0",
        "kind": "intel.cdi.k8s.io/gpu",
        "devices": [
            {
                "name": "card0",
                "containerEdits": {
                    "deviceNodes": [
                        {"path": "/dev/dri/card0", "hostPath": f"{dri}/card0", "permissions": "rw"},
                        {"path": "/dev/dri/renderD128", "hostPath": f"{dri}/renderD128", "permissions": "rw"},
                    ],
                    "mounts": [
                        {
                            "hostPath": f"{dri}/by-path/pci-0000:03:00.0-card",
                            "containerPath": "/dev/dri/by-path/pci-0000:03:00.0-card",
                            "type": "none",
                            "options": ["bind", "ro"],
                        },
                        {
                            "hostPath": f"{dri}/by-path/pci-0000:03:00.0-render",
                            "containerPath": "/dev/dri/by-path/pci-0000:03:00.0-render",
                            "type": "none",
                            "options": ["bind", "ro"],
                        },
                    ],
                },
            }
        ],
    }


def test_spec_quotes_odd_paths() -> None:
    info = DeviceInfo(
        nodes=(DeviceSpec("/dev/dri/card0", '/odd: "path"#x'),),
        mounts=(Mount("/c", "/h: y", read_only=False),),
    )
    spec = yaml.safe_load(spec_text("v.example/gpu", "card0", info))
    edits = spec["devices"][0]["containerEdits"]
    assert edits["deviceNodes"][0]["hostPath"] == '/odd: "path"#x'
    assert edits["mounts"][0] == {
        "hostPath": "/h: y",
        "containerPath": "/c",
        "type": "none",
        "options": ["bind", "rw"],
    }


def test_file_name_as_upstream() -> None:
    assert spec_file_name("intel.cdi.k8s.io/gpu", "card3") == "intel.cdi.k8s.io-gpu-card3.yaml"


def test_allocate_writes_each_card_once(tmp_path: Path, tree: dict[DeviceID, DeviceInfo]) -> None:
    cdi_dir = tmp_path / "run" / "cdi"
    writer = CdiSpecWriter(str(cdi_dir))
    ids = [DeviceID("card0-0"), DeviceID("card0-1"), DeviceID("card1-1")]
    assert writer.allocate(I915, ids, tree) is None  # the framework's default merge follows
    files = sorted(os.listdir(cdi_dir))
    assert files == ["intel.cdi.k8s.io-gpu-card0.yaml", "intel.cdi.k8s.io-gpu-card1.yaml"]
    path = cdi_dir / files[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    inode = path.stat().st_ino
    assert writer.allocate(I915, ids[:1], tree) is None
    assert path.stat().st_ino == inode  # unchanged content: not rewritten
    assert yaml.safe_load(path.read_text())["devices"][0]["name"] == "card0"


def test_changed_device_rewrites_its_spec_atomically(
    tmp_path: Path, tree: dict[DeviceID, DeviceInfo]
) -> None:
    writer = CdiSpecWriter(str(tmp_path / "cdi"))
    writer.allocate(I915, [DeviceID("card0-0")], tree)
    path = tmp_path / "cdi" / "intel.cdi.k8s.io-gpu-card0.yaml"
    changed = DeviceInfo(
        nodes=(DeviceSpec("/dev/dri/card0", "/elsewhere/card0"),), cdi_devices=("intel.cdi.k8s.io/gpu=card0",)
    )
    writer.allocate(I915, [DeviceID("card0-0")], {DeviceID("card0-0"): changed})
    assert "/elsewhere/card0" in path.read_text()
    assert sorted(os.listdir(tmp_path / "cdi")) == ["intel.cdi.k8s.io-gpu-card0.yaml"]  # no temp files left


def test_monitoring_device_has_no_spec(tmp_path: Path) -> None:
    writer = CdiSpecWriter(str(tmp_path / "cdi"))
    info = DeviceInfo(nodes=(DeviceSpec("/dev/dri/card0", "/dev/dri/card0"),))
    assert (
        writer.allocate(ResourceType("i915_monitoring"), [DeviceID("all")], {DeviceID("all"): info}) is None
    )
    assert not (tmp_path / "cdi").exists()


def test_failed_write_drops_only_that_cdi_name(
    tmp_path: Path, tree: dict[DeviceID, DeviceInfo], caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "cdi"
    blocker.write_text("not a directory")
    writer = CdiSpecWriter(str(blocker))
    with caplog.at_level("ERROR", logger="gpu_plugin.cdi"):
        alloc = writer.allocate(I915, [DeviceID("card0-0")], tree)
    assert alloc is not None and alloc.cdi_devices == ()
    assert [d.container_path for d in alloc.devices] == ["/dev/dri/card0", "/dev/dri/renderD128"]
    assert len(alloc.mounts) == 2
    assert "CDI spec write failed for intel.cdi.k8s.io/gpu=card0" in caplog.text


@pytest.mark.parametrize("tamper", ["delete", "edit", "replace"])
def test_spec_changed_behind_our_back_is_written_again(
    tmp_path: Path, tree: dict[DeviceID, DeviceInfo], tamper: str
) -> None:
    """Repeated Allocates of an unchanged device skip re-reading its spec only while the file is
    the one written; deleted, edited in place or replaced, it is rewritten on the next Allocate."""
    writer = CdiSpecWriter(str(tmp_path / "cdi"))
    ids = [DeviceID("card0-0")]
    path = tmp_path / "cdi" / "intel.cdi.k8s.io-gpu-card0.yaml"
    assert writer.allocate(I915, ids, tree) is None
    good = path.read_text()
    assert writer.allocate(I915, ids, tree) is None  # cached: same DeviceInfo, same file
    if tamper == "delete":
        path.unlink()
    elif tamper == "edit":
        mtime = path.stat().st_mtime_ns
        with open(path, "r+", encoding="utf-8") as f:
            f.write("#" * 20)  # same size, in place ...
        os.utime(path, ns=(mtime, mtime + 1_000_000_000))  # ... a moment later (coarse kernel clocks)
    else:
        other = tmp_path / "cdi" / "other"
        other.write_text("cdiVersion: \"0.5.0\"\n")
        os.replace(other, path)
    assert writer.allocate(I915, ids, tree) is None
    assert path.read_text() == good
    assert sorted(os.listdir(tmp_path / "cdi")) == ["intel.cdi.k8s.io-gpu-card0.yaml"]


def test_undecodable_spec_is_replaced(tmp_path: Path, tree: dict[DeviceID, DeviceInfo]) -> None:
    (tmp_path / "cdi").mkdir()
    path = tmp_path / "cdi" / "intel.cdi.k8s.io-gpu-card0.yaml"
    path.write_bytes(b"\xff\xfe not utf-8")
    assert CdiSpecWriter(str(tmp_path / "cdi")).allocate(I915, [DeviceID("card0-0")], tree) is None
    assert yaml.safe_load(path.read_text())["devices"][0]["name"] == "card0"
