"""The emulated kubelet itself must behave like kubelet where our tests rely on it."""
from __future__ import annotations

import shutil
import signal
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


@pytest.mark.parametrize("fields,needle", [
    ({"version": "v1alpha"}, "Unsupported version"),
    ({"resource_name": "widget"}, "invalid extended resource name"),
    ({"resource_name": "kubernetes.io/widget"}, "invalid extended resource name"),
    ({"endpoint": "/abs/x.sock"}, "must be a file name"),
], ids=["bad-version", "no-namespace", "kubernetes-namespace", "path-endpoint"])
def test_bad_registration_is_rejected(kdir: Path, fields, needle) -> None:
    with FakeKubelet(kdir) as kubelet:
        with pytest.raises(grpc.RpcError) as err:
            register(kubelet, **fields)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in err.value.details()
        assert kubelet.registrations == [] and needle in kubelet.rejected[0]


def test_registration_of_absent_endpoint_is_recorded_without_devices(kdir: Path) -> None:
    with FakeKubelet(kdir) as kubelet:
        register(kubelet)
        reg = kubelet.wait_for_registration("example.com/x")
        assert reg.endpoint == "x.sock" and reg.generation == 0
        assert kubelet.devices("example.com/x") == {}
        with pytest.raises(TimeoutError, match="never"):
            kubelet.wait_for(lambda: kubelet.allocatable("example.com/x") > 0, timeout=0.1, what="never")


def test_restart_wipes_sockets_only_and_bumps_generation(kdir: Path) -> None:
    (kdir / "other.sock").touch()
    (kdir / "kubelet_internal_checkpoint").write_text("{}")
    with FakeKubelet(kdir) as kubelet:
        kubelet.restart()
        assert kubelet.generation == 1
        assert sorted(p.name for p in kdir.iterdir()) == ["kubelet.sock", "kubelet_internal_checkpoint"]
        register(kubelet)
        assert kubelet.wait_for_registration("example.com/x").generation == 1


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
