"""Discovery: upstream's TestScan/TestBypath/TestCDIDeviceInclusion/... cases, then kernel-layout cases.

The first half runs upstream's own test trees (cmd/gpu_plugin/gpu_plugin_test.go, laid out by
``create_upstream_files``); the second half uses the kernel-layout FakeSysfs builder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gpu_plugin import cards as gc
from gpu_plugin import scan as gs
from gpu_plugin.deviceplugin.api import DeviceInfo, DeviceSpec, Health, Mount
from tests.fakes.sysfs import FakeSysfs
from tests.gpu_plugin.conftest import UpstreamCase

Tree = Callable[[UpstreamCase], tuple[str, str]]

TWO_CARDS = ["card0/device/drm/card0", "card0/device/drm/controlD64", "card1/device/drm/card1"]
BYPATH_0 = ["card0", "by-path/pci-0000:00:00.0-card", "by-path/pci-0000:00:00.0-render"]
BYPATH_01 = BYPATH_0 + ["card1", "by-path/pci-0000:00:01.0-card", "by-path/pci-0000:00:01.0-render"]
INTEL2 = {"card0/device/vendor": "0x8086", "card1/device/vendor": "0x8086"}
XE_I915 = {"card0/device/driver": "drivers/xe", "card1/device/driver": "drivers/i915"}


def counts(tree: dict) -> dict[str, int]:
    return {res: len(devs) for res, devs in tree.items() if devs}


# (id, case, options, expected counts per resource) — upstream's TestScan, in its order.
UPSTREAM_SCAN = [
    ("no sysfs mounted", None, {}, {}),
    ("no device installed", UpstreamCase(sysfsdirs=["card0"]), {}, {}),
    (
        "missing dev node",
        UpstreamCase(sysfsdirs=["card0/device"], sysfsfiles={"card0/device/vendor": "0x8086"}),
        {},
        {},
    ),
    (
        "one device",
        UpstreamCase(
            sysfsdirs=TWO_CARDS[:2], sysfsfiles={"card0/device/vendor": "0x8086"}, devfsdirs=BYPATH_0
        ),
        {},
        {"i915": 1},
    ),
    (
        "one device with xe driver",
        UpstreamCase(
            sysfsdirs=TWO_CARDS[:2],
            sysfsfiles={"card0/device/vendor": "0x8086"},
            symlinkfiles={"card0/device/driver": "drivers/xe"},
            devfsdirs=BYPATH_0,
        ),
        {},
        {"xe": 1},
    ),
    (
        "two devices with xe driver and monitoring",
        UpstreamCase(
            sysfsdirs=TWO_CARDS,
            sysfsfiles=INTEL2,
            devfsdirs=BYPATH_01,
            symlinkfiles={"card0/device/driver": "drivers/xe", "card1/device/driver": "drivers/xe"},
        ),
        {"enable_monitoring": True},
        {"xe": 2, "xe_monitoring": 1},
    ),
    (
        "two devices with xe and i915 drivers",
        UpstreamCase(sysfsdirs=TWO_CARDS, sysfsfiles=INTEL2, symlinkfiles=XE_I915, devfsdirs=BYPATH_01),
        {"enable_monitoring": True},
        {"xe": 1, "xe_monitoring": 1, "i915": 1, "i915_monitoring": 1},
    ),
    (
        "two devices with only one allowed",
        UpstreamCase(
            sysfsdirs=TWO_CARDS,
            symlinkfiles=XE_I915,
            devfsdirs=BYPATH_01,
            sysfsfiles={**INTEL2, "card0/device/device": "0x1234", "card1/device/device": "0x9876"},
        ),
        {"enable_monitoring": True, "allow_ids": frozenset({"0x1234"})},
        {"xe": 1, "xe_monitoring": 1},
    ),
    (
        "three devices with two allowed",
        UpstreamCase(
            sysfsdirs=TWO_CARDS + ["card2/device/drm/card2"],
            sysfsfiles={
                **INTEL2,
                "card2/device/vendor": "0x8086",
                "card0/device/device": "0x1234",
                "card1/device/device": "0x9876",
                "card2/device/device": "0x0101",
            },
            symlinkfiles={**XE_I915, "card2/device/driver": "drivers/i915"},
            devfsdirs=BYPATH_01 + ["card2", "by-path/pci-0000:00:02.0-card"],
        ),
        {"enable_monitoring": True, "allow_ids": frozenset({"0x1234", "0x9876"})},
        {"xe": 1, "xe_monitoring": 1, "i915": 1, "i915_monitoring": 1},
    ),
    (
        "two devices with one denied",
        UpstreamCase(
            sysfsdirs=TWO_CARDS,
            symlinkfiles=XE_I915,
            devfsdirs=BYPATH_01,
            sysfsfiles={**INTEL2, "card0/device/device": "0x1234", "card1/device/device": "0x9876"},
        ),
        {"enable_monitoring": True, "deny_ids": frozenset({"0x1234"})},
        {"i915": 1, "i915_monitoring": 1},
    ),
    (
        "sriov-1-pf-no-vfs + monitoring",
        UpstreamCase(
            sysfsdirs=TWO_CARDS[:2],
            devfsdirs=["card0"],
            sysfsfiles={"card0/device/vendor": "0x8086", "card0/device/sriov_numvfs": "0"},
        ),
        {"enable_monitoring": True},
        {"i915": 1, "i915_monitoring": 1},
    ),
    (
        "two sysfs records but one dev node",
        UpstreamCase(
            sysfsdirs=["card0/device/drm/card0", "card1/device/drm/card1"],
            sysfsfiles=INTEL2,
            devfsdirs=["card0"],
        ),
        {},
        {"i915": 1},
    ),
    (
        "sriov-1-pf-and-2-vfs",
        UpstreamCase(
            sysfsdirs=["card0/device/drm/card0", "card1/device/drm/card1", "card2/device/drm/card2"],
            sysfsfiles={**INTEL2, "card0/device/sriov_numvfs": "2", "card2/device/vendor": "0x8086"},
            devfsdirs=["card0", "card1", "card2"],
        ),
        {},
        {"i915": 2},
    ),
    (
        "two devices with 13 shares + monitoring",
        UpstreamCase(
            sysfsdirs=["card0/device/drm/card0", "card1/device/drm/card1"],
            sysfsfiles=INTEL2,
            devfsdirs=["card0", "card1"],
        ),
        {"shared_dev_num": 13, "enable_monitoring": True},
        {"i915": 26, "i915_monitoring": 1},
    ),
    (
        "wrong vendor",
        UpstreamCase(
            sysfsdirs=["card0/device/drm/card0"],
            sysfsfiles={"card0/device/vendor": "0xbeef"},
            devfsdirs=["card0"],
        ),
        {},
        {},
    ),
    (
        "wrong vendor with 13 shares + monitoring",
        UpstreamCase(
            sysfsdirs=["card0/device/drm/card0"],
            sysfsfiles={"card0/device/vendor": "0xbeef"},
            devfsdirs=["card0"],
        ),
        {"shared_dev_num": 13, "enable_monitoring": True},
        {},
    ),
    (
        "two devices with xe and i915 drivers + single monitoring",
        UpstreamCase(sysfsdirs=TWO_CARDS, sysfsfiles=INTEL2, symlinkfiles=XE_I915, devfsdirs=BYPATH_01),
        {"enable_monitoring": True, "monitoring_mode": "single"},
        {"xe": 1, "i915": 1, "monitoring": 1},
    ),
    (
        "two devices with xe driver + single monitoring",
        UpstreamCase(
            sysfsdirs=TWO_CARDS,
            sysfsfiles=INTEL2,
            devfsdirs=BYPATH_01,
            symlinkfiles={"card0/device/driver": "drivers/xe", "card1/device/driver": "drivers/xe"},
        ),
        {"enable_monitoring": True, "monitoring_mode": "single"},
        {"xe": 2, "monitoring": 1},
    ),
    ("no sysfs records", UpstreamCase(sysfsdirs=["non_gpu_card"]), {}, {}),
]


@pytest.mark.parametrize(
    "case,options,expected", [c[1:] for c in UPSTREAM_SCAN], ids=[c[0] for c in UPSTREAM_SCAN]
)
def test_upstream_scan_cases(
    tmp_path: Path, upstream_tree: Tree, case: UpstreamCase | None, options: dict, expected: dict[str, int]
) -> None:
    if case is None:
        sysfs, devfs = str(tmp_path / "nothing" / "sys"), str(tmp_path / "nothing" / "dev")
    else:
        sysfs, devfs = upstream_tree(case)
    # upstream's cliOptions{} has monitoringMode "" (= per driver); the flag's default is "single"
    tree = gs.scan(sysfs, devfs, gs.ScanOptions(**{"monitoring_mode": "split", **options}))
    assert counts(tree) == expected


def test_upstream_scan_with_unhealthy_health_source(upstream_tree: Tree) -> None:
    """TestScanWithHealth "one unhealthy device with proper symlink": still advertised, marked Unhealthy."""
    sysfs, devfs = upstream_tree(
        UpstreamCase(
            pci_addresses={"0000:00:00.0": "card0"},
            sysfsdirs=TWO_CARDS[:2],
            sysfsfiles={"card0/device/vendor": "0x8086"},
            devfsdirs=BYPATH_0,
        )
    )
    asked: list[str | None] = []

    def health(card: gs.GpuCard) -> Health:
        asked.append(card.bdf)
        return Health.UNHEALTHY

    tree = gs.scan(sysfs, devfs, health=health)
    assert asked == ["0000:00:00.0"]
    assert [info.health for info in tree["i915"].values()] == [Health.UNHEALTHY]


# upstream's TestBypath: (link target of class/drm/card0, by-path files, pci address ok, mounts)
BYPATH_CASES = [
    (
        "card with two by-path files",
        "00.10.2/00.334.302/0.0.1.00/0000:0f:05.0/drm/card0",
        ["pci-0000:0f:05.0-card", "pci-0000:0f:05.0-render"],
        True,
        2,
    ),
    (
        "different by-path files",
        "00.10.2/00.334.302/0.0.1.00/0000:ff:05.0/drm/card0",
        ["pci-0000:0f:05.0-card", "pci-0000:0f:05.0-render"],
        True,
        0,
    ),
    (
        "invalid PCI address",
        "00.10.2/00.334.302/0.0.1.00/000:ff:05.1/drm/card0",
        ["pci-0000:0f:05.0-card", "pci-0000:0f:05.0-render"],
        False,
        0,
    ),
    (
        "symlink without card",
        "00.10.2/00.334.302/0.0.1.00/0000:0f:05.0/drm",
        ["pci-0000:0f:05.0-card", "pci-0000:0f:05.0-render"],
        False,
        0,
    ),
    ("no symlink", "", ["pci-0000:0f:05.0-card", "pci-0000:0f:05.0-render"], False, 0),
    ("no by-path files", "00.10.2/00.334.302/0.0.1.00/0000:0f:05.0/drm/card0", [], True, 0),
]


@pytest.mark.parametrize(
    "link,files,address_ok,mount_count", [c[1:] for c in BYPATH_CASES], ids=[c[0] for c in BYPATH_CASES]
)
def test_upstream_bypath(
    tmp_path: Path, link: str, files: list[str], address_ok: bool, mount_count: int
) -> None:
    drm = tmp_path / "sys/class/drm/card0"
    by_path = tmp_path / "by-path"
    if link:
        (tmp_path / "sys" / link).parent.mkdir(parents=True)
        (tmp_path / "sys" / link).write_bytes(b"\0")
        drm.parent.mkdir(parents=True)
        os.symlink(tmp_path / "sys" / link, drm)
    by_path.mkdir()
    for f in files:
        (by_path / f).write_bytes(b"\1")
    address = gs.pci_address_for_card(str(drm), "card0")
    assert (address is not None) == address_ok
    if address is None:
        return
    mounts = gs.bypath_mounts(address, str(by_path), os.listdir(by_path))
    assert len(mounts) == mount_count
    for m in mounts:
        assert m.read_only and m.host_path in {str(by_path / f) for f in files}
        assert m.container_path == "/dev/dri/by-path/" + os.path.basename(m.host_path)


# /dev/dri/by-path of upstream bug #2296 (open at 94a91bc): an iGPU at 0000:00:02.0 (card1, renderD128)
# and simpledrm's boot framebuffer on the same PCI device (card0). Upstream's -bypath=single mounts
# every "pci-0000:00:02.0*" entry and pods fail: failed to mkdir
# "/dev/dri/by-path/pci-0000:00:02.0-platform-simple-framebuffer.0-card": file exists.
BUG_2296_BYPATH = {
    "pci-0000:00:02.0-card": "../card1",
    "pci-0000:00:02.0-platform-simple-framebuffer.0-card": "../card0",
    "pci-0000:00:02.0-render": "../renderD128",
}


def test_bypath_single_mounts_only_the_cards_own_entries_upstream_bug_2296(fake_sysfs: FakeSysfs) -> None:
    fake_sysfs.add_gpu("0000:00:02.0", card=1, render=128)
    by_path = Path(fake_sysfs.devfs_root) / "dri" / "by-path"
    for entry in os.listdir(by_path):
        os.unlink(by_path / entry)
    (by_path.parent / "card0").write_text("")  # simpledrm's node, not an Intel GPU's
    for name, target in BUG_2296_BYPATH.items():
        os.symlink(target, by_path / name)
    info = gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root)["i915"]["card1-0"]
    assert [(m.container_path, m.host_path, m.read_only) for m in info.mounts] == [
        ("/dev/dri/by-path/pci-0000:00:02.0-card", f"{by_path}/pci-0000:00:02.0-card", True),
        ("/dev/dri/by-path/pci-0000:00:02.0-render", f"{by_path}/pci-0000:00:02.0-render", True),
    ]
    # the pure helper agrees, and a longer address sharing the prefix is not the card's either
    listing = [*BUG_2296_BYPATH, "pci-0000:00:02.01-card", "platform-simple-framebuffer.0-card"]
    assert [m.container_path for m in gs.bypath_mounts("0000:00:02.0", str(by_path), listing)] == [
        "/dev/dri/by-path/pci-0000:00:02.0-card", "/dev/dri/by-path/pci-0000:00:02.0-render"]


def _cdi_inclusion_tree(root: Path) -> tuple[str, str]:
    """The sysfs/devfs of upstream's TestCDIDeviceInclusion and TestByPathOptions."""
    sysfs, devfs = root / "sys", root / "dev"
    for target, link in [
        ("0042:01:02.0", "class/drm/card0"),
        ("0042:01:05.0", "class/drm/card1"),
        ("driver/i915", "class/drm/card0/device/driver"),
        ("driver/xe", "class/drm/card1/device/driver"),
    ]:
        (sysfs / target).mkdir(parents=True, exist_ok=True)
        (sysfs / link).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(sysfs / target, sysfs / link)
    (devfs / "dri/by-path").mkdir(parents=True)
    for node in ("card0", "renderD128", "card1", "renderD129"):
        (devfs / "dri" / node).write_text("1")
    for card, device_id, nodes in [
        ("card0", "0x9a49", ("card0", "renderD128")),
        ("card1", "0x9a48", ("card1", "renderD129")),
    ]:
        (sysfs / "class/drm" / card / "device/device").write_text(device_id)
        (sysfs / "class/drm" / card / "device/vendor").write_text("0x8086")
        for n in nodes:
            (sysfs / "class/drm" / card / "device/drm" / n).mkdir(parents=True)
    for bdf, card, render in [
        ("0042:01:02.0", "card0", "renderD128"),
        ("0042:01:05.0", "card1", "renderD129"),
    ]:
        os.symlink(devfs / "dri" / card, devfs / f"dri/by-path/pci-{bdf}-card")
        os.symlink(devfs / "dri" / render, devfs / f"dri/by-path/pci-{bdf}-render")
    return str(sysfs), str(devfs)


