"""The ``sysinv-gpu-agent`` process over ZeroMQ, against a sysinv-style conductor (no broker).

The installed console script, configured as on a StarlingX of today (``rpc_backend_zeromq``,
the conductor's address and port, ``host_uuid_source = platform_conf``), reports to the
sysinv-style zerorpc server of tests/fakes/sysinv_zmq.py on a port the OS picked; GPUs come from
the fake sysfs tree. It reports sysinv's host uuid (the UUID= line), then the empty list once the
GPU is gone, and keeps retrying while the conductor answers with errors.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import rabbit
from tests.fakes.sysfs import FakeSysfs
from tests.fakes.sysinv_zmq import SysinvZmqServer

SYSINV_UUID = "a1c581fc-0c74-4e68-b78e-4e26a0695f5d"
AGENT = str(Path(sys.executable).with_name("sysinv-gpu-agent"))


class Conductor:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = False

    def device_plugin_labels_update_by_ihost(self, context: Any, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        if self.fail:
            raise RuntimeError("conductor busy")


@pytest.fixture
def sysinv() -> Iterator[SysinvZmqServer]:
    server = SysinvZmqServer(Conductor()).start()
    yield server
    server.stop()


def test_agent_reports_sysinv_host_uuid_over_zeromq(tmp_path: Path, sysinv: SysinvZmqServer) -> None:
    sysfs = FakeSysfs(tmp_path / "root")
    sysfs.set_product_uuid("DMI-NOT-THIS-ONE")
    sysfs.add_gpu("0000:03:00.0", pci_class="0x030000", driver="i915")
    platform_conf = tmp_path / "platform.conf"
    platform_conf.write_text(f"nodetype=worker\nINSTALL_UUID=not-this-either\nUUID={SYSINV_UUID}\n")
    config = tmp_path / "agent.conf"
    config.write_text(
        "[DEFAULT]\nlog_file = \nrpc_backend_zeromq = true\n"
        f"rpc_zeromq_conductor_bind_ip = 127.0.0.1\nrpc_zeromq_conductor_bind_port = {sysinv.port}\n"
        # a broker URL that leads nowhere: ZeroMQ needs none
        f"transport_url = rabbit://guest:guest@127.0.0.1:{rabbit.free_port()}/\n"
        f"[agent]\nsysfs_root = {sysfs.sysfs_root}\nhost_uuid_source = platform_conf\n"
        f"platform_conf = {platform_conf}\nreport_interval = 1\nrpc_timeout = 5\n"
        "retry_backoff_max = 1\nudev_events = false\n")
    conductor: Conductor = sysinv.target
    agent = rabbit.ServiceProcess("sysinv-gpu-agent", ["--config-file", str(config)],
                                  tmp_path / "agent.log").start()
    try:
        assert rabbit.wait_for(lambda: conductor.calls, 60), agent.log()
        assert conductor.calls[0] == {"host_uuid": SYSINV_UUID, "device_plugins": ["intelgpu"]}
        conductor.fail = True  # errors come back as errors; the agent retries
        seen = len(conductor.calls)
        assert rabbit.wait_for(lambda: len(conductor.calls) >= seen + 2, 30), agent.log()
        assert "conductor busy" in agent.log()
        conductor.fail = False
        sysfs.remove_gpu("0000:03:00.0")
        assert rabbit.wait_for(lambda: conductor.calls[-1].get("device_plugins") == [], 30), agent.log()
        assert "over ZeroMQ to tcp://[127.0.0.1]" in agent.log()
        assert agent.stop() == 0
    finally:
        if agent.running():
            agent.stop()
    assert not sysinv.invalid
