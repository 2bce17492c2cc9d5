"""klog's flags (gpu_plugin.common.klog): accepted by every program with klog's syntax and defaults.

Upstream's programs call klog.InitFlags, so their command lines carry klog flags; ours must accept
them (a drop-in), reject klog-invalid values as Go would (exit 2), and name the ones that have no
effect. The plugin's own warning is checked on the real program in a subprocess.
"""
from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gpu_plugin import cli
from gpu_plugin.common import klog
from gpu_plugin.common.goflags import FlagError, FlagSet
from gpu_plugin.levelzero import server as levelzero
from gpu_plugin.nfdhook import main as nfdhook
from gpu_plugin.render_device import main as render_device
from gpu_plugin.xpum_sidecar import main as xpum_sidecar

#: a klog command line as upstream's deployments and operators write them
UPSTREAM_KLOG = ["-logtostderr", "-alsologtostderr=false", "-v=2", "-log_file_max_size=1800",
                 "--stderrthreshold=INFO", "-vmodule=gpu_plugin=4,labeler*=1", "-log_dir", "/var/log",
                 "-log_file=", "-add_dir_header=false", "-skip_headers", "-skip_log_headers", "-one_output",
                 "-log_backtrace_at=gpu_plugin.go:120", "-legacy_stderr_threshold_behavior=false"]

PROGRAMS: dict[str, Callable[[], FlagSet]] = {
    "intel-gpu-plugin": cli.flagset,
    "intel-gpu-levelzero": levelzero._flagset,
    "intel-gpu-nfdhook": nfdhook._flagset,
    "intel-xpumanager-sidecar": xpum_sidecar._flagset,
    "render-device": render_device._flagset,
}


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_every_program_accepts_upstreams_klog_flags(program: str) -> None:
    flags = PROGRAMS[program]().parse(UPSTREAM_KLOG)
    assert flags.args == [] and flags["v"] == 2 and flags["log_file_max_size"] == 1800
    assert set(klog.ineffective(flags)) == {"-vmodule", "-log_dir", "-stderrthreshold", "-skip_headers",
                                            "-skip_log_headers", "-one_output", "-log_backtrace_at",
                                            "-legacy_stderr_threshold_behavior"}


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_v_defaults_to_0_everywhere(program: str) -> None:
    """levelzero's -v was 1; upstream's default is klog's, 0."""
    assert PROGRAMS[program]().parse([])["v"] == 0


@pytest.mark.parametrize("argv", [
    ["-vmodule=gpu_plugin"], ["-vmodule=a=1,=2"], ["-vmodule=a=x"], ["-stderrthreshold=LOUD"],
    ["-log_backtrace_at=gpu_plugin.go"], ["-log_file_max_size=-1"],
    ["-log_file_max_size=18446744073709551616"],
    ["-logtostderr=yes"], ["-v=two"],
], ids=lambda a: a[0])
def test_values_klog_rejects_are_flag_errors(argv: list[str]) -> None:
    fs = FlagSet("x")
    klog.add_flags(fs)
    name = argv[0].split("=")[0]
    with pytest.raises(FlagError, match=f"for flag {name}: parse error"):
        fs.parse(argv)


def test_klog_defaults_and_what_counts_as_ineffective() -> None:
    fs = FlagSet("x")
    klog.add_flags(fs, v_default=1)
    defaults = fs.parse([])
    assert (defaults["v"], defaults["logtostderr"], defaults["log_file_max_size"]) == (1, True, 1800)
    # what we do anyway: logging to stderr; klog's defaults given explicitly
    assert klog.ineffective(fs.parse(["-logtostderr=true", "-alsologtostderr", "-stderrthreshold=2",
                                      "-log_file_max_size=1800", "-v=5"])) == []
    assert klog.ineffective(fs.parse(["-logtostderr=false"])) == ["-logtostderr"]


def test_one_warning_names_them(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test_klog")
    with caplog.at_level(logging.WARNING, logger="test_klog"):
        klog.warn_ineffective([], log)
        assert caplog.records == []
        klog.warn_ineffective(["-log_dir", "-vmodule"], log)
    assert [r.getMessage() for r in caplog.records] == [
        "klog flags without effect here (logs always go to stderr, levels from -v only): -log_dir, -vmodule"]


def _stderr_until(proc: subprocess.Popen[str], needle: str, timeout: float = 30.0) -> list[str]:
    """Lines of ``proc``'s stderr up to the read that brought ``needle`` (fails on exit/timeout).

    Reads the pipe's descriptor, not the text wrapper: ``readline()`` buffers what it read past
    the line it returns, and ``select()`` on the descriptor then waits for output that already
    came (a line sitting in that buffer was not seen for the whole timeout)."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    lines: list[str] = []
    pending = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            chunk = os.read(fd, 65536)
            assert chunk, f"exited ({proc.wait()}) before {needle!r}: {lines}"
            *complete, pending = (pending + chunk).split(b"\n")
            lines.extend(line.decode(errors="replace") for line in complete)
            if any(needle in line for line in lines):
                return lines
    raise AssertionError(f"{needle!r} not seen within {timeout} s: {lines}")


def test_plugin_warns_once_about_ineffective_klog_flags(tmp_path: Path) -> None:
    (tmp_path / "kubelet").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "gpu_plugin", "-sysfs-root", str(tmp_path),
                             "-devfs-root", str(tmp_path), "-kubelet-dir", str(tmp_path / "kubelet"),
                             "-cdi-dir", str(tmp_path / "cdi"), "-logtostderr", "-v=2",
                             "-log_dir=/var/log/gpu",
                             "-log_file_max_size=10"], stderr=subprocess.PIPE, text=True)
    try:
        lines = _stderr_until(proc, "GPU device plugin started")  # signal handlers are set by then
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    warnings = [line for line in lines if "klog flags" in line]
    assert len(warnings) == 1 and warnings[0].endswith(
        "klog flags without effect here (logs always go to stderr, levels from -v only): -log_dir, "
        "-log_file_max_size"), lines
    assert proc.returncode == 0, rest
    assert "klog flags" not in rest  # once