def test_upstream_cdi_device_inclusion(tmp_path: Path) -> None:
    """TestCDIDeviceInclusion: the whole tree (container paths under /dev, host paths under devfs)."""
    sysfs, devfs = _cdi_inclusion_tree(tmp_path)

    def expected(card: str, render: str, bdf: str) -> DeviceInfo:
        return DeviceInfo(
            health=Health.HEALTHY,
            nodes=(
                DeviceSpec(f"/dev/dri/{card}", f"{devfs}/dri/{card}", "rw"),
                DeviceSpec(f"/dev/dri/{render}", f"{devfs}/dri/{render}", "rw"),
            ),
            mounts=(
                Mount(f"/dev/dri/by-path/pci-{bdf}-card", f"{devfs}/dri/by-path/pci-{bdf}-card", True),
                Mount(f"/dev/dri/by-path/pci-{bdf}-render", f"{devfs}/dri/by-path/pci-{bdf}-render", True),
            ),
            cdi_devices=(f"intel.cdi.k8s.io/gpu={card}",),
        )

    assert gs.scan(sysfs, devfs) == {
        "i915": {"card0-0": expected("card0", "renderD128", "0042:01:02.0")},
        "xe": {"card1-0": expected("card1", "renderD129", "0042:01:05.0")},
    }


