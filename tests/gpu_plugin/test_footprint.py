"""What the plugin process loads (issue 21, item 5): an option's libraries only when it is set.

The real ``gpu_plugin.cli.main`` runs in a fresh interpreter against a fake kubelet and a fake
sysfs; once it has registered, a watcher thread in that process prints which of the metrics
endpoint's libraries are in ``sys.modules`` and stops it with SIGTERM. With
``-metrics-address`` the same probe sees them (so the probe can fail).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.kubelet import FakeKubelet
from tests.fakes.sysfs import FakeSysfs

ROOT = Path(__file__).resolve().parents[2]
METRICS_LIBRARIES = ("prometheus_client", "http.server", "wsgiref")
I915 = "gpu.intel.com/i915"

_PROBE = """
import json, os, signal, sys, threading, time
from gpu_plugin import cli

def watch(sock):
    while not os.path.exists(sock):
        time.sleep(0.01)
    time.sleep(0.2)  # past the first ListAndWatch answer
    loaded = [m for m in json.loads(sys.argv[1]) if m in sys.modules]
    print(json.dumps(loaded), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=watch, args=(sys.argv[2],), daemon=True).start()
sys.exit(cli.main(sys.argv[3:]))
"""


@pytest.fixture
def node() -> Iterator[tuple[FakeSysfs, Path]]:
    short = Path(tempfile.mkdtemp(prefix="fp-", dir="/tmp"))  # unix socket paths are short
    host = FakeSysfs(short / "host")
    host.add_gpu("0000:03:00.0", card=0, render=128)
    try:
        yield host, short
    finally:
        shutil.rmtree(short, ignore_errors=True)


def _loaded_after_registration(host: FakeSysfs, short: Path, *flags: str) -> list[str]:
    kubelet_dir = short / "kubelet"
    with FakeKubelet(kubelet_dir) as kubelet:
        argv = ["-sysfs-root", host.sysfs_root, "-devfs-root", host.devfs_root, "-kubelet-dir",
                str(kubelet_dir), "-cdi-dir", str(short / "cdi"), *flags]
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, json.dumps(METRICS_LIBRARIES),
             str(kubelet_dir / "gpu.intel.com-i915.sock"), *argv],
            capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert proc.returncode == 0, proc.stderr
        assert kubelet.registered(I915), "the plugin did not register"
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_a_plugin_without_metrics_loads_no_prometheus_client_http_server_nor_wsgiref(
        node: tuple[FakeSysfs, Path]) -> None:
    assert _loaded_after_registration(*node) == []


def test_a_plugin_with_metrics_loads_them(node: tuple[FakeSysfs, Path]) -> None:
    assert _loaded_after_registration(*node, "-metrics-address", "127.0.0.1:0") == list(METRICS_LIBRARIES)


def test_importing_the_cli_loads_no_metrics_library() -> None:
    code = f"import json, sys, gpu_plugin.cli; print(json.dumps([m for m in {METRICS_LIBRARIES!r} " \
           "if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True).stdout
    assert json.loads(out) == []


def test_without_a_udev_daemon_pyudev_is_not_loaded(tmp_path: Path) -> None:
    """No udevd (no control socket, as in the plugin's pod): libudev's monitor would get nothing,
    so pyudev is not even imported."""
    code = ("import json, sys; from gpu_plugin.udev import DrmEvents; "
            f"started = DrmEvents(lambda: None, udev_control={str(tmp_path / 'control')!r}).start(); "
            "print(json.dumps([started, 'pyudev' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True).stdout
    assert json.loads(out) == [False, False]
