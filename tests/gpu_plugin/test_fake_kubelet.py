"""The emulated kubelet itself must behave like kubelet where our tests rely on it."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gpu_plugin.deviceplugin import api
from gpu_plugin.deviceplugin._api import api_pb2 as pb
from gpu_plugin.deviceplugin._api import api_pb2_grpc as pb_grpc
from gpu_plugin.deviceplugin.server import DevicePluginServer
from tests.fakes.kubelet import FakeKubelet


@pytest.fixture
def kdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fk-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def register(kubelet: FakeKubelet, **fields: str) -> None:
    request = dict(version="v1beta1", endpoint="x.sock", resource_name="example.com/x") | fields
    with grpc.insecure_channel(f"unix:{kubelet.socket_path}") as channel:
        pb_grpc.RegistrationStub(channel).Register(pb.RegisterRequest(**request), timeout=5)


# kubelet v1.34.1's messages; its errors reach the plugin as gRPC UNKNOWN (plain Go errors)
@pytest.mark.parametrize("fields,needle", [
    ({"version": "v1alpha"}, 'requested API version "v1alpha" is not supported by kubelet'),
    ({"resource_name": "widget"}, 'the ResourceName "widget" is invalid'),
    ({"resource_name": "kubernetes.io/widget"}, 'the ResourceName "kubernetes.io/widget" is invalid'),
    ({"endpoint": "/abs/x.sock"}, "failed to dial device plugin"),
], ids=["bad-version", "no-namespace", "kubernetes-namespace", "path-endpoint"])
def test_bad_registration_is_rejected(kdir: Path, fields, needle) -> None:
    with FakeKubelet(kdir, dial_timeout=0.5) as kubelet:
        with pytest.raises(grpc.RpcError) as err:
            register(kubelet, **fields)
        assert err.value.code() == grpc.StatusCode.UNKNOWN
        assert needle in err.value.details()
        assert kubelet.registrations == [] and needle in kubelet.rejected[0]


def test_registration_of_an_endpoint_nobody_serves_fails_after_the_dial_timeout(kdir: Path) -> None:
    """kubelet dials the endpoint (10 s) before it answers Register; it was once accepted."""
    with FakeKubelet(kdir, dial_timeout=0.5) as kubelet:
        with pytest.raises(grpc.RpcError) as err:
            register(kubelet)
        assert err.value.code() == grpc.StatusCode.UNKNOWN
        assert err.value.details() == "failed to dial device plugin: context deadline exceeded"
        assert kubelet.registrations == [] and kubelet.devices("example.com/x") == {}


def test_restart_wipes_sockets_only_and_bumps_generation(kdir: Path) -> None:
    """kubelet removes the sockets of its dir by file type: a socket of any name goes, a
    regular file named *.sock stays (the fake once went by name)."""
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(kdir / "stale-plugin"))
    (kdir / "note.sock").touch()
    (kdir / "kubelet_internal_checkpoint").write_text("{}")
    with FakeKubelet(kdir) as kubelet:
        kubelet.restart()
        assert kubelet.generation == 1
        assert sorted(p.name for p in kdir.iterdir()) == ["kubelet.sock", "kubelet_internal_checkpoint",
                                                          "note.sock"]
        srv = DevicePluginServer("example.com", "x", kdir)
        srv.update({"x0": api.DeviceInfo()})
        srv.start()
        try:
            assert kubelet.wait_for_registration("example.com/x").generation == 1
        finally:
            srv.stop()


def test_tracks_devices_and_marks_them_unhealthy_when_plugin_goes(kdir: Path) -> None:
    with FakeKubelet(kdir) as kubelet:
        srv = DevicePluginServer("example.com", "x", kdir)
        srv.update({"x0": api.DeviceInfo(), "x1": api.DeviceInfo(health=api.Health.UNHEALTHY)})
        srv.start()
        try:
            kubelet.wait_for(lambda: len(kubelet.devices("example.com/x")) == 2)
            assert kubelet.allocatable("example.com/x") == 1
            assert kubelet.connected("example.com/x")
        finally:
            srv.stop()
        kubelet.wait_for(lambda: not kubelet.connected("example.com/x"))
        assert {d.health for d in kubelet.devices("example.com/x").values()} == {"Unhealthy"}


def test_client_for_unknown_resource(kdir: Path) -> None:
    with FakeKubelet(kdir) as kubelet, pytest.raises(LookupError, match="never registered"):
        kubelet.client("example.com/none")


def test_runs_as_a_demo_program(kdir: Path) -> None:
    """``python -m tests.fakes.kubelet DIR`` serves until interrupted and prints what registers."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.kubelet", str(kdir)], cwd=root,
                            stdout=subprocess.PIPE, text=True)
    srv = DevicePluginServer("example.com", "x", kdir)
    try:
        assert "listening on" in proc.stdout.readline()
        srv.update({"x0": api.DeviceInfo()})
        srv.start()
        lines = [proc.stdout.readline().strip()]
        while lines[-1].endswith("allocatable 0"):  # printed before the first device list arrived
            lines.append(proc.stdout.readline().strip())
        assert lines[-1] == "example.com/x: endpoint example.com-x.sock, allocatable 1"
    finally:
        srv.stop()
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:  # never leave it running
                proc.kill()
                proc.wait()
            proc.stdout.close()


def test_demo_program_usage_error() -> None:
    from tests.fakes.kubelet import main
    assert main([]) == 2