@pytest.mark.parametrize(
    "bypath,expected",
    [
        ("all", ["/dev/dri/by-path"]),
        ("none", []),
        ("single", ["/dev/dri/by-path/pci-0042:01:02.0-card", "/dev/dri/by-path/pci-0042:01:02.0-render"]),
    ],
)
def test_upstream_bypath_options(tmp_path: Path, bypath: str, expected: list[str]) -> None:
    sysfs, devfs = _cdi_inclusion_tree(tmp_path)
    info = gs.scan(sysfs, devfs, gs.ScanOptions(bypath=bypath))["i915"]["card0-0"]
    assert [m.container_path for m in info.mounts] == expected
    assert all(m.read_only for m in info.mounts)


def test_bypath_not_found_at_start_means_no_mounts(tmp_path: Path) -> None:
    sysfs, devfs = _cdi_inclusion_tree(tmp_path)
    assert gs.scan(sysfs, devfs, bypath_found=False)["i915"]["card0-0"].mounts == ()


def test_upstream_pci_device_id_for_card(tmp_path: Path, upstream_tree: Tree) -> None:
    """TestPciDeviceForCard: the ID is the file's first line; an unreadable one is None (and filtered out)."""
    sysfs, devfs = upstream_tree(
        UpstreamCase(
            sysfsdirs=["card0/device/drm/card0", "card1/device/drm/card1"],
            devfsdirs=["card0", "card1"],
            sysfsfiles={**INTEL2, "card0/device/device": "0x5959\nmore", "card1/device/devicebad": "0x5959"},
        )
    )
    ids = {c.name: c.device_id for c in gs.discover_cards(sysfs)}
    assert ids == {"card0": "0x5959", "card1": None}
    assert counts(gs.scan(sysfs, devfs, gs.ScanOptions(deny_ids=frozenset({"0x1111"})))) == {"i915": 1}


