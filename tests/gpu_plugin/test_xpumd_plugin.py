"""``-xpumd-endpoint`` end to end: fake xpumd -> plugin -> real device-plugin gRPC -> fake kubelet.

Real: both gRPC APIs over unix sockets, the plugin's scan loop and framework, and (last tests)
the ``intel-gpu-plugin`` program itself. Emulated: xpumd (:class:`tests.fakes.xpumd.FakeXpumd`),
kubelet (:class:`tests.fakes.kubelet.FakeKubelet`) and the GPUs (:class:`tests.fakes.sysfs.FakeSysfs`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gpu_plugin import cli
from gpu_plugin import scan as gs
from gpu_plugin.common.errors import UsageError
from gpu_plugin.plugin import PluginConfig, build_manager
from gpu_plugin.xpumd import Timing, XpumdHealth
from tests.fakes.kubelet import FakeKubelet
from tests.fakes.sysfs import FakeSysfs
from tests.fakes.xpumd import CRITICAL, OK, WARNING, FakeXpumd

I915 = "gpu.intel.com/i915"
A, B = "0000:03:00.0", "0000:04:00.0"
FAST = Timing(connect_attempts_max=3, connect_attempt_interval=0.1, arbitrary_error_delay=0.1,
              max_arbitrary_errors=2, backoff_cap=0.3)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short path: unix socket names are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="xpumdp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def host(short_dir: Path) -> FakeSysfs:
    fs = FakeSysfs(short_dir / "host")
    fs.add_gpu(A, card=0, render=128)
    fs.add_gpu(B, card=1, render=129)
    return fs


@pytest.fixture
def xpumd(short_dir: Path) -> Iterator[FakeXpumd]:
    fake = FakeXpumd(str(short_dir / "xpumd" / "intelxpuinfo.sock"))
    yield fake
    fake.close()


class Plugin:
    """The plugin (manager + GPU scanner + xpumd health source) in a thread, with a fake kubelet."""

    def __init__(self, base: Path, host: FakeSysfs, xpumd_socket: str, timing: Timing = FAST) -> None:
        self.kubelet = FakeKubelet(base / "kubelet").start()
        self.health = XpumdHealth(xpumd_socket, timing).start()
        config = PluginConfig(sysfs_root=host.sysfs_root, devfs_root=host.devfs_root,
                              kubelet_dir=str(base / "kubelet"), cdi_dir=str(base / "cdi"),
                              scan=gs.ScanOptions(), scan_interval=0.1, use_udev=False)
        self.manager, _ = build_manager(config, self.health)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.manager.run, args=(self.stop,))
        self.thread.start()

    def health_of(self) -> dict[str, str]:
        return {name: d.health for name, d in self.kubelet.devices(I915).items()}

    def wait_for(self, expected: dict[str, str], what: str) -> None:
        self.kubelet.wait_for(lambda: self.health_of() == expected, timeout=8, what=what)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.health.close()
        self.kubelet.stop()
        assert not self.thread.is_alive()


@pytest.fixture
def plugin(short_dir: Path, host: FakeSysfs, xpumd: FakeXpumd) -> Iterator[Plugin]:
    running = Plugin(short_dir, host, xpumd.socket_path)
    yield running
    running.close()


HEALTHY = {"card0-0": "Healthy", "card1-0": "Healthy"}
CARD1_SICK = {"card0-0": "Healthy", "card1-0": "Unhealthy"}


def test_critical_marks_the_card_unhealthy_then_it_recovers(plugin: Plugin, xpumd: FakeXpumd) -> None:
    xpumd.start()
    xpumd.publish({A: OK, B: CRITICAL})
    plugin.wait_for(CARD1_SICK, "card1 Unhealthy")
    assert plugin.kubelet.allocatable(I915) == 1
    with plugin.kubelet.client(I915) as client, pytest.raises(grpc.RpcError, match="card1-0"):
        client.allocate(["card1-0"])
    xpumd.publish({A: OK, B: OK})
    plugin.wait_for(HEALTHY, "card1 Healthy again")
    assert plugin.kubelet.allocatable(I915) == 2


def test_xpumd_down_means_healthy(plugin: Plugin, xpumd: FakeXpumd) -> None:
    plugin.wait_for(HEALTHY, "both cards advertised")  # xpumd never started
    assert not os.path.exists(xpumd.socket_path) and plugin.health.service._thread is not None
    assert plugin.health.service._thread.is_alive()


def test_allocations_go_on_while_xpumd_is_absent_and_its_health_is_used_once_it_appears(
        short_dir: Path, host: FakeSysfs, xpumd: FakeXpumd) -> None:
    """xpumd not ready (absent, as when it crash-loops): the cards stay advertised and allocatable;
    when it appears, its health applies at once although the next regular retry is far away."""
    slow = Timing(connect_attempts_max=0, connect_attempt_interval=30.0, backoff_cap=300.0)
    running = Plugin(short_dir, host, xpumd.socket_path, slow)
    try:
        running.wait_for(HEALTHY, "both cards advertised while xpumd is absent")
        with running.kubelet.client(I915) as client:
            assert client.allocate(["card1-0"]).container_responses[0].devices
        running.kubelet.wait_for(lambda: running.health.service._connect_failures >= 1,
                                 what="a failed attempt")
        xpumd.start()
        xpumd.publish({A: OK, B: CRITICAL})
        running.wait_for(CARD1_SICK, "xpumd's health applied")
    finally:
        running.close()


@pytest.mark.parametrize("graceful", [True, False], ids=["graceful restart (EOF)", "killed (stream error)"])
def test_xpumd_restart_reestablishes_the_stream(plugin: Plugin, xpumd: FakeXpumd, graceful: bool) -> None:
    xpumd.start()
    xpumd.publish({A: CRITICAL, B: OK})
    plugin.wait_for({"card0-0": "Unhealthy", "card1-0": "Healthy"}, "card0 Unhealthy")
    updates = plugin.kubelet.updates(I915)
    xpumd.stop(graceful)
    time.sleep(0.6)  # several scans and reconnect attempts while xpumd is away: last known health stays
    assert plugin.health_of() == {"card0-0": "Unhealthy", "card1-0": "Healthy"}
    assert plugin.kubelet.updates(I915) == updates  # no flapping
    xpumd.publish({A: OK, B: OK})  # cached while down; xpumd sends its snapshot to new clients
    xpumd.start()
    xpumd.wait_for_clients(1, connections=2)
    plugin.wait_for(HEALTHY, "update over the new stream")


# -- the program -------------------------------------------------------------------------------------


def test_program_with_xpumd_endpoint(short_dir: Path, host: FakeSysfs, xpumd: FakeXpumd) -> None:
    """``python -m gpu_plugin -xpumd-endpoint SOCK -xpumd-severity-limit warning`` (upstream's
    timing) against the fakes: a WARNING (healthy by default) marks the card; SIGTERM -> 0."""
    xpumd.start()
    xpumd.publish({A: WARNING, B: OK})
    kubelet = FakeKubelet(short_dir / "kubelet").start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_plugin", "-sysfs-root", host.sysfs_root, "-devfs-root", host.devfs_root,
         "-kubelet-dir", str(short_dir / "kubelet"), "-cdi-dir", str(short_dir / "cdi"),
         "-scan-interval", "0.2", "-xpumd-endpoint", xpumd.socket_path, "-xpumd-severity-limit", "warning"],
        stderr=subprocess.PIPE, text=True)
    try:
        expected = {"card0-0": "Unhealthy", "card1-0": "Healthy"}
        kubelet.wait_for(lambda: {n: d.health for n, d in kubelet.devices(I915).items()} == expected,
                         timeout=15, what="card0 Unhealthy")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kubelet.stop()
    assert proc.returncode == 0, stderr
    assert f"xpumd health source requested: {xpumd.socket_path} (unhealthy at severity warning and above)" \
        in stderr
    assert "Traceback" not in stderr


def test_parse_xpumd_endpoint() -> None:
    roots = ["-sysfs-root", "/", "-devfs-root", "/"]
    assert cli.parse(roots).xpumd_endpoint == ""  # upstream's default: off
    opts = cli.parse(roots + ["--xpumd-endpoint=/run/xpumd/intelxpuinfo.sock"])
    assert (opts.xpumd_endpoint, opts.health_management) == ("/run/xpumd/intelxpuinfo.sock", False)
    with pytest.raises(UsageError, match="^-xpumd-endpoint: unix socket path longer than 107 bytes$"):
        cli.parse(roots + ["-xpumd-endpoint", "/" + "x" * 107])


def test_parse_xpumd_severity_limit() -> None:
    roots = ["-sysfs-root", "/", "-devfs-root", "/"]
    assert cli.parse(roots).xpumd_severity_limit == "critical"  # upstream's default since PR #2318
    for value in ("failed", "critical", "warning"):
        assert cli.parse(roots + [f"-xpumd-severity-limit={value}"]).xpumd_severity_limit == value
    proc = subprocess.run([sys.executable, "-m", "gpu_plugin", *roots, "--xpumd-severity-limit", "Fatal"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "intel-gpu-plugin: -xpumd-severity-limit: invalid value 'Fatal', "
        "valid values: failed, critical, warning"]


def test_too_long_endpoint_exits_2_with_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "gpu_plugin", "-sysfs-root", "/", "-devfs-root", "/",
                           "-xpumd-endpoint", "/" + "x" * 120], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "intel-gpu-plugin: -xpumd-endpoint: unix socket path longer than 107 bytes"]
