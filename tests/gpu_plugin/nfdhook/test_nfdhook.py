"""`intel-gpu-nfdhook` as a program: labels printed for a kernel-shaped fake sysfs tree.

Emulated: sysfs (tests/fakes/sysfs.py). The label logic itself is covered by test_labeler.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_plugin.nfdhook import main as nfdhook
from tests.fakes.sysfs import FakeSysfs


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gpu_plugin.nfdhook", *args], capture_output=True,
                          text=True, timeout=30, env=full_env)


def test_prints_labels_for_builder_tree(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.add_gpu("0000:03:00.0", card=0, render=128, driver="i915", lmem_total_bytes=4 << 30, tiles=2, numa=0)
    fs.add_gpu("0000:04:00.0", card=1, render=129, driver="xe", tiles=1, numa=1)
    fs.add_gpu("0000:05:00.0", card=2, render=130, vendor="0x1002", numa=1)  # not Intel
    proc = _run(["-sysfs-root", fs.sysfs_root, "-devfs-root", fs.devfs_root],
                {"GPU_MEMORY_OVERRIDE": "1000", "GPU_PCI_GROUPING_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "gpu.intel.com/cards=card0.card1",
        "gpu.intel.com/gpu-numbers=0.1",
        f"gpu.intel.com/memory.max={(4 << 30) * 2 + 1000}",
        "gpu.intel.com/millicores=2000",
        "gpu.intel.com/numa-gpu-map=0-0_1-1",
        "gpu.intel.com/pci-groups=0_1",
        "gpu.intel.com/tiles=3",
    ]


def test_vfs_are_labelled_not_their_pf(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.add_gpu("0000:03:00.0", card=0, render=128, vfs=2)
    proc = _run(["--sysfs-root=" + fs.sysfs_root])
    assert proc.returncode == 0, proc.stderr
    assert "gpu.intel.com/gpu-numbers=1.2" in proc.stdout.splitlines()


def test_no_gpus_and_unlabelable_tree(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    proc = _run(["-sysfs-root", fs.sysfs_root])
    assert (proc.returncode, proc.stdout) == (0, "gpu.intel.com/tiles=0\n")
    os.rmdir(fs.sys / "class" / "drm")  # upstream: warning, no labels at all
    proc = _run(["-sysfs-root", fs.sysfs_root])
    assert (proc.returncode, proc.stdout) == (0, "")
    assert "failed to create labels" in proc.stderr


def test_main_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    fs = FakeSysfs(tmp_path)
    fs.add_gpu("0000:03:00.0", card=0)
    monkeypatch.setenv("GPU_MEMORY_OVERRIDE", "77")
    assert nfdhook.main(["-sysfs-root", fs.sysfs_root]) == 0
    assert "gpu.intel.com/memory.max=77\n" in capsys.readouterr().out


@pytest.mark.parametrize("args,flag", [
    (["-sysfs-root"], "-sysfs-root"),
    (["-nope"], "-nope"),
    (["-v", "x"], "-v"),
    (["-sysfs-root", "/nonexistent/sys"], "-sysfs-root"),
    (["-devfs-root", "/nonexistent/dev"], "-devfs-root"),
    (["extra"], "extra"),
], ids=["missing-value", "unknown", "bad-int", "missing-sysfs", "missing-devfs", "positional"])
def test_bad_flags_exit_2_with_one_line(args: list[str], flag: str) -> None:
    proc = _run(args)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and flag in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_upstreams_invocation_reads_host_sys(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """NFD runs the hook with no arguments; upstream's hook reads /host-sys (the worker's mount)."""
    fs = FakeSysfs(tmp_path / "host")
    fs.add_gpu("0000:03:00.0", card=0)
    monkeypatch.setattr(nfdhook, "HOST_SYS", fs.sysfs_root)
    assert nfdhook.main([]) == 0
    assert "gpu.intel.com/cards=card0\n" in capsys.readouterr().out
    other = FakeSysfs(tmp_path / "other")
    other.add_gpu("0000:03:00.0", card=0)
    other.add_gpu("0000:04:00.0", card=1, render=129)
    assert nfdhook.main(["-sysfs-root", other.sysfs_root]) == 0  # an explicit root wins
    assert "gpu.intel.com/cards=card0.card1\n" in capsys.readouterr().out


def test_without_host_sys_reads_sys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "host-sys-without-drm").mkdir()
    monkeypatch.setattr(nfdhook, "HOST_SYS", str(tmp_path / "host-sys-without-drm"))
    seen: list[str] = []
    monkeypatch.setattr(nfdhook.labeler, "create_labels", lambda drm: seen.append(drm) or {})
    assert nfdhook.main([]) == 0
    assert seen == ["/sys/class/drm"]


def test_klog_flags_accepted_with_a_warning(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.add_gpu("0000:03:00.0", card=0)
    proc = _run(["-logtostderr", "-v=2", "-log_dir=/var/log", "-sysfs-root", fs.sysfs_root])
    assert proc.returncode == 0, proc.stderr
    assert "gpu.intel.com/cards=card0" in proc.stdout.splitlines()
    assert proc.stderr.splitlines() == [
        "intel-gpu-nfdhook: WARNING klog flags without effect here (logs always go to stderr, levels from -v "
        "only): -log_dir"]