@pytest.mark.parametrize(
    "text,error",
    [
        ("0x1234", None),
        ("0x1234,0x5678,0x9abc", None),
        (" 0x1234 , 0x5678 ", None),
        ("", None),
        ("0x1234,abcd", "invalid PCI ID: abcd"),
        ("0x123,0x5678", "invalid PCI ID: 0x123"),
        ("0x1234,", "empty PCI ID"),
        ("0xAA12,", "invalid PCI ID: 0xAA12"),
    ],
    ids=[
        "valid single ID",
        "valid multiple IDs",
        "valid IDs with spaces",
        "empty string",
        "invalid ID format",
        "invalid hex length",
        "extra comma",
        "capital hex",
    ],
)
def test_upstream_parse_pci_device_ids(text: str, error: str | None) -> None:
    if error is None:
        assert gs.parse_pci_ids(text) == {i.strip() for i in text.split(",") if i.strip()}
    else:
        with pytest.raises(gs.InvalidPciIdError, match=error):
            gs.parse_pci_ids(text)


@pytest.mark.parametrize(
    "dirs,expected",
    [
        ([], []),
        (["device/xe.mei-gscfi.1024/mei/mei1"], ["mei1"]),
        (["device/i915.mei-gscfi.1024/mei/mei1", "device/i915.mei-gscfi.1025/mei/mei2"], ["mei1", "mei2"]),
    ],
    ids=["no mei sysfs entries", "one mei device", "two mei devices from separate i915.mei-* dirs"],
)
def test_upstream_mei_device_specs(tmp_path: Path, dirs: list[str], expected: list[str]) -> None:
    card = tmp_path / "card0"
    (card / "device").mkdir(parents=True)
    for d in dirs:
        (card / d).mkdir(parents=True)
    gpu = gs.GpuCard("card0", str(card), None, None, "i915", None, None, 0, ())
    specs = gs.mei_nodes(gpu, str(tmp_path / "dev"))
    assert specs == tuple(DeviceSpec(f"/dev/{m}", str(tmp_path / "dev" / m), "rw") for m in expected)


