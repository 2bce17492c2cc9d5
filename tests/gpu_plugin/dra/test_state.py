"""The prepared-claims checkpoint and the per-claim CDI spec files."""
from __future__ import annotations

import json
import os

from gpu_plugin.deviceplugin.api import DeviceInfo, DeviceSpec, Health, Mount
from gpu_plugin.dra.state import Checkpoint, ClaimSpecs, PreparedClaim, PreparedDevice, valid_uid

UID = "6a1c7c5e-2f1a-4b8e-9c43-0e8a1d2b3c4d"
CLAIM = PreparedClaim(uid=UID, namespace="ns", name="gpu", devices=(
    PreparedDevice(request_names=("gpu",), pool="node-1", device="0000-03-00-0-0x56c0",
                   cdi_ids=(f"gpu.intel.com/claim={UID}-0000-03-00-0-0x56c0",)),))


def test_checkpoint_round_trip_and_no_temp_left(tmp_path) -> None:
    cp = Checkpoint(str(tmp_path / "state" / "prepared.json"))
    assert cp.load() == {}
    cp.save({UID: CLAIM})
    assert Checkpoint(cp.path).load() == {UID: CLAIM}
    assert os.listdir(tmp_path / "state") == ["prepared.json"]


def test_corrupt_checkpoint_is_kept_aside_and_starts_empty(tmp_path, caplog) -> None:
    cp = Checkpoint(str(tmp_path / "prepared.json"))
    cp.save({UID: CLAIM})
    doc = json.loads((tmp_path / "prepared.json").read_text())
    doc["claims"][UID]["name"] = "edited"  # checksum no longer matches
    (tmp_path / "prepared.json").write_text(json.dumps(doc))
    assert cp.load() == {}
    assert (tmp_path / "prepared.json.corrupt").exists()
    assert "checksum mismatch" in caplog.text


def test_truncated_checkpoint_is_not_a_crash(tmp_path) -> None:
    (tmp_path / "prepared.json").write_text('{"version": 1, "claims": {')
    assert Checkpoint(str(tmp_path / "prepared.json")).load() == {}


def test_claim_spec_lists_each_device_and_is_removed(tmp_path) -> None:
    specs = ClaimSpecs(str(tmp_path / "cdi"))
    info = DeviceInfo(health=Health.HEALTHY,
                      nodes=(DeviceSpec("/dev/dri/card0", "/host/dev/dri/card0", "rw"),),
                      mounts=(Mount("/dev/dri/by-path/pci-0000:03:00.0-card",
                                    "/host/dev/dri/by-path/pci-0000:03:00.0-card", True),))
    ids = specs.write(UID, [("0000-03-00-0-0x56c0", info)])
    assert ids == [f"gpu.intel.com/claim={UID}-0000-03-00-0-0x56c0"]
    text = (tmp_path / "cdi" / f"gpu.intel.com-claim_{UID}.yaml").read_text()
    assert 'kind: "gpu.intel.com/claim"' in text
    assert f'name: "{UID}-0000-03-00-0-0x56c0"' in text
    assert 'hostPath: "/host/dev/dri/card0"' in text
    assert 'options: ["bind", "ro"]' in text
    assert oct(os.stat(specs.path(UID)).st_mode & 0o777) == "0o644"
    specs.remove(UID)
    specs.remove(UID)  # twice: unprepare is retried by kubelet
    assert os.listdir(tmp_path / "cdi") == []


def test_uids_that_are_not_file_names_are_refused() -> None:
    assert valid_uid(UID)
    assert not valid_uid("../../etc/passwd")
    assert not valid_uid("")
