"""GpuDraDriver: publishing, prepare/unprepare, checkpoint across restarts (API faked, sysfs laid out)."""
from __future__ import annotations

import os
import threading

import pytest

from gpu_plugin.dra.api import ClaimRef
from gpu_plugin.dra.driver import DriverConfig, GpuDraDriver
from gpu_plugin.dra.slices import slice_name
from tests.fakes.dra_api import FakeDraApi
from tests.fakes.sysfs import FakeSysfs

UID1 = "11111111-1111-4111-8111-111111111111"
UID2 = "22222222-2222-4222-8222-222222222222"
GPU0 = "0000-03-00-0-0x56c0"
GPU1 = "0000-04-00-0-0x56c0"


@pytest.fixture
def fs(tmp_path) -> FakeSysfs:
    fs = FakeSysfs(tmp_path / "root")
    fs.add_gpu("0000:03:00.0", card=0, render=128)
    fs.add_gpu("0000:04:00.0", card=1, render=129)
    return fs


def _driver(fs: FakeSysfs, api: FakeDraApi, tmp_path) -> GpuDraDriver:
    config = DriverConfig(node_name="node-1", sysfs_root=fs.sysfs_root, devfs_root=fs.devfs_root,
                          cdi_dir=str(tmp_path / "cdi"), checkpoint_path=str(tmp_path / "state" / "cp.json"),
                          use_udev=False)
    driver = GpuDraDriver(config, api)
    driver.scan_once()
    return driver


def _slice_devices(api: FakeDraApi) -> list[str]:
    return [d["name"] for d in api.slices[slice_name("node-1")]["spec"]["devices"]]


def test_publishes_one_slice_and_follows_sysfs(fs, tmp_path) -> None:
    api = FakeDraApi()
    driver = _driver(fs, api, tmp_path)
    assert _slice_devices(api) == [GPU0, GPU1]
    spec = api.slices[slice_name("node-1")]["spec"]
    assert spec["pool"] == {"name": "node-1", "generation": 1, "resourceSliceCount": 1}
    fs.remove_gpu("0000:04:00.0")
    driver.scan_once()
    assert _slice_devices(api) == [GPU0]
    assert api.slices[slice_name("node-1")]["spec"]["pool"]["generation"] == 2


def test_unchanged_scan_writes_nothing(fs, tmp_path) -> None:
    api = FakeDraApi()
    driver = _driver(fs, api, tmp_path)
    api.calls.clear()
    driver.scan_once()
    assert api.calls == ["list"]


def test_slice_deleted_by_someone_else_comes_back_and_strangers_go(fs, tmp_path) -> None:
    api = FakeDraApi()
    driver = _driver(fs, api, tmp_path)
    api.slices.clear()  # kubelet wipes the node's slices when it starts
    api.slices["stray"] = {"metadata": {"name": "stray", "resourceVersion": "99"},
                           "spec": {"nodeName": "node-1", "driver": "gpu.intel.com",
                                    "pool": {"generation": 7}}}
    driver.scan_once()
    assert sorted(api.slices) == [slice_name("node-1")]
    assert api.slices[slice_name("node-1")]["spec"]["pool"]["generation"] == 8


def test_api_errors_are_retried_not_fatal(fs, tmp_path, caplog) -> None:
    api = FakeDraApi()
    api.fail_next = 1
    driver = _driver(fs, api, tmp_path)
    assert api.slices == {}
    assert "Publishing the ResourceSlice failed" in caplog.text
    driver._publish_due = 0.0  # the backoff has passed
    driver.scan_once()
    assert _slice_devices(api) == [GPU0, GPU1]


def test_prepare_writes_cdi_and_checkpoint_and_is_not_repeated(fs, tmp_path) -> None:
    api = FakeDraApi()
    api.add_claim("ns", "c1", UID1, [GPU0])
    driver = _driver(fs, api, tmp_path)
    result = driver.prepare([ClaimRef("ns", UID1, "c1")])[UID1]
    assert result.error == ""
    assert [(d.device, d.pool, d.request_names) for d in result.devices] == [(GPU0, "node-1", ("gpu",))]
    assert result.devices[0].cdi_ids == (f"gpu.intel.com/claim={UID1}-{GPU0}",)
    spec = tmp_path / "cdi" / f"gpu.intel.com-claim_{UID1}.yaml"
    assert "/dev/dri/card0" in spec.read_text()
    before = os.stat(spec).st_mtime_ns
    api.calls.clear()
    # a restarted plugin: same checkpoint, new process state
    again = _driver(fs, api, tmp_path).prepare([ClaimRef("ns", UID1, "c1")])[UID1]
    assert again == result
    assert not [c for c in api.calls if c.startswith("claim")]  # answered from the checkpoint
    assert os.stat(spec).st_mtime_ns == before