# -- kernel layout (FakeSysfs) ---------------------------------------------------------------------


def test_kernel_layout_card_details(fake_sysfs: FakeSysfs) -> None:
    fake_sysfs.add_gpu(
        "0000:03:00.0", card=1, render=129, driver="xe", device_id="0xe20b", numa=1, control=65
    )
    (card,) = gs.discover_cards(fake_sysfs.sysfs_root)
    assert card == gs.GpuCard(
        name="card1",
        sysfs_path=os.path.join(fake_sysfs.sysfs_root, "class/drm/card1"),
        pci_address="0000:03:00.0",
        bdf="0000:03:00.0",
        driver="xe",
        device_id="0xe20b",
        numa_node=1,
        sriov_numvfs=0,
        drm_nodes=("card1", "renderD129"),
    )
    info = gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root)["xe"]["card1-0"]
    dri = os.path.join(fake_sysfs.devfs_root, "dri")
    assert info.nodes == (
        DeviceSpec("/dev/dri/card1", f"{dri}/card1"),
        DeviceSpec("/dev/dri/renderD129", f"{dri}/renderD129"),
    )
    assert info.numa_nodes == (1,) and info.cdi_devices == ("intel.cdi.k8s.io/gpu=card1",)
    assert [m.host_path for m in info.mounts] == [
        f"{dri}/by-path/pci-0000:03:00.0-card",
        f"{dri}/by-path/pci-0000:03:00.0-render",
    ]


