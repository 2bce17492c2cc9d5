"""`render-device` (upstream's render-device.sh as a program), run as a subprocess on a fake tree.

Emulated: sysfs and devfs (tests/fakes/sysfs.py; device nodes are regular files). The tests run
as root, for whom every existing node is writable, so "not writable" is covered in-process with
an injected writability check.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_plugin.render_device import main as render_device
from tests.fakes.sysfs import FakeSysfs


@pytest.fixture
def fs(tmp_path: Path) -> FakeSysfs:
    fs = FakeSysfs(tmp_path)
    fs.add_gpu("0000:03:00.0", card=0, render=128)
    fs.add_gpu("0000:04:00.0", card=1, render=129, driver="xe")
    fs.add_gpu("0000:05:00.0", card=2, render=130, vendor="0x1002")  # not Intel
    return fs


def _run(fs: FakeSysfs, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpu_plugin.render_device", "-sysfs-root", fs.sysfs_root,
                           "-devfs-root", fs.devfs_root, *args], capture_output=True, text=True, timeout=30)


def _node(fs: FakeSysfs, minor: int) -> str:
    return os.path.join(fs.devfs_root, "dri", f"renderD{minor}")


@pytest.mark.parametrize("index,minor", [("1", 128), ("2", 129), ("002", 129)],
                         ids=["first", "second", "zeros"])
def test_prints_nth_intel_render_node(fs: FakeSysfs, index: str, minor: int) -> None:
    proc = _run(fs, index)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, _node(fs, minor) + "\n", "")


def test_fewer_gpus_than_requested(fs: FakeSysfs) -> None:
    proc = _run(fs, "3")
    assert (proc.returncode, proc.stdout) == (1, "ERROR: 2 Intel GPU(s) found, not 3 as requested!\n")
    assert proc.stderr.splitlines() == ["render-device: 2 Intel GPU(s) found, not 3 as requested"]


def test_node_missing_in_devfs_is_skipped(fs: FakeSysfs) -> None:
    os.unlink(_node(fs, 128))
    assert _run(fs, "1").stdout == _node(fs, 129) + "\n"
    assert _run(fs, "2").returncode == 1


def test_not_writable_is_skipped(fs: FakeSysfs) -> None:
    def only_129(path: str) -> bool:
        return path.endswith("renderD129")

    assert render_device.nth_device(fs.sysfs_root, fs.devfs_root, 1, only_129) == _node(fs, 129)
    assert render_device.counts(fs.sysfs_root, fs.devfs_root, only_129) == (2, 1)


def test_no_argument_prints_counts_listing_and_user(fs: FakeSysfs) -> None:
    os.unlink(_node(fs, 129))
    proc = _run(fs)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "2 Intel GPU render device(s) listed in sysfs, 1 writable one(s) in devfs:"
    assert any(line.endswith(" renderD128") for line in lines[1:-1])
    assert not any("renderD129" in line for line in lines)
    assert lines[-1].startswith("User: uid=")


def test_runs_media_program_with_device_appended(fs: FakeSysfs) -> None:
    proc = _run(fs, "2", "sh", "-c", 'echo "device=$1"', "sh")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"Running: sh -c echo \"device=$1\" sh {_node(fs, 129)}",
                                        f"device={_node(fs, 129)}"]
    proc = _run(fs, "sh", "-c", 'echo "device=$1"', "sh")  # no index: the first GPU
    assert proc.stdout.splitlines()[-1] == f"device={_node(fs, 128)}"


# what upstream's render-device.sh passes to its usage(): "ERROR: <reason>!" on stdout, exit 1
MEDIA_MISSING = "media program and/or its GPU selection option missing"


@pytest.mark.parametrize("args,reason", [
    (["0"], "GPU index 0 not in range 1-127"),
    (["128"], "GPU index 128 not in range 1-127"),
    (["vainfo"], MEDIA_MISSING),
    (["1", "vainfo"], MEDIA_MISSING),
], ids=["zero", "too-big", "program-without-option", "index-program-without-option"])
def test_script_errors_print_upstreams_error_line_exit_1(fs: FakeSysfs, args: list[str], reason: str) -> None:
    proc = _run(fs, *args)
    assert proc.returncode == 1
    assert proc.stdout == f"ERROR: {reason}!\n"  # scripts grep stdout for "ERROR:" (also via $(...))
    assert proc.stderr.splitlines() == [f"render-device: {reason}"]


@pytest.mark.parametrize("args,needle", [
    (["-sysfs-root"], "-sysfs-root"),
    (["-index", "1"], "-index"),
    (["-vmodule", "nonsense", "1"], "-vmodule"),
    (["-log_file_max_size", "-1", "1"], "-log_file_max_size"),
], ids=["missing-value", "unknown-flag", "bad-vmodule", "negative-uint"])
def test_bad_flags_exit_2_with_one_line(fs: FakeSysfs, args: list[str], needle: str) -> None:
    proc = _run(fs, *args)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and needle in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_klog_flags_accepted_with_a_warning(fs: FakeSysfs) -> None:
    proc = _run(fs, "-logtostderr", "-v=2", "-log_file_max_size=10", "2")
    assert (proc.returncode, proc.stdout) == (0, _node(fs, 129) + "\n")
    assert proc.stderr.splitlines() == [
        "render-device: WARNING klog flags without effect here (logs always go to stderr, levels from -v "
        "only): -log_file_max_size, -v"]


def test_missing_root_is_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "gpu_plugin.render_device", "-devfs-root",
                           str(tmp_path / "nodev"), "1"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "-devfs-root" in proc.stderr and len(proc.stderr.splitlines()) == 1
