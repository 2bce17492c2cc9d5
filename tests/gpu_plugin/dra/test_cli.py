"""intel-gpu-dra-plugin's command line: a bad flag is exit 2 and one line, no traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("args,flag", [
    (["-node-name", ""], "-node-name"),
    (["-node-name", "n", "-sysfs-root", "/nonexistent"], "-sysfs-root"),
    (["-node-name", "n", "-scan-interval", "0"], "-scan-interval"),
    (["-node-name", "n", "-health-management", "-xpumd-endpoint", "/x.sock"], "-xpumd-endpoint"),
    (["-node-name", "n", "-kubelet-plugins-dir", "/" + "p" * 120], "-kubelet-plugins-dir"),
    (["-no-such-flag"], "no-such-flag"),
], ids=["no-node", "sysfs", "interval", "two-health-sources", "long-socket", "unknown"])
def test_bad_flags(args: list[str], flag: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "gpu_plugin.dra", *args], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and lines[0].startswith("intel-gpu-dra-plugin: ")
