"""End to end: GPU scanner + framework + emulated kubelet over real gRPC unix sockets.

The kubelet is tests/fakes/kubelet.py (a test double: registration server and ListAndWatch
reader); the host is a FakeSysfs tree.  Also runs the real ``python -m gpu_plugin`` process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from gpu_plugin import scan as gs
from gpu_plugin.common.metrics_http import serve
from gpu_plugin.deviceplugin.api import DeviceTree, Health
from gpu_plugin.levelzero._api import levelzero_pb2 as lzpb
from gpu_plugin.levelzero._api import levelzero_pb2_grpc as lzpb_grpc
from gpu_plugin.plugin import GpuScanner, PluginConfig, WslScanner, build_manager
from tests.fakes.kubelet import FakeKubelet
from tests.fakes.sysfs import FakeSysfs
from tests.scrape import scrape, url_from_log, wait_value

I915, XE = "gpu.intel.com/i915", "gpu.intel.com/xe"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short path: unix socket names are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="gpup-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Running:
    """A plugin (manager + GPU scanner) running in a thread against a fake kubelet."""

    def __init__(self, base: Path, host: FakeSysfs, **scan: Any) -> None:
        self.kubelet_dir = base / "kubelet"
        self.cdi_dir = base / "cdi"
        self.kubelet = FakeKubelet(self.kubelet_dir).start()
        policy = scan.pop("allocation_policy", "none")
        health = scan.pop("health", None)
        registry = scan.pop("registry", None)
        config = PluginConfig(
            sysfs_root=host.sysfs_root,
            devfs_root=host.devfs_root,
            kubelet_dir=str(self.kubelet_dir),
            cdi_dir=str(self.cdi_dir),
            scan=gs.ScanOptions(**scan),
            allocation_policy=policy,
            scan_interval=0.2,
            use_udev=False,
        )
        self.manager, self.scanner = build_manager(config, health, registry=registry)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.manager.run, args=(self.stop,))
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.kubelet.stop()
        assert not self.thread.is_alive()


@pytest.fixture
def host(short_dir: Path) -> FakeSysfs:
    fs = FakeSysfs(short_dir / "host")
    fs.add_gpu("0000:03:00.0", card=0, render=128, numa=0)
    fs.add_gpu("0000:04:00.0", card=1, render=129, numa=1)
    return fs


def test_registration_allocatable_and_allocate(short_dir: Path, host: FakeSysfs) -> None:
    run = Running(short_dir, host, shared_dev_num=2, enable_monitoring=True)
    try:
        kubelet = run.kubelet
        reg = kubelet.wait_for_registration(I915)
        assert (reg.version, reg.endpoint) == ("v1beta1", "gpu.intel.com-i915.sock")
        assert reg.get_preferred_allocation_available and not reg.pre_start_required
        kubelet.wait_for(lambda: kubelet.allocatable(I915) == 4, what="4 i915 devices")
        devices = kubelet.devices(I915)
        assert sorted(devices) == ["card0-0", "card0-1", "card1-0", "card1-1"]
        assert devices["card1-0"].numa_nodes == (1,)
        kubelet.wait_for(lambda: kubelet.allocatable("gpu.intel.com/monitoring") == 1, what="monitoring")
        with kubelet.client(I915) as client:
            resp = client.allocate(["card0-1"]).container_responses[0]
            dri = os.path.join(host.devfs_root, "dri")
            assert [(d.container_path, d.host_path, d.permissions) for d in resp.devices] == [
                ("/dev/dri/card0", f"{dri}/card0", "rw"),
                ("/dev/dri/renderD128", f"{dri}/renderD128", "rw"),
            ]
            assert [(m.container_path, m.read_only) for m in resp.mounts] == [
                ("/dev/dri/by-path/pci-0000:03:00.0-card", True),
                ("/dev/dri/by-path/pci-0000:03:00.0-render", True),
            ]
            assert [c.name for c in resp.cdi_devices] == ["intel.cdi.k8s.io/gpu=card0"]
            assert (run.cdi_dir / "intel.cdi.k8s.io-gpu-card0.yaml").is_file()
            with pytest.raises(grpc.RpcError) as err:
                client.allocate(["card7-0"])
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "card7-0" in err.value.details()
    finally:
        run.close()
    assert sorted(p.name for p in run.kubelet_dir.glob("*.sock")) == []


def test_preferred_allocation_uses_the_policy(short_dir: Path, host: FakeSysfs) -> None:
    run = Running(short_dir, host, shared_dev_num=3, allocation_policy="balanced")
    try:
        run.kubelet.wait_for(lambda: run.kubelet.allocatable(I915) == 6, what="6 i915 devices")
        with run.kubelet.client(I915) as client:
            available = ["card1-0", "card0-1", "card0-0", "card1-1"]  # "none" would give card1-0, card0-1
            assert client.preferred(available, size=2) == ["card0-0", "card1-0"]
            with pytest.raises(grpc.RpcError) as err:
                client.preferred(available, size=5)
            assert "greater than the number of available" in err.value.details()
    finally:
        run.close()


def test_hotplug_add_and_remove(short_dir: Path, host: FakeSysfs) -> None:
    run = Running(short_dir, host)
    kubelet = run.kubelet
    try:
        kubelet.wait_for(lambda: kubelet.allocatable(I915) == 2, what="2 GPUs")
        host.add_gpu("0000:05:00.0", card=2, render=130, driver="xe")
        kubelet.wait_for(lambda: kubelet.allocatable(XE) == 1, what="xe GPU plugged in")
        host.remove_gpu("0000:03:00.0")
        kubelet.wait_for(lambda: sorted(kubelet.devices(I915)) == ["card1-0"], what="card0 unplugged")
        host.remove_gpu("0000:04:00.0")
        kubelet.wait_for(
            lambda: not (run.kubelet_dir / "gpu.intel.com-i915.sock").exists(),
            what="i915 server stopped with its last device",
        )
        assert kubelet.allocatable(XE) == 1
    finally:
        run.close()


def test_health_source_marks_devices_unhealthy(short_dir: Path, host: FakeSysfs) -> None:
    hot = {"0000:04:00.0"}
    run = Running(
        short_dir, host, health=lambda card: Health.UNHEALTHY if card.bdf in hot else Health.HEALTHY
    )
    kubelet = run.kubelet
    try:
        kubelet.wait_for(lambda: len(kubelet.devices(I915)) == 2, what="2 GPUs")
        assert kubelet.allocatable(I915) == 1 and kubelet.devices(I915)["card1-0"].health == "Unhealthy"
        with kubelet.client(I915) as client, pytest.raises(grpc.RpcError, match="card1-0"):
            client.allocate(["card1-0"])
        hot.clear()
        kubelet.wait_for(lambda: kubelet.allocatable(I915) == 2, what="card1 healthy again")
    finally:
        run.close()


def test_scanner_survives_unreadable_sysfs(short_dir: Path, host: FakeSysfs) -> None:
    """A card that turns bad disappears; the others stay; nothing crashes."""
    run = Running(short_dir, host)
    kubelet = run.kubelet
    try:
        kubelet.wait_for(lambda: kubelet.allocatable(I915) == 2, what="2 GPUs")
        (host.pci_dir("0000:03:00.0") / "class").write_text("")
        kubelet.wait_for(lambda: sorted(kubelet.devices(I915)) == ["card1-0"], what="bad card dropped")
        assert run.thread.is_alive()
    finally:
        run.close()


def test_rescan_wakes_the_loop_early(short_dir: Path) -> None:
    fs = FakeSysfs(short_dir / "host")
    trees: list[DeviceTree] = []
    got = threading.Event()

    class Recorder:
        def notify(self, tree: DeviceTree) -> None:
            trees.append(tree)
            got.set()

    scanner = GpuScanner(fs.sysfs_root, fs.devfs_root, scan_interval=60, use_udev=False)
    stop = threading.Event()
    thread = threading.Thread(target=scanner.scan, args=(Recorder(), stop))
    thread.start()
    try:
        assert got.wait(5) and trees == [{}]
        got.clear()
        fs.add_gpu()
        scanner.rescan()
        assert got.wait(5) and list(trees[-1]) == ["i915"]
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


class Indices(lzpb_grpc.LevelzeroServicer):
    def GetIntelIndices(self, request: Any, context: Any) -> lzpb.DeviceIndices:
        return lzpb.DeviceIndices(indices=[0, 2])


def test_wsl_scanner_advertises_level_zero_indices(short_dir: Path) -> None:
    server = grpc.server(ThreadPoolExecutor(2))
    lzpb_grpc.add_LevelzeroServicer_to_server(Indices(), server)
    server.add_insecure_port(f"unix:{short_dir}/lz.sock")
    server.start()
    trees: list[DeviceTree] = []
    stop = threading.Event()

    class Recorder:
        def notify(self, tree: DeviceTree) -> None:
            trees.append(tree)
            stop.set()

    try:
        WslScanner(f"{short_dir}/lz.sock", "/dev", shared_dev_num=2, scan_interval=0.1).scan(Recorder(), stop)
    finally:
        server.stop(None).wait()
    (tree,) = trees
    assert sorted(tree["dxg"]) == ["card0-0", "card0-1", "card2-0", "card2-1"]
    info = tree["dxg"]["card2-1"]
    assert dict(info.envs) == {"ZE_AFFINITY_MASK": "2"}
    assert [n.container_path for n in info.nodes] == ["/dev/dxg"]
    assert [m.container_path for m in info.mounts] == ["/usr/lib/wsl"]


def test_real_process_registers_and_stops_on_sigterm(short_dir: Path, host: FakeSysfs) -> None:
    kubelet_dir = short_dir / "kubelet"
    log_path = short_dir / "plugin.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed in finally
    with FakeKubelet(kubelet_dir) as kubelet:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gpu_plugin",
                "-sysfs-root",
                host.sysfs_root,
                "-devfs-root",
                host.devfs_root,
                "-kubelet-dir",
                str(kubelet_dir),
                "-cdi-dir",
                str(short_dir / "cdi"),
                "--scan-interval=0.2",
                "-shared-dev-num",
                "2",
                "-v",
                "2",
                "-metrics-address",
                ":0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        try:
            kubelet.wait_for(
                lambda: kubelet.allocatable(I915) == 4, timeout=20, what="plugin process advertised"
            )
            url = url_from_log(log_path, alive=lambda: proc.poll() is None)
            assert url.startswith("http://127.0.0.1:")  # no host given: localhost only
            before = scrape(url).value("deviceplugin_allocate_duration_seconds_count", resource=I915)
            with kubelet.client(I915) as client:
                resp = client.allocate(["card1-1"]).container_responses[0]
                assert [c.name for c in resp.cdi_devices] == ["intel.cdi.k8s.io/gpu=card1"]
            after = scrape(url)
            assert after.value("deviceplugin_allocate_duration_seconds_count", resource=I915) == before + 1
            assert after.value("deviceplugin_devices", resource=I915, health="Healthy") == 4
            assert after.value("intel_gpu_plugin_scans_total", outcome="ok") >= 1
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
            log.close()
        stderr = log_path.read_text()
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr and "Received SIGTERM, stopping" in stderr
        assert sorted(p.name for p in kubelet_dir.glob("*.sock")) == ["kubelet.sock"]


def test_scanner_without_udev_still_scans(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where udev/netlink is unusable, DrmEvents.start() says so and the periodic rescans carry on."""
    import pyudev

    from gpu_plugin.udev import DrmEvents

    def no_netlink(*args: Any, **kwargs: Any) -> None:
        raise OSError("netlink not permitted")

    monkeypatch.setattr(pyudev.Monitor, "from_netlink", no_netlink)
    assert DrmEvents(lambda: None).start() is False
    fs = FakeSysfs(short_dir / "host")
    fs.add_gpu()
    trees: list[DeviceTree] = []
    stop = threading.Event()

    class Recorder:
        def notify(self, tree: DeviceTree) -> None:
            trees.append(tree)
            if len(trees) == 2:
                stop.set()

    GpuScanner(fs.sysfs_root, fs.devfs_root, scan_interval=0.05, use_udev=True).scan(Recorder(), stop)
    assert [sorted(t["i915"]) for t in trees] == [["card0-0"], ["card0-0"]]


