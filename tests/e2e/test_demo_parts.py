"""The demo's own logic, without running the flow: DaemonSet args made local, nodeSelector
matching, expected resources from the GPU layout, the step runner's failure report and the
process supervisor's group cleanup.  Fast; the real flow is tests/e2e/test_whole_flow.py.
"""
from __future__ import annotations

import io
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from demo import __main__ as demo_main
from demo import kube
from demo.machine import GPUS, Gpu, expected_resources
from demo.procs import Supervisor


@pytest.mark.parametrize(("args", "want"), [
    (["-shared-dev-num=2", "-sysfs-root=/sys"], ["-shared-dev-num=2", "-sysfs-root", "/t/sys"]),
    (["-sysfs-root", "/sys", "-v", "2"], ["-v", "2", "-sysfs-root", "/t/sys"]),
    (["--sysfs-root", "/sys", "-enable-monitoring"], ["-enable-monitoring", "-sysfs-root", "/t/sys"]),
    ([], ["-sysfs-root", "/t/sys"]),
], ids=["equals-form", "separate-value", "double-dash-and-bool", "no-args"])
def test_local_args_replace_only_overridden_flags(args: list[str], want: list[str]) -> None:
    assert kube.local_args(args, {"sysfs-root": "/t/sys"}) == want


@pytest.mark.parametrize(("selector", "labels", "matches"), [
    ({"intelgpu": "enabled"}, {"intelgpu": "enabled", "a": "b"}, True),
    ({"intelgpu": "enabled"}, {"intelgpu": "disabled"}, False),
    ({"intelgpu": "enabled", "kubernetes.io/arch": "amd64"}, {"intelgpu": "enabled"}, False),
    ({}, {}, True),
], ids=["match", "wrong-value", "missing-key", "empty-selector"])
def test_selector_matching(selector: dict[str, str], labels: dict[str, str], matches: bool) -> None:
    assert kube.selector_matches(selector, labels) is matches


def test_expected_resources_follow_upstream_rules() -> None:
    # the i915 PF with 2 VFs yields its 2 VFs only; the non-Intel card yields nothing
    assert expected_resources(GPUS) == {"gpu.intel.com/i915": 2, "gpu.intel.com/xe": 1}
    assert expected_resources(GPUS, shared_dev_num=3) == {"gpu.intel.com/i915": 6, "gpu.intel.com/xe": 3}
    assert expected_resources((Gpu("0000:09:00.0", 9, 137, "radeon", vendor="0x1002"),)) == {}


def test_runner_stops_at_the_failed_step_and_names_it() -> None:
    calls: list[str] = []

    def ok(name: str):  # type: ignore[no-untyped-def]
        return lambda flow: calls.append(name) or f"{name} done"

    def boom(flow: object) -> str:
        raise RuntimeError("broker on fire")

    steps = (("one", "first", ok("one")), ("two", "second", boom), ("three", "third", ok("three")))
    out = io.StringIO()
    outcomes = demo_main.run_steps(object(), out, steps=steps)  # type: ignore[arg-type]
    assert [(o.step, o.ok) for o in outcomes] == [("one", True), ("two", False)]
    assert calls == ["one"]
    assert "RuntimeError: broker on fire" in out.getvalue()
    assert "FAILED" in demo_main.summary(outcomes, 1.0, steps=steps)


def test_supervisor_stops_the_whole_process_group(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    # a parent that starts a grandchild in the same group and ignores SIGTERM itself
    script = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              "print(p.pid, flush=True); time.sleep(60)")
    proc = sup.start("parent", [sys.executable, "-c", script])
    deadline = time.monotonic() + 10
    while not proc.log_path.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(proc.log_path.read_text().split()[0])
    sup.stop_all(timeout=0.5)
    assert proc.popen.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while _exists(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _exists(grandchild)
    assert sup.procs == []


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still "exists" until its parent (init, here) reaps it
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(("reachable", "transport", "url", "want", "said"), [
    (False, None, None, "zmq", "RabbitMQ NOT reachable at 127.0.0.1:5672: ZeroMQ"),
    (True, None, None, "amqp", "AMQP: RabbitMQ at 127.0.0.1:5672"),
    (True, "zmq", None, "zmq", "as asked: ZeroMQ"),
    (False, "amqp", "fake:/", "amqp", "IN THIS PROCESS"),
], ids=["no-broker-zeromq", "broker-amqp", "asked-zmq", "asked-fake"])
def test_transport_choice_says_which(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reachable: bool,
                                     transport: str | None, url: str | None, want: str, said: str) -> None:
    from demo import flow as flow_mod

    monkeypatch.setattr(flow_mod, "broker_reachable", lambda: reachable)
    flow = flow_mod.Flow(tmp_path, transport=transport, transport_url=url)
    try:
        detail = flow.choose_transport()
    finally:
        flow.close()
    assert flow.transport == want and said in detail
    assert (flow.zmq_port is not None) == (want == "zmq")