@pytest.mark.parametrize(
    "vfs,expected",
    [
        (0, ["card0-0"]),
        (2, ["card1-0", "card2-0"]),
        (7, [f"card{i}-0" for i in range(1, 8)]),
    ],
    ids=["pf-without-vfs", "pf-with-2-vfs", "pf-with-7-vfs"],
)
def test_sriov_only_vfs_are_advertised(fake_sysfs: FakeSysfs, vfs: int, expected: list[str]) -> None:
    pf = fake_sysfs.add_gpu("0000:03:00.0", card=0, render=128, vfs=vfs, sriov_totalvfs=7)
    assert [vf.bdf for vf in pf.vfs] == [f"0000:03:00.{i}" for i in range(1, vfs + 1)]
    tree = gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root)
    assert sorted(tree["i915"]) == expected


def test_vf_bdf_wraps_into_next_device() -> None:
    from tests.fakes.sysfs import vf_bdf

    assert [vf_bdf("0000:4d:00.0", i) for i in (1, 7, 8, 63)] == [
        "0000:4d:00.1",
        "0000:4d:00.7",
        "0000:4d:01.0",
        "0000:4d:07.7",
    ]


@pytest.mark.parametrize(
    "pci_class,advertised",
    [
        ("0x030000", True),
        ("0x038000", True),
        ("0x030200", True),
        (None, True),
        ("0x020000", False),
        ("0x0c0330", False),
    ],
    ids=["vga", "display-other", "3d", "no-class-file", "network", "usb"],
)
def test_pci_class_filter(fake_sysfs: FakeSysfs, pci_class: str | None, advertised: bool) -> None:
    fake_sysfs.add_gpu(pci_class=pci_class)
    assert bool(gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root)) is advertised


@pytest.mark.parametrize(
    "driver,resource",
    [("i915", "i915"), ("xe", "xe"), (None, "i915"), ("vfio-pci", None)],
    ids=["i915", "xe", "no-driver-link", "other-driver"],
)
def test_resource_from_driver_link(fake_sysfs: FakeSysfs, driver: str | None, resource: str | None) -> None:
    fake_sysfs.add_gpu(driver=driver)
    tree = gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root)
    assert list(tree) == ([resource] if resource else [])


