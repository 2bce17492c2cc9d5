"""-resource-manager end to end: GPU scanner + framework + resource manager over real gRPC.

EMULATED parts: the host (tests/fakes/sysfs.py), kubelet's device manager (tests/fakes/kubelet.py),
kubelet's pod resources service (tests/fakes/podresources.py) and the API server
(tests/fakes/kube_api.py, reached through the official ``kubernetes`` client).  Also the scanner
wrapper (tiles, driver check, GAS labels file) and the CLI's prerequisite checks in subprocesses.
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
from typing import Any

import pytest

from gpu_plugin import scan as gs
from gpu_plugin.deviceplugin.api import ScannerError
from gpu_plugin.plugin import GpuScanner, PluginConfig, build_manager
from gpu_plugin.rm import RmConfig
from gpu_plugin.rm.manager import ResourceManager
from gpu_plugin.rm.scanner import GasLabeler, MultipleDriversError, RmScanner
from tests.fakes.kube_api import FakeKubeAPI
from tests.fakes.kubelet import FakeKubelet
from tests.fakes.podresources import FakePodResources
from tests.fakes.sysfs import FakeSysfs

NODE = "node-1"
I915 = "gpu.intel.com/i915"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gpurm-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def api(short_dir: Path) -> Iterator[FakeKubeAPI]:
    server = FakeKubeAPI().start()
    server.write_kubeconfig(short_dir / "kubeconfig")
    yield server
    server.stop()


@pytest.fixture
def podres() -> Iterator[FakePodResources]:
    server = FakePodResources().start()
    yield server
    server.stop()


def gas_pod(name: str, cards: str, tiles: str = "", ts: str = "1", phase: str = "Pending") -> dict[str, Any]:
    annotations = {"gas-container-cards": cards, "gas-ts": ts}
    if tiles:
        annotations["gas-container-tiles"] = tiles
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {"nodeName": NODE, "containers": [
                {"name": "w", "resources": {"requests": {I915: "1", "gpu.intel.com/millicores": "300"}}}]},
            "status": {"phase": phase}}


def test_fractional_allocation_through_the_device_plugin_api(short_dir: Path, api: FakeKubeAPI,
                                                             podres: FakePodResources) -> None:
    host = FakeSysfs(short_dir / "host")
    host.add_gpu("0000:03:00.0", card=0, render=128, tiles=2)
    host.add_gpu("0000:04:00.0", card=1, render=129, tiles=2)
    kubelet = FakeKubelet(short_dir / "kubelet").start()
    labels_file = short_dir / "features.d" / "intel-gpu-resources.txt"
    rm_config = RmConfig(node_name=NODE, kubeconfig=str(short_dir / "kubeconfig"),
                         podresources_socket=podres.socket_path, nfd_feature_file=str(labels_file),
                         retry_timeout=0.01)
    config = PluginConfig(sysfs_root=host.sysfs_root, devfs_root=host.devfs_root,
                          kubelet_dir=str(short_dir / "kubelet"), cdi_dir=str(short_dir / "cdi"),
                          scan=gs.ScanOptions(shared_dev_num=2, enable_monitoring=True),
                          allocation_policy="packed", scan_interval=0.2, use_udev=False,
                          resource_manager=rm_config)
    manager, scanner = build_manager(config)
    assert isinstance(scanner, RmScanner) and isinstance(manager.allocator, ResourceManager)
    stop = threading.Event()
    thread = threading.Thread(target=manager.run, args=(stop,))
    thread.start()
    try:
        kubelet.wait_for(lambda: kubelet.allocatable(I915) == 4, what="4 i915 devices")
        api.put_object(gas_pod("w1", cards="card1", tiles="card1:gt1"))
        podres.set_pod("default", "w1")
        dri = os.path.join(host.devfs_root, "dri")
        with kubelet.client(I915) as client:
            available = ["card0-0", "card0-1", "card1-0", "card1-1"]
            assert client.preferred(available, size=1) == ["card1-0"]  # GAS' card, not packed's card0
            resp = client.allocate(["card1-0"]).container_responses[0]
            assert [d.host_path for d in resp.devices] == [f"{dri}/card1", f"{dri}/renderD129"]
            assert dict(resp.envs) == {"ZE_AFFINITY_MASK": "1"}  # FLAT: card index 0 * 2 tiles + gt1
            assert list(resp.cdi_devices) == []  # upstream's RM response carries no CDI names
            # admitted: kubelet now reports the device, so nothing is pending -> default method
            podres.set_pod("default", "w1", [{I915: ["card1-0"]}])
            assert client.preferred(available, size=1) == []
            resp = client.allocate(["card0-0"]).container_responses[0]
            assert [c.name for c in resp.cdi_devices] == ["intel.cdi.k8s.io/gpu=card0"]
            assert "ZE_AFFINITY_MASK" not in resp.envs
        with kubelet.client("gpu.intel.com/monitoring") as client:  # -monitoring-mode single (default)
            resp = client.allocate(["all"]).container_responses[0]  # never the resource manager's
            assert len(resp.devices) == 4
        kubelet.wait_for(labels_file.is_file, what="GAS labels file")
        text = labels_file.read_text()
        assert "gpu.intel.com/tiles=4\n" in text and "gpu.intel.com/millicores=2000\n" in text
    finally:
        stop.set()
        thread.join(10)
        kubelet.stop()
    assert not thread.is_alive()
    assert not labels_file.exists()  # removed on stop, as upstream's labeler


def test_two_drm_drivers_stop_the_plugin(short_dir: Path, api: FakeKubeAPI, podres: FakePodResources) -> None:
    host = FakeSysfs(short_dir / "host")
    host.add_gpu("0000:03:00.0", card=0, render=128)
    host.add_gpu("0000:04:00.0", card=1, render=129, driver="xe")
    config = PluginConfig(sysfs_root=host.sysfs_root, devfs_root=host.devfs_root,
                          kubelet_dir=str(short_dir / "kubelet"), cdi_dir=str(short_dir / "cdi"),
                          scan=gs.ScanOptions(shared_dev_num=2), scan_interval=0.2, use_udev=False,
                          resource_manager=RmConfig(node_name=NODE, kubeconfig=str(short_dir / "kubeconfig"),
                                                    podresources_socket=podres.socket_path,
                                                    nfd_feature_file=None))
    manager, _ = build_manager(config)
    with pytest.raises(ScannerError, match="several DRM drivers"):
        manager.run(threading.Event())


def _observe(short_dir: Path, tiles: list[int], rm: ResourceManager) -> RmScanner:
    host = FakeSysfs(short_dir / f"host{len(list(short_dir.iterdir()))}")
    for i, t in enumerate(tiles):
        host.add_gpu(f"0000:0{i + 3}:00.0", card=i, render=128 + i, tiles=t)
    inner = GpuScanner(host.sysfs_root, host.devfs_root, gs.ScanOptions(shared_dev_num=2), use_udev=False)
    wrapper = RmScanner(inner, rm, host.sysfs_root)
    wrapper.observe(inner.scan_once())
    return wrapper


@pytest.mark.parametrize("tiles,expected", [([2, 2], 2), ([1, 1], 1), ([0, 4], 0), ([2, 1], 0)],
                         ids=["two tiles each", "single tile", "heterogenous 1/4", "heterogenous 2/1"])
def test_tiles_per_card_only_when_all_gpus_agree(short_dir: Path, tiles: list[int], expected: int) -> None:
    rm = ResourceManager(pods=None, podresources=None, resource_names=())  # type: ignore[arg-type]
    _observe(short_dir, tiles, rm)
    assert rm.tiles_per_card == expected


def test_two_drivers_in_one_snapshot_raise(short_dir: Path) -> None:
    rm = ResourceManager(pods=None, podresources=None, resource_names=())  # type: ignore[arg-type]
    wrapper = RmScanner(None, rm, str(short_dir))  # type: ignore[arg-type]
    with pytest.raises(MultipleDriversError):
        wrapper.observe({"i915": {"card0-0": None}, "xe": {"card1-0": None}})  # type: ignore[dict-item]
    wrapper.observe({"i915": {"card0-0": None}, "i915_monitoring": {"all": None},  # type: ignore[dict-item]
                     "monitoring": {"all": None}})


def test_labeler_rewrites_only_on_change_and_retries_failures(short_dir: Path) -> None:
    host = FakeSysfs(short_dir / "host")
    host.add_gpu("0000:03:00.0", card=0, render=128, tiles=2)
    target = short_dir / "out" / "intel-gpu-resources.txt"
    labels = GasLabeler(host.sysfs_root, str(target), env={})
    labels.update()
    first = target.stat().st_mtime_ns
    assert "gpu.intel.com/tiles=2\n" in target.read_text()
    time.sleep(0.01)
    labels.update()
    assert target.stat().st_mtime_ns == first  # unchanged labels: not rewritten
    host.add_gpu("0000:04:00.0", card=1, render=129, tiles=2)
    labels.update()
    assert "gpu.intel.com/tiles=4\n" in target.read_text()


# -- CLI: prerequisites (exit 2, one line) and a real run -------------------------------------------

def _cli(args: list[str], env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("KUBERNETES_", "NODE_NAME", "HOST_IP"))}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "gpu_plugin", *args], env=full_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("extra,env,expected", [
    (["-shared-dev-num", "1"], {"NODE_NAME": NODE}, "prerequisites missing: -shared-dev-num > 1"),
    (["-shared-dev-num", "2", "-wsl"], {"NODE_NAME": NODE}, "not supported within WSL"),
    (["-shared-dev-num", "2", "-kubeconfig", "KUBECONFIG", "-pod-resources-socket", "SOCKET"], {},
     "prerequisites missing: NODE_NAME env"),
    (["-shared-dev-num", "2", "-pod-resources-socket", "SOCKET"], {"NODE_NAME": NODE},
     "prerequisites missing: in-cluster API access"),
    (["-shared-dev-num", "2", "-pod-resources-socket", "SOCKET"],
     {"NODE_NAME": NODE, "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
     "service account token"),
    (["-shared-dev-num", "2", "-kubeconfig", "/nonexistent/kubeconfig", "-pod-resources-socket", "SOCKET"],
     {"NODE_NAME": NODE}, "prerequisites missing: -kubeconfig file /nonexistent/kubeconfig"),
    (["-shared-dev-num", "2", "-kubeconfig", "KUBECONFIG", "-pod-resources-socket", "/nonexistent.sock"],
     {"NODE_NAME": NODE}, "prerequisites missing: kubelet pod-resources socket /nonexistent.sock"),
], ids=["shared-dev-num 1", "wsl", "no NODE_NAME", "no in-cluster env", "no service account",
        "missing kubeconfig", "missing pod-resources socket"])
def test_cli_prerequisites_exit_2_with_one_line(short_dir: Path, api: FakeKubeAPI, podres: FakePodResources,
                                                extra: list[str], env: dict[str, str], expected: str) -> None:
    args = ["-resource-manager", "-sysfs-root", str(short_dir), "-devfs-root", str(short_dir)]
    subst = {"KUBECONFIG": str(short_dir / "kubeconfig"), "SOCKET": podres.socket_path}
    args += [subst.get(a, a) for a in extra]
    proc = _cli(args, env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("intel-gpu-plugin: -resource-manager: "), lines
    assert expected in lines[0]


def test_cli_garbage_kubeconfig_is_a_runtime_failure(short_dir: Path, podres: FakePodResources) -> None:
    (short_dir / "bad").write_text("this: [is not a kubeconfig")
    proc = _cli(["-resource-manager", "-shared-dev-num", "2", "-sysfs-root", str(short_dir), "-devfs-root",
                 str(short_dir), "-kubeconfig", str(short_dir / "bad"), "-pod-resources-socket",
                 podres.socket_path], {"NODE_NAME": NODE})
    assert proc.returncode == 1
    assert "Failed to create resource manager" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_runs_with_resource_manager(short_dir: Path, api: FakeKubeAPI, podres: FakePodResources) -> None:
    host = FakeSysfs(short_dir / "host")
    host.add_gpu("0000:03:00.0", card=0, render=128)
    kubelet = FakeKubelet(short_dir / "kubelet").start()
    api.put_object(gas_pod("w1", cards="card0"))
    podres.set_pod("default", "w1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "HOST_IP"))}
    env["NODE_NAME"] = NODE
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_plugin", "-resource-manager", "-shared-dev-num", "3",
         "-sysfs-root", host.sysfs_root, "-devfs-root", host.devfs_root,
         "-kubelet-dir", str(short_dir / "kubelet"),
         "-cdi-dir", str(short_dir / "cdi"), "-kubeconfig", str(short_dir / "kubeconfig"),
         "-pod-resources-socket", podres.socket_path, "-nfd-feature-file", str(short_dir / "labels.txt")],
        env=env, stderr=subprocess.PIPE, text=True)
    try:
        kubelet.wait_for(lambda: kubelet.allocatable(I915) == 3, timeout=20, what="3 i915 devices")
        with kubelet.client(I915) as client:
            # the manager puts must-include IDs first; the "none" policy would give card0-2
            assert client.preferred(["card0-2", "card0-0"], ["card0-1"], size=1) == ["card0-1"]
            assert len(client.allocate(["card0-2"]).container_responses[0].devices) == 2
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
        kubelet.stop()
    assert proc.returncode == 0, stderr
    assert "resource manager enabled" in stderr


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_upstream_labeler_run_writes_the_file_and_removes_it_on_signal(
        short_dir: Path, api: FakeKubeAPI, podres: FakePodResources, sig: signal.Signals) -> None:
    """upstream's TestCreateAndRun "Run" (cmd/internal/labeler): the label file appears, and the
    signal (upstream sends SIGHUP to itself) stops the labeler, which removes it. Here the labeler
    runs in the real plugin process with -resource-manager; the process then exits 0."""
    host = FakeSysfs(short_dir / "host")
    host.add_gpu("0000:03:00.0", card=0, render=128, tiles=2)
    kubelet = FakeKubelet(short_dir / "kubelet").start()
    labels = short_dir / "nfd" / "nfd-labelfile.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "HOST_IP"))}
    env["NODE_NAME"] = NODE
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_plugin", "-resource-manager", "-shared-dev-num", "2",
         "-sysfs-root", host.sysfs_root, "-devfs-root", host.devfs_root,
         "-kubelet-dir", str(short_dir / "kubelet"), "-cdi-dir", str(short_dir / "cdi"),
         "-kubeconfig", str(short_dir / "kubeconfig"), "-pod-resources-socket", podres.socket_path,
         "-nfd-feature-file", str(labels)],
        env=env, stderr=subprocess.PIPE, text=True)
    try:
        kubelet.wait_for(lambda: labels.is_file(), timeout=20, what="the labels file")
        assert "gpu.intel.com/tiles=2\n" in labels.read_text()
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kubelet.stop()
    assert proc.returncode == 0, stderr
    assert not labels.exists(), "the labeler did not remove its file"
    assert f"Received {sig.name}, stopping" in stderr
