"""Device -> DRA device and ResourceSlice entry: the pure part of the DRA plugin."""
from __future__ import annotations

import os

import pytest

from gpu_plugin.cards import GpuCard, discover_cards
from gpu_plugin.deviceplugin.api import Health
from gpu_plugin.dra.devices import TAINT_KEY, device_name, dra_devices, slice_device
from tests.fakes.sysfs import FakeSysfs

GIB = 1 << 30

#: Intel's DRA GPU driver (intel-resource-drivers-for-kubernetes, cmd/kubelet-gpu-plugin
#: node_state.go GetResources) publishes these names; ours must include each with the same type.
INTEL_ATTRIBUTES = {
    "model": "string", "family": "string", "driver": "string", "sriov": "bool", "pciId": "string",
    "pciAddress": "string", "health": "string",
    "resource.kubernetes.io/pcieRoot": "string", "resource.kubernetes.io/pciBusID": "string",
}
INTEL_CAPACITY = ("memory", "millicores")


@pytest.fixture
def node(tmp_path) -> FakeSysfs:
    fs = FakeSysfs(tmp_path)
    fs.add_gpu("0000:03:00.0", card=0, render=128, device_id="0x56c0", lmem_total_bytes=16 * GIB,
               sriov_totalvfs=7)
    fs.add_gpu("0000:00:02.0", card=1, render=129, device_id="0xa7a0", driver="xe")
    return fs


def test_device_name_is_intels_uid() -> None:
    assert device_name("0000:03:00.0", "0x56c0") == "0000-03-00-0-0x56c0"


def test_one_device_per_gpu_with_intels_attributes(node: FakeSysfs) -> None:
    devices = dra_devices(discover_cards(node.sysfs_root), node.sysfs_root, node.devfs_root)
    assert [d.name for d in devices] == ["0000-00-02-0-0xa7a0", "0000-03-00-0-0x56c0"]
    flex = slice_device(devices[1])
    assert flex["attributes"] == {
        "model": {"string": "Flex 170"}, "family": {"string": "Data Center Flex"},
        "driver": {"string": "i915"}, "sriov": {"bool": True}, "pciId": {"string": "0x56c0"},
        "pciAddress": {"string": "0000:03:00.0"}, "health": {"string": "Healthy"}, "type": {"string": "gpu"},
        "resource.kubernetes.io/pciBusID": {"string": "0000:03:00.0"},
        "resource.kubernetes.io/pcieRoot": {"string": "pci0000:00"},
    }
    assert flex["capacity"] == {"memory": {"value": "16384Mi"}, "millicores": {"value": "1000"}}
    assert "taints" not in flex
    igpu = slice_device(devices[0])
    assert igpu["attributes"]["driver"] == {"string": "xe"}
    assert igpu["attributes"]["sriov"] == {"bool": False}
    assert igpu["capacity"]["memory"] == {"value": "0"}  # no lmem_total_bytes: no local memory


@pytest.mark.parametrize("name,kind", sorted(INTEL_ATTRIBUTES.items()), ids=sorted(INTEL_ATTRIBUTES))
def test_intel_attribute_names_are_published(node: FakeSysfs, name: str, kind: str) -> None:
    """The table of Intel's attribute names against ours: each of Intel's is ours, same value type."""
    device = dra_devices(discover_cards(node.sysfs_root), node.sysfs_root, node.devfs_root)[1]
    assert list(slice_device(device)["attributes"][name]) == [kind]


def test_intel_capacity_names_are_published(node: FakeSysfs) -> None:
    device = dra_devices(discover_cards(node.sysfs_root), node.sysfs_root, node.devfs_root)[1]
    assert sorted(slice_device(device)["capacity"]) == sorted(INTEL_CAPACITY)


def test_vfs_are_published_instead_of_their_pf(tmp_path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.add_gpu("0000:03:00.0", card=0, render=128, device_id="0x56c0", vfs=2)
    devices = dra_devices(discover_cards(fs.sysfs_root), fs.sysfs_root, fs.devfs_root)
    assert [d.name for d in devices] == ["0000-03-00-1-0x56c0", "0000-03-00-2-0x56c0"]
    assert all(slice_device(d)["attributes"]["type"] == {"string": "vf"} for d in devices)


def test_device_nodes_and_bypath_mounts_are_the_device_plugins(node: FakeSysfs) -> None:
    """Only the card's own by-path links: simpledrm's ``pci-<address>-platform-...-card`` made pods
    fail with upstream's ``-bypath=single`` (intel-device-plugins-for-kubernetes bug #2296)."""
    os.symlink("../card0", os.path.join(node.devfs_root, "dri", "by-path",
                                        "pci-0000:03:00.0-platform-simple-framebuffer.0-card"))
    flex = dra_devices(discover_cards(node.sysfs_root), node.sysfs_root, node.devfs_root)[1]
    assert [n.container_path for n in flex.info.nodes] == ["/dev/dri/card0", "/dev/dri/renderD128"]
    assert [m.container_path for m in flex.info.mounts] == ["/dev/dri/by-path/pci-0000:03:00.0-card",
                                                            "/dev/dri/by-path/pci-0000:03:00.0-render"]


def test_unhealthy_device_is_tainted_and_says_so(node: FakeSysfs) -> None:
    def health(card: GpuCard) -> Health:
        return Health.UNHEALTHY if card.name == "card0" else Health.HEALTHY

    devices = dra_devices(discover_cards(node.sysfs_root), node.sysfs_root, node.devfs_root, health)
    flex = slice_device(devices[1])
    assert flex["attributes"]["health"] == {"string": "Unhealthy"}
    assert flex["taints"] == [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}]
    assert "taints" not in slice_device(devices[1], taints=False)
    assert "taints" not in slice_device(devices[0])


def test_gpu_without_device_nodes_is_not_published(tmp_path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.add_gpu("0000:03:00.0", card=0, render=128, devnodes=False)
    assert dra_devices(discover_cards(fs.sysfs_root), fs.sysfs_root, fs.devfs_root) == []