def test_vanished_device_is_that_claims_error_only(fs, tmp_path) -> None:
    api = FakeDraApi()
    api.add_claim("ns", "c1", UID1, [GPU0])
    api.add_claim("ns", "c2", UID2, [GPU1])
    driver = _driver(fs, api, tmp_path)
    fs.remove_gpu("0000:04:00.0")
    driver.scan_once()
    results = driver.prepare([ClaimRef("ns", UID1, "c1"), ClaimRef("ns", UID2, "c2")])
    assert results[UID1].error == "" and results[UID1].devices
    assert GPU1 in results[UID2].error and "not on node node-1" in results[UID2].error
    assert set(driver.prepared) == {UID1}


@pytest.mark.parametrize("setup,expected", [
    (lambda api: None, "404"),
    (lambda api: api.add_claim("ns", "c1", UID2, [GPU0]), "deleted and re-created"),
    (lambda api: api.claims.update({("ns", "c1"): {"metadata": {"uid": UID1}, "status": {}}}),
     "not allocated"),
], ids=["claim-gone", "claim-recreated", "not-allocated"])
def test_bad_claims_get_an_error(fs, tmp_path, setup, expected) -> None:
    api = FakeDraApi()
    setup(api)
    result = _driver(fs, api, tmp_path).prepare([ClaimRef("ns", UID1, "c1")])[UID1]
    assert expected in result.error and not result.devices


def test_other_drivers_and_pools_are_ignored(fs, tmp_path) -> None:
    api = FakeDraApi()
    api.add_claim("ns", "c1", UID1, [GPU0], pool="other-node")
    result = _driver(fs, api, tmp_path).prepare([ClaimRef("ns", UID1, "c1")])[UID1]
    assert result.error == "" and result.devices == ()


def test_unprepare_removes_spec_and_checkpoint_entry_and_is_idempotent(fs, tmp_path) -> None:
    api = FakeDraApi()
    api.add_claim("ns", "c1", UID1, [GPU0])
    driver = _driver(fs, api, tmp_path)
    driver.prepare([ClaimRef("ns", UID1, "c1")])
    assert driver.unprepare([ClaimRef("ns", UID1, "c1")]) == {UID1: ""}
    assert os.listdir(tmp_path / "cdi") == []
    assert _driver(fs, api, tmp_path).prepared == {}
    assert driver.unprepare([ClaimRef("ns", UID1, "c1")]) == {UID1: ""}


def test_health_stream_sends_the_list_then_changes(fs, tmp_path) -> None:
    api = FakeDraApi()
    driver = _driver(fs, api, tmp_path)
    stop = threading.Event()
    updates = driver.health_updates(lambda: not stop.is_set())
    first = next(updates)
    assert [(h.pool, h.device, h.healthy) for h in first] == [("node-1", GPU0, True), ("node-1", GPU1, True)]
    fs.remove_gpu("0000:04:00.0")
    driver.scan_once()
    assert [h.device for h in next(updates)] == [GPU0]
    stop.set()
    assert list(updates) == []


def test_health_change_updates_the_slice_and_wakes_the_stream(fs, tmp_path, caplog) -> None:
    from gpu_plugin.deviceplugin.api import Health

    caplog.set_level("INFO", logger="gpu_plugin.dra.driver")
    bad: set[str] = set()
    api = FakeDraApi()
    config = DriverConfig(node_name="node-1", sysfs_root=fs.sysfs_root, devfs_root=fs.devfs_root,
                          cdi_dir=str(tmp_path / "cdi"), checkpoint_path=str(tmp_path / "cp.json"),
                          use_udev=False)
    driver = GpuDraDriver(config, api, lambda card: Health.UNHEALTHY if card.name in bad else Health.HEALTHY)
    driver.scan_once()
    updates = driver.health_updates(lambda: True)
    assert all(h.healthy for h in next(updates))
    bad.add("card0")
    driver.scan_once()
    device = next(d for d in api.slices[slice_name("node-1")]["spec"]["devices"] if d["name"] == GPU0)
    assert device["attributes"]["health"] == {"string": "Unhealthy"}
    assert device["taints"][0]["effect"] == "NoSchedule"
    assert [(h.device, h.healthy) for h in next(updates)] == [(GPU0, False), (GPU1, True)]
    assert f"{GPU0} (card0): Healthy -> Unhealthy" in caplog.text