def test_reregisters_after_kubelet_restart(short_dir: Path, host: FakeSysfs) -> None:
    run = Running(short_dir, host, enable_monitoring=True)
    kubelet = run.kubelet
    try:
        kubelet.wait_for(lambda: kubelet.allocatable(I915) == 2, what="2 GPUs")
        kubelet.restart()  # wipes every *.sock, as kubelet does on start
        kubelet.wait_for_registration(I915, timeout=15)
        kubelet.wait_for_registration("gpu.intel.com/monitoring", timeout=15)
        kubelet.wait_for(lambda: kubelet.allocatable(I915) == 2, timeout=15, what="2 GPUs after restart")
    finally:
        run.close()


def test_metrics_follow_registration_allocate_and_kubelet_restart(short_dir: Path, host: FakeSysfs) -> None:
    """The framework's and the scan loop's figures, scraped over HTTP, move as the flow runs."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    endpoint = serve("127.0.0.1:0", registry, "test")
    run = Running(short_dir, host, shared_dev_num=2, allocation_policy="balanced", registry=registry)
    kubelet, url = run.kubelet, endpoint.url
    try:
        kubelet.wait_for(lambda: kubelet.allocatable(I915) == 4, what="4 devices")
        first = wait_value(url, "deviceplugin_listandwatch_streams", lambda v: v == 1, resource=I915)
        assert first.value("deviceplugin_devices", resource=I915, health="Healthy") == 4
        assert first.value("deviceplugin_devices", resource=I915, health="Unhealthy") == 0
        assert first.value("deviceplugin_registrations_total", resource=I915) == 1
        assert first.value("deviceplugin_reregistrations_total", resource=I915) == 0
        assert first.value("deviceplugin_allocate_duration_seconds_count", resource=I915) == 0
        assert first.value("intel_gpu_plugin_scan_duration_seconds_count") >= 1
        with kubelet.client(I915) as client:
            client.allocate(["card0-0"])
            client.allocate(["card1-1"])
            with pytest.raises(grpc.RpcError):
                client.allocate(["card9-0"])
            client.preferred(["card0-0", "card0-1", "card1-0"], size=2)
        moved = scrape(url)
        assert moved.value("deviceplugin_allocate_requests_total", resource=I915, outcome="ok") == 2
        assert moved.value("deviceplugin_allocate_requests_total", resource=I915, outcome="error") == 1
        assert moved.value("deviceplugin_allocate_duration_seconds_count", resource=I915) == 3
        assert moved.value("deviceplugin_allocate_duration_seconds_bucket", resource=I915, le="+Inf") == 3
        assert moved.value("deviceplugin_preferred_allocation_duration_seconds_count", resource=I915) == 1
        assert moved.value("deviceplugin_preferred_allocation_requests_total", resource=I915,
                           outcome="ok") == 1
        kubelet.restart()
        again = wait_value(url, "deviceplugin_reregistrations_total", lambda v: v == 1, resource=I915)
        assert again.value("deviceplugin_registrations_total", resource=I915) == 2
        host.remove_gpu("0000:04:00.0")
        gone = wait_value(url, "deviceplugin_devices", lambda v: v == 2, resource=I915, health="Healthy")
        assert gone.value("intel_gpu_plugin_scans_total", outcome="ok") > first.value(
            "intel_gpu_plugin_scans_total", outcome="ok")
    finally:
        run.close()
        endpoint.close()