def test_non_intel_vendor_and_missing_devnode_are_skipped(fake_sysfs: FakeSysfs) -> None:
    fake_sysfs.add_gpu("0000:03:00.0", card=0, render=128, vendor="0x1002")
    fake_sysfs.add_gpu("0000:04:00.0", card=1, render=129, devnodes=False)
    fake_sysfs.add_gpu("0000:05:00.0", card=2, render=130)
    assert sorted(gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root)["i915"]) == ["card2-0"]


def test_card_without_render_node_gets_only_its_card_node(fake_sysfs: FakeSysfs) -> None:
    fake_sysfs.add_gpu(render=None)
    (info,) = gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root)["i915"].values()
    assert [n.container_path for n in info.nodes] == ["/dev/dri/card0"]


@pytest.mark.parametrize("shared", [1, 3, 13])
def test_shared_dev_num_ids(fake_sysfs: FakeSysfs, shared: int) -> None:
    fake_sysfs.add_gpu("0000:03:00.0", card=0, render=128)
    fake_sysfs.add_gpu("0000:04:00.0", card=10, render=138)
    tree = gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root, gs.ScanOptions(shared_dev_num=shared))
    assert set(tree["i915"]) == {f"card{c}-{i}" for c in (0, 10) for i in range(shared)}
    assert len({id(tree["i915"][f"card10-{i}"]) for i in range(shared)}) == 1


@pytest.mark.parametrize(
    "mode,resources", [("split", {"i915_monitoring", "xe_monitoring"}), ("single", {"monitoring"})]
)
def test_monitoring_resource_grants_every_card_and_mei(
    fake_sysfs: FakeSysfs, mode: str, resources: set[str]
) -> None:
    fake_sysfs.add_gpu("0000:03:00.0", card=0, render=128, mei=0)
    fake_sysfs.add_gpu("0000:04:00.0", card=1, render=129, driver="xe")
    tree = gs.scan(
        fake_sysfs.sysfs_root,
        fake_sysfs.devfs_root,
        gs.ScanOptions(enable_monitoring=True, monitoring_mode=mode),
    )
    monitors = {res: devs for res, devs in tree.items() if "monitoring" in res}
    assert set(monitors) == resources
    nodes = [n.container_path for devs in monitors.values() for n in devs["all"].nodes]
    assert sorted(nodes) == [
        "/dev/dri/card0",
        "/dev/dri/card1",
        "/dev/dri/renderD128",
        "/dev/dri/renderD129",
        "/dev/mei0",
    ]
    assert all(
        list(devs) == ["all"] and devs["all"].numa_nodes == () and devs["all"].cdi_devices == ()
        for devs in monitors.values()
    )


def test_numa_node_minus_one_means_no_topology(fake_sysfs: FakeSysfs) -> None:
    fake_sysfs.add_gpu(numa=-1)
    assert gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root)["i915"]["card0-0"].numa_nodes == ()


@pytest.mark.parametrize(
    "relpath,text",
    [
        ("vendor", ""),
        ("class", ""),
        ("class", "0xzz"),
        ("sriov_numvfs", ""),
        ("sriov_numvfs", "two"),
    ],
    ids=[
        "empty-vendor",
        "empty-class",
        "garbage-class",
        "empty-numvfs",
        "garbage-numvfs",
    ],
)
def test_half_written_entry_skips_only_that_card(
    fake_sysfs: FakeSysfs, caplog: pytest.LogCaptureFixture, relpath: str, text: str
) -> None:
    fake_sysfs.add_gpu("0000:03:00.0", card=0, render=128)
    fake_sysfs.add_gpu("0000:04:00.0", card=1, render=129)
    (fake_sysfs.pci_dir("0000:03:00.0") / relpath).write_text(text)
    with caplog.at_level("WARNING", logger="gpu_plugin.scan"):
        tree = gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root)
    assert list(tree["i915"]) == ["card1-0"]
    assert [r.getMessage() for r in caplog.records if "card0" in r.getMessage()], caplog.text


