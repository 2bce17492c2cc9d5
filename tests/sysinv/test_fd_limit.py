"""Issue 21 item 9: with the default soft limit of 1,024 open files, about a thousand idle
peers left the conductor unable to answer an agent. The units set LimitNOFILE and the services
raise their soft limit at start (sysinv_ext.common.fdlimit)."""
from __future__ import annotations

import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("unit", ["sysinv-gpu-agent.service", "sysinv-gpu-conductor.service"])
def test_units_lift_the_1024_open_file_limit(unit: str) -> None:
    text = (ROOT / "etc" / "systemd" / unit).read_text()
    section = text.split("[Service]", 1)[1].split("\n[", 1)[0]
    found = re.findall(r"^LimitNOFILE=(\d+)$", section, re.MULTILINE)
    assert found and int(found[0]) >= 16384


def _soft_limit_after_start(soft: int, hard: int, entry: str) -> int:
    """The soft limit a service process has after ``main`` began (``--help``-free: we run the
    function the mains call, in a child whose limits start at (soft, hard))."""
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
        f"import {entry} as cmd\n"
        "cmd.fdlimit.raise_nofile_limit()\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True, cwd=ROOT)
    return int(out.stdout.split()[-1])


@pytest.mark.parametrize("entry", ["sysinv_ext.cmd.agent", "sysinv_ext.cmd.conductor"])
def test_service_start_raises_a_low_soft_open_file_limit(entry: str) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"hard open-file limit {hard} leaves nothing to raise")
    expected = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    assert _soft_limit_after_start(1024, hard, entry) == expected


def test_service_main_calls_the_raise() -> None:
    for entry in ("agent", "conductor"):
        source = (ROOT / "sysinv_ext" / "cmd" / f"{entry}.py").read_text()
        main = source.split("def main(", 1)[1]
        assert "fdlimit.raise_nofile_limit()" in main, entry


def test_soft_limit_is_never_lowered_nor_raised_above_the_hard_limit() -> None:
    from sysinv_ext.common import fdlimit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    old, new = fdlimit.raise_nofile_limit(wanted=1)
    assert (old, new) == (soft, soft)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)
