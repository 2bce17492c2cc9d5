"""The DRA plugin's gRPC services over real unix sockets, called with kubelet's stubs."""
from __future__ import annotations

import os
import stat

import grpc
import pytest

from gpu_plugin.dra._api import dra_health_pb2 as health_pb
from gpu_plugin.dra._api import dra_health_pb2_grpc as health_grpc
from gpu_plugin.dra._api import dra_v1_pb2 as v1
from gpu_plugin.dra._api import dra_v1_pb2_grpc as v1_grpc
from gpu_plugin.dra._api import dra_v1beta1_pb2 as v1beta1
from gpu_plugin.dra._api import dra_v1beta1_pb2_grpc as v1beta1_grpc
from gpu_plugin.dra._api import pluginregistration_pb2 as reg_pb
from gpu_plugin.dra._api import pluginregistration_pb2_grpc as reg_grpc
from gpu_plugin.dra.driver import DriverConfig, GpuDraDriver
from gpu_plugin.dra.server import PluginServer
from tests.fakes.dra_api import FakeDraApi
from tests.fakes.sysfs import FakeSysfs

UID = "11111111-1111-4111-8111-111111111111"
GPU0 = "0000-03-00-0-0x56c0"


@pytest.fixture
def served(tmp_path):
    fs = FakeSysfs(tmp_path / "r")
    fs.add_gpu("0000:03:00.0", card=0, render=128)
    api = FakeDraApi()
    api.add_claim("ns", "c1", UID, [GPU0])
    config = DriverConfig(node_name="node-1", sysfs_root=fs.sysfs_root, devfs_root=fs.devfs_root,
                          cdi_dir=str(tmp_path / "cdi"), checkpoint_path=str(tmp_path / "cp.json"),
                          use_udev=False)
    driver = GpuDraDriver(config, api)
    driver.scan_once()
    server = PluginServer(driver, "gpu.intel.com", str(tmp_path / "plugins"), str(tmp_path / "reg"))
    server.start()
    yield server, driver
    server.stop()


def _channel(path: str) -> grpc.Channel:
    return grpc.insecure_channel("unix://" + path)


def test_registration_get_info_names_the_dra_services(served) -> None:
    server, _ = served
    with _channel(server.registration_socket) as ch:
        info = reg_grpc.RegistrationStub(ch).GetInfo(reg_pb.InfoRequest(), timeout=5)
        assert info.type == "DRAPlugin"
        assert info.name == "gpu.intel.com"
        assert info.endpoint == server.endpoint and info.endpoint.endswith("/gpu.intel.com/dra.sock")
        assert list(info.supported_versions) == ["v1.DRAPlugin", "v1beta1.DRAPlugin",
                                                 "v1alpha1.DRAResourceHealth"]
        reg_grpc.RegistrationStub(ch).NotifyRegistrationStatus(
            reg_pb.RegistrationStatus(plugin_registered=True), timeout=5)
    assert server.registration.registered.is_set()


def test_sockets_are_private(served) -> None:
    server, _ = served
    for path in (server.endpoint, server.registration_socket):
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


@pytest.mark.parametrize("pb,stub", [(v1, v1_grpc.DRAPluginStub), (v1beta1, v1beta1_grpc.DRAPluginStub)],
                         ids=["v1", "v1beta1"])
def test_prepare_and_unprepare(served, pb, stub) -> None:
    server, _ = served
    claim = pb.Claim(namespace="ns", uid=UID, name="c1")
    with _channel(server.endpoint) as ch:
        response = stub(ch).NodePrepareResources(pb.NodePrepareResourcesRequest(claims=[claim]), timeout=5)
        entry = response.claims[UID]
        assert entry.error == ""
        got = [(d.pool_name, d.device_name, list(d.request_names), list(d.cdi_device_ids))
               for d in entry.devices]
        assert got == [("node-1", GPU0, ["gpu"], [f"gpu.intel.com/claim={UID}-{GPU0}"])]
        gone = pb.Claim(namespace="ns", uid="22222222-2222-4222-8222-222222222222", name="gone")
        response = stub(ch).NodePrepareResources(pb.NodePrepareResourcesRequest(claims=[gone]), timeout=5)
        assert "404" in response.claims[gone.uid].error
        response = stub(ch).NodeUnprepareResources(pb.NodeUnprepareResourcesRequest(claims=[claim]),
                                                   timeout=5)
        assert UID in response.claims and response.claims[UID].error == ""


def test_health_stream(served) -> None:
    server, _ = served
    with _channel(server.endpoint) as ch:
        stream = health_grpc.DRAResourceHealthStub(ch).NodeWatchResources(
            health_pb.NodeWatchResourcesRequest(), timeout=5)
        first = next(stream)
        assert [(d.device.pool_name, d.device.device_name, d.health) for d in first.devices] \
            == [("node-1", GPU0, health_pb.HEALTHY)]
        stream.cancel()


def test_removed_registration_socket_is_served_again(served) -> None:
    server, _ = served
    os.unlink(server.registration_socket)
    server.ensure_registered()
    with _channel(server.registration_socket) as ch:
        assert reg_grpc.RegistrationStub(ch).GetInfo(reg_pb.InfoRequest(), timeout=5).name == "gpu.intel.com"