def test_allow_list_skips_card_with_unreadable_device_id(fake_sysfs: FakeSysfs) -> None:
    fake_sysfs.add_gpu("0000:03:00.0", card=0, render=128, device_id="0x56c0")
    fake_sysfs.add_gpu("0000:04:00.0", card=1, render=129, device_id="0x56c1")
    fake_sysfs.add_gpu("0000:05:00.0", card=2, render=130, device_id="0x56c0")
    (fake_sysfs.pci_dir("0000:05:00.0") / "device").unlink()
    tree = gs.scan(
        fake_sysfs.sysfs_root, fake_sysfs.devfs_root, gs.ScanOptions(allow_ids=frozenset({"0x56c0"}))
    )
    assert list(tree["i915"]) == ["card0-0"]
    tree = gs.scan(
        fake_sysfs.sysfs_root, fake_sysfs.devfs_root, gs.ScanOptions(deny_ids=frozenset({"0x56c0"}))
    )
    assert list(tree["i915"]) == ["card1-0"]


def test_hot_unplug_and_replug(fake_sysfs: FakeSysfs) -> None:
    fake_sysfs.add_gpu("0000:03:00.0", card=0, render=128, vfs=2, mei=0)
    fake_sysfs.add_gpu("0000:04:00.0", card=3, render=131)
    fake_sysfs.remove_gpu("0000:03:00.0")
    assert not os.path.exists(os.path.join(fake_sysfs.devfs_root, "mei0"))
    assert sorted(gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root)["i915"]) == ["card3-0"]
    fake_sysfs.add_gpu("0000:03:00.0", card=0, render=128)
    assert sorted(gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root)["i915"]) == ["card0-0", "card3-0"]


def test_render_node_of_discovered_cards(fake_sysfs: FakeSysfs) -> None:
    fake_sysfs.add_gpu("0000:03:00.0", card=0, render=128, vfs=1)
    assert [(c.name, c.render_node, c.is_pf_with_vfs) for c in gs.discover_cards(fake_sysfs.sysfs_root)] == [
        ("card0", "renderD128", True),
        ("card1", "renderD129", False),
    ]


@pytest.mark.slow
def test_sixteen_pfs_with_63_vfs_each(fake_sysfs: FakeSysfs) -> None:
    for pf in range(16):
        fake_sysfs.add_gpu(
            f"0000:{0x10 + pf:02x}:00.0",
            card=pf * 64,
            render=128 + pf * 64,
            vfs=63,
            sriov_totalvfs=63,
            numa=pf % 2,
        )
    tree = gs.scan(fake_sysfs.sysfs_root, fake_sysfs.devfs_root)
    assert len(tree["i915"]) == 1008
    assert "card0-0" not in tree["i915"] and "card1-0" in tree["i915"] and "card1023-0" in tree["i915"]
    assert tree["i915"]["card65-0"].numa_nodes == (1,)


def test_lexical_link_resolution_matches_normpath() -> None:
    """The scan's fast symlink-target join gives os.path.normpath's answer, odd targets included."""
    import itertools

    parts = ["..", "a", ".", "", ".h", "0000:00:02.0"]
    bases = {os.path.normpath(pre + "/".join(c)) for n in range(1, 4)
             for c in itertools.product(parts, repeat=n) for pre in ("", "/", "//") if "/".join(c)}
    targets = {t2 for n in range(1, 5) for c in itertools.product(parts, repeat=n)
               for t in ["/".join(c)] if t for t2 in (t, "/" + t, t + "/")}
    wrong = [(b, t) for b in bases for t in targets
             if gc._follow(b, t) != os.path.normpath(os.path.join(b, t))]
    assert wrong == []
    assert gc._follow("/sys/class/drm", "../../devices/pci0000:00/0000:00:02.0/drm/card0") == \
        "/sys/devices/pci0000:00/0000:00:02.0/drm/card0"


@pytest.mark.parametrize("target,address", [
    ("../../devices/pci0000:00/0000:00:02.0/drm/card0", "0000:00:02.0"),
    ("../../devices/pci0000:00/0000:00:02.0/drm/card0/", None),
    ("../../devices/platform/vgem/drm/card0", None),
    ("0000:00:02.0", "0000:00:02.0"),
    ("../../devices/pci0000:00/0000:00:02.0/xdrm/card0", None),
])
def test_pci_address_from_link_target(target: str, address: str | None) -> None:
    """Upstream's pciAddressForCard: strip ``drm/<card>``, take the last element, check its form."""
    assert gc._pci_address_from_target(target, "card0") == address
