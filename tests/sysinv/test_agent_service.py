"""The ``sysinv-gpu-agent`` command: flags, config errors, sample, systemd unit, real process.

Process tests run the installed console script against the real RabbitMQ broker (skipped with a
reason when it is down) with an in-process recording conductor endpoint and a fake sysfs tree;
the outage test points the agent at a closed port. Each test uses its own exchange and topic.
"""
from __future__ import annotations

import configparser
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from sysinv_ext.common import rpc
from tests.fakes import rabbit
from tests.fakes.sysfs import FakeSysfs
from tests.scrape import scrape, url_from_log, wait_value

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "etc/sysinv-gpu/agent.conf.sample"
UNIT = ROOT / "etc/systemd/sysinv-gpu-agent.service"
AGENT = str(Path(sys.executable).with_name("sysinv-gpu-agent"))
BROKER_DOWN = rabbit.broker_unreachable_reason()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "config", "needle"), [
    (["--bogus-flag"], None, "--bogus-flag"),
    (["--config-file", "/nonexistent/agent.conf"], None, "/nonexistent/agent.conf"),
    ([], "[agent]\npayload_format = 2020\n", "payload_format"),
    ([], "[agent]\nreport_interval = 0\n", "report_interval"),
    ([], "[DEFAULT]\nmetrics_address = localhost\n", "metrics_address"),
], ids=["unknown-flag", "missing-config", "bad-choice", "below-min", "bad-metrics-address"])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], config: str | None,
                                         needle: str) -> None:
    if config is not None:
        path = tmp_path / "agent.conf"
        path.write_text(config)
        args = ["--config-file", str(path), *args]
    result = _run(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and "Traceback" not in result.stderr


def test_help_exits_0() -> None:
    result = _run("--help")
    assert result.returncode == 0 and "--config-file" in result.stdout


def test_committed_sample_is_current(tmp_path: Path) -> None:
    out = tmp_path / "agent.conf.sample"
    subprocess.run([sys.executable, "-m", "oslo_config.generator", "--namespace", "sysinv_ext.agent",
                    "--output-file", str(out)], check=True, capture_output=True, cwd=ROOT)
    assert out.read_text() == SAMPLE.read_text(), (
        "etc/sysinv-gpu/agent.conf.sample is stale; regenerate with: oslo-config-generator "
        "--namespace sysinv_ext.agent --output-file etc/sysinv-gpu/agent.conf.sample")
    for option in ("sysfs_root = /sys", "report_interval = 60", "payload_format = 2023",
                   "conductor_topic = sysinv_gpu.conductor_manager", "control_exchange = sysinv"):
        assert f"#{option}" in SAMPLE.read_text()


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    assert "rabbitmq-server.service" in unit["Unit"]["After"].split()
    assert "network-online.target" in unit["Unit"]["After"].split()
    service = unit["Service"]
    assert service["ExecStart"].split()[0].endswith("/sysinv-gpu-agent")
    assert "--config-file" in service["ExecStart"]
    assert service["Restart"] == "always"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert "/sys" in service["ReadOnlyPaths"].split()
    assert service.get("User", "root") != "root"


def _write_config(path: Path, *, url: str, exchange: str, topic: str, sysfs_root: str,
                  host_uuid: str = "", extra: str = "") -> Path:
    path.write_text(
        f"[DEFAULT]\ntransport_url = {url}\ncontrol_exchange = {exchange}\n"
        f"log_file = \ndebug = false\n{extra}\n"
        f"[agent]\nsysfs_root = {sysfs_root}\nconductor_topic = {topic}\nreport_interval = 1\n"
        f"rpc_timeout = 5\nrpc_retry = 1\nretry_backoff_max = 2\nudev_events = false\n"
        + (f"host_uuid = {host_uuid}\n" if host_uuid else ""))
    return path


class Recorder:
    target = messaging.Target(version="1.1")

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def device_plugin_labels_update_by_ihost(self, ctxt: Any, **kwargs: Any) -> None:
        self.calls.append(kwargs)


@pytest.fixture
def conductor(tmp_path: Path) -> Iterator[tuple[Recorder, str, str]]:
    if BROKER_DOWN:
        pytest.skip(BROKER_DOWN)
    exchange, topic = rabbit.unique_name("sysinv"), rabbit.unique_name("sysinv.conductor_manager")
    conf = cfg.ConfigOpts()
    rpc.register_opts(conf)
    conf([], project="sysinv-test")
    conf.set_override("transport_url", rabbit.URL)
    conf.set_override("control_exchange", exchange)
    recorder = Recorder()
    server = rpc.get_server(conf, messaging.Target(topic=topic, server="c0"), [recorder])
    server.start()
    yield recorder, exchange, topic
    rpc.stop_server(server)
    rabbit.delete(queues=[topic, f"{topic}.c0"], exchanges=[exchange])


@pytest.mark.rabbitmq
def test_process_reports_changes_and_stops_on_sigterm(
        tmp_path: Path, conductor: tuple[Recorder, str, str]) -> None:
    recorder, exchange, topic = conductor
    sysfs = FakeSysfs(tmp_path / "root")
    sysfs.set_product_uuid("AAAA-1")
    sysfs.add_gpu("0000:03:00.0", pci_class="0x038000", driver="xe")
    config = _write_config(tmp_path / "agent.conf", url=rabbit.URL, exchange=exchange, topic=topic,
                           sysfs_root=sysfs.sysfs_root, extra="metrics_address = :0")
    agent = rabbit.ServiceProcess("sysinv-gpu-agent", ["--config-file", str(config)],
                                  tmp_path / "agent.log").start()
    try:
        url = url_from_log(tmp_path / "agent.log", alive=agent.running)
        assert url.startswith("http://127.0.0.1:")
        assert rabbit.wait_for(lambda: recorder.calls, 20), agent.log()
        assert recorder.calls[0] == {"host_uuid": "AAAA-1", "device_plugins": ["intelgpu"]}
        first = wait_value(url, "sysinv_gpu_agent_reports_total", lambda v: v >= 1, outcome="sent")
        assert first.value("sysinv_gpu_agent_gpus", driver="xe", function="pf") == 1
        assert first.value("sysinv_gpu_agent_gpus", driver="i915") == 0
        assert first.value("sysinv_gpu_agent_last_report_success_timestamp_seconds") > 1.7e9
        sysfs.remove_gpu("0000:03:00.0")
        assert rabbit.wait_for(lambda: len(recorder.calls) >= 2, 10), agent.log()
        assert recorder.calls[1] == {"host_uuid": "AAAA-1", "device_plugins": []}
        gone = wait_value(url, "sysinv_gpu_agent_reports_total", lambda v: v >= 2, outcome="sent")
        assert gone.value("sysinv_gpu_agent_gpus", driver="xe", function="pf") == 0
        assert gone.value("sysinv_gpu_agent_reports_total", outcome="failed") == 0
    finally:
        code = agent.stop(10)
    assert code == 0, agent.log()
    assert len(recorder.calls) == 2  # unchanged state is not re-sent every interval
    assert "Agent stopping" in agent.log()


FAST_RECONNECT = ("[oslo_messaging_rabbit]\nrabbit_retry_interval = 1\nrabbit_retry_backoff = 1\n"
                  "rabbit_interval_max = 2\n")


@pytest.mark.rabbitmq
def test_process_survives_broker_outages(tmp_path: Path,
                                         conductor: tuple[Recorder, str, str]) -> None:
    """Broker absent at start, then back, then gone mid-run and back: keeps running, reports
    what changed meanwhile, exits 0 on SIGTERM. The outage is a TcpProxy in front of the broker."""
    recorder, exchange, topic = conductor
    sysfs = FakeSysfs(tmp_path / "root")
    sysfs.add_gpu("0000:03:00.0")
    proxy = rabbit.TcpProxy(rabbit.free_port())
    config = _write_config(tmp_path / "agent.conf", url=proxy.url, exchange=exchange, topic=topic,
                           sysfs_root=sysfs.sysfs_root, host_uuid="BBBB-2",
                           extra="metrics_address = 127.0.0.1:0\n" + FAST_RECONNECT)
    agent = rabbit.ServiceProcess("sysinv-gpu-agent", ["--config-file", str(config)],
                                  tmp_path / "agent.log").start()
    try:
        url = url_from_log(tmp_path / "agent.log", alive=agent.running)
        assert rabbit.wait_for(lambda: agent.log().count("Connection failed") >= 2, 20), agent.log()
        assert agent.running() and recorder.calls == []
        assert scrape(url).value("sysinv_gpu_agent_last_report_success_timestamp_seconds") == 0
        proxy.start()
        assert rabbit.wait_for(lambda: recorder.calls, 20), agent.log()
        assert recorder.calls == [{"host_uuid": "BBBB-2", "device_plugins": ["intelgpu"]}]
        proxy.stop()
        sysfs.remove_gpu("0000:03:00.0")
        assert rabbit.wait_for(lambda: "unreachable reporting host BBBB-2" in agent.log(),
                               20), agent.log()
        assert agent.running()
        assert scrape(url).value("sysinv_gpu_agent_reports_total", outcome="failed") >= 1
        proxy.start()
        assert rabbit.wait_for(lambda: len(recorder.calls) >= 2, 30), agent.log()
        assert recorder.calls[-1] == {"host_uuid": "BBBB-2", "device_plugins": []}
    finally:
        code = agent.stop(15)
        proxy.stop()
    assert code == 0, agent.log()


def test_process_without_broker_stops_on_sigterm(tmp_path: Path) -> None:
    """Blocked in oslo.messaging's reconnect loop, SIGTERM still ends the agent promptly."""
    sysfs = FakeSysfs(tmp_path / "root")
    url = f"rabbit://guest:guest@127.0.0.1:{rabbit.free_port()}/"
    config = _write_config(tmp_path / "agent.conf", url=url, exchange="sysinv",
                           topic="sysinv.conductor_manager", sysfs_root=sysfs.sysfs_root,
                           host_uuid="CCCC-3", extra=FAST_RECONNECT)
    agent = rabbit.ServiceProcess("sysinv-gpu-agent", ["--config-file", str(config)],
                                  tmp_path / "agent.log").start()
    try:
        assert rabbit.wait_for(lambda: "Connection failed" in agent.log(), 20), agent.log()
        assert agent.running()
    finally:
        code = agent.stop(15)
    assert code == 0, agent.log()


@pytest.mark.rabbitmq
def test_fifo_as_a_devices_vendor_stops_no_report_removal_nor_sigterm(
        tmp_path: Path, conductor: tuple[Recorder, str, str]) -> None:
    """Issue 21 item 11: a FIFO as one device's ``vendor`` gave 0 reports in 30 s, a removed GPU
    was never reported and SIGTERM took 5 s. Now: the other GPU is reported, its removal too,
    and SIGTERM ends the agent within the grace it gives itself."""
    import os
    import time

    recorder, exchange, topic = conductor
    sysfs = FakeSysfs(tmp_path / "root")
    sysfs.add_gpu("0000:03:00.0")
    sysfs.add_gpu("0000:04:00.0", card=1, render=129)
    vendor = sysfs.pci_dir("0000:03:00.0") / "vendor"
    vendor.unlink()
    os.mkfifo(vendor)
    config = _write_config(tmp_path / "agent.conf", url=rabbit.URL, exchange=exchange, topic=topic,
                           sysfs_root=sysfs.sysfs_root, host_uuid="DDDD-4")
    agent = rabbit.ServiceProcess("sysinv-gpu-agent", ["--config-file", str(config)],
                                  tmp_path / "agent.log").start()
    try:
        assert rabbit.wait_for(lambda: recorder.calls, 20), agent.log()
        assert recorder.calls[0] == {"host_uuid": "DDDD-4", "device_plugins": ["intelgpu"]}
        sysfs.remove_gpu("0000:04:00.0")
        assert rabbit.wait_for(lambda: len(recorder.calls) >= 2, 20), agent.log()
        assert recorder.calls[1] == {"host_uuid": "DDDD-4", "device_plugins": []}
        assert "not a regular file" in agent.log()
    finally:
        started = time.monotonic()
        code = agent.stop(15)
        took = time.monotonic() - started
    assert code == 0, agent.log()
    assert took < 5, f"SIGTERM took {took:.1f} s"
