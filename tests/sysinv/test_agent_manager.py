"""sysinv_ext.agent.manager on a fake sysfs (tests/fakes/sysfs.py).

End to end through ``fake:/`` (real ConductorAPI, a recording conductor endpoint), and with a
failing reporter standing in for ConductorAPI at our module boundary to drive the retry logic:
reports at start, on change (also the empty set), never marked reported before success,
capped backoff, host UUID sources, udev wake-ups, and a loop that never dies.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from sysinv_ext.agent import udev
from sysinv_ext.agent.manager import AgentManager
from sysinv_ext.common import exception, rpc
from sysinv_ext.conductor import rpcapi
from sysinv_ext.conf import agent as agent_conf
from tests.fakes.sysfs import FakeSysfs

HOST = "4c4c4544-0042-3510-8052-b4c04f4e4b32"


@pytest.fixture
def sysfs(tmp_path: Path) -> FakeSysfs:
    fake = FakeSysfs(tmp_path)
    fake.set_product_uuid(HOST.upper())
    return fake


@pytest.fixture
def conf(sysfs: FakeSysfs) -> cfg.ConfigOpts:
    c = cfg.ConfigOpts()
    agent_conf.register_opts(c)
    rpc.register_opts(c)
    c([], project="sysinv-test")
    c.set_override("sysfs_root", sysfs.sysfs_root, group="agent")
    c.set_override("retry_backoff_max", 8, group="agent")
    c.set_override("transport_url", "fake:/")
    return c


class ScriptedReporter:
    """Stands in for ConductorAPI: raises the scripted errors first, then records successes."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.attempts: list[tuple[str, dict[str, str]]] = []
        self.delivered: list[tuple[str, dict[str, str]]] = []
        self.event = threading.Event()

    def device_plugin_labels_update_by_ihost(self, context: Any, host_uuid: rpcapi.HostUUID,
                                             labels: Mapping[str, str]) -> None:
        self.attempts.append((host_uuid, dict(labels)))
        if self.errors:
            raise self.errors.pop(0)
        self.delivered.append((host_uuid, dict(labels)))
        self.event.set()


def test_reports_at_start_even_when_empty(conf: cfg.ConfigOpts) -> None:
    reporter = ScriptedReporter()
    manager = AgentManager(conf, reporter)
    assert manager.run_once() == 60
    assert reporter.delivered == [(HOST.upper(), {})]
    assert manager.reported == {}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reports_only_on_change_including_removal(conf: cfg.ConfigOpts, sysfs: FakeSysfs) -> None:
    reporter = ScriptedReporter()
    manager = AgentManager(conf, reporter, clock=FakeClock())
    sysfs.add_gpu("0000:03:00.0", vfs=1)
    manager.run_once()
    manager.run_once()
    assert reporter.delivered == [(HOST.upper(), {"intelgpu": "enabled"})]
    sysfs.remove_gpu("0000:03:00.0")
    manager.run_once()
    manager.run_once()
    assert reporter.delivered[1:] == [(HOST.upper(), {})]


def test_unchanged_set_is_reported_again_each_interval(conf: cfg.ConfigOpts, sysfs: FakeSysfs) -> None:
    """A conductor that dropped a report (plugin enabled later) gets it again without a restart."""
    clock = FakeClock()
    reporter = ScriptedReporter()
    manager = AgentManager(conf, reporter, clock=clock)
    sysfs.add_gpu("0000:03:00.0")
    assert manager.run_once() == 60
    clock.now += 20  # an early wake-up (udev) with nothing changed: no report, wait the rest
    assert manager.run_once() == 40
    assert len(reporter.delivered) == 1
    clock.now += 40  # the interval has passed: the same set is reported again
    assert manager.run_once() == 60
    assert reporter.delivered == [(HOST.upper(), {"intelgpu": "enabled"})] * 2


@pytest.mark.parametrize("error", [
    messaging.MessagingTimeout("no reply"),
    messaging.MessageDeliveryFailure("broker down"),
    messaging.RemoteError("ServerNotFound", "host not found"),
    exception.HostNotFound(host_uuid=HOST),
    exception.InvalidPayload(host_uuid=HOST, reason="x"),
], ids=lambda e: type(e).__name__)
def test_failed_report_retried_until_success(conf: cfg.ConfigOpts, sysfs: FakeSysfs,
                                             error: Exception) -> None:
    sysfs.add_gpu("0000:03:00.0")
    reporter = ScriptedReporter(error, error, error, error, error)
    manager = AgentManager(conf, reporter)
    delays = [manager.run_once() for _ in range(5)]
    assert delays == [1, 2, 4, 8, 8]  # exponential, capped at [agent]retry_backoff_max
    assert manager.reported is None and reporter.delivered == []
    assert manager.run_once() == 60
    assert reporter.delivered == [(HOST.upper(), {"intelgpu": "enabled"})]
    assert manager.reported == {"intelgpu": "enabled"}
    assert len(reporter.attempts) == 6


def test_change_during_outage_reports_latest_state(conf: cfg.ConfigOpts, sysfs: FakeSysfs) -> None:
    sysfs.add_gpu("0000:03:00.0")
    reporter = ScriptedReporter()
    manager = AgentManager(conf, reporter)
    manager.run_once()
    reporter.errors = [messaging.MessageDeliveryFailure("down")]
    sysfs.remove_gpu("0000:03:00.0")
    manager.run_once()
    assert manager.reported == {"intelgpu": "enabled"}  # not yet acknowledged
    manager.run_once()
    assert reporter.delivered[-1] == (HOST.upper(), {})


def test_configured_host_uuid_wins(conf: cfg.ConfigOpts) -> None:
    conf.set_override("host_uuid", " 11111111-2222-3333-4444-555555555555 ", group="agent")
    reporter = ScriptedReporter()
    AgentManager(conf, reporter).run_once()
    assert reporter.delivered[0][0] == "11111111-2222-3333-4444-555555555555"


def test_no_host_uuid_means_no_report_and_backoff(conf: cfg.ConfigOpts, sysfs: FakeSysfs,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    (Path(sysfs.sysfs_root) / "class/dmi/id/product_uuid").unlink()
    reporter = ScriptedReporter()
    manager = AgentManager(conf, reporter)
    assert [manager.run_once(), manager.run_once()] == [1, 2]
    assert reporter.attempts == []
    assert "No host UUID" in caplog.text


def test_unlistable_pci_devices_keep_last_report_and_retry(conf: cfg.ConfigOpts, sysfs: FakeSysfs,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A read failure is not "no GPU": no "(none)" report, so the conductor keeps the label."""
    clock = FakeClock()
    reporter = ScriptedReporter()
    manager = AgentManager(conf, reporter, clock=clock)
    sysfs.add_gpu("0000:03:00.0")
    assert manager.run_once() == 60
    devices = Path(sysfs.sysfs_root) / "bus" / "pci" / "devices"
    hidden = devices.with_name("devices.hidden")
    devices.rename(hidden)
    devices.write_text("")  # cannot be listed
    clock.now += 120  # a periodic re-report would be due
    assert [manager.run_once(), manager.run_once(), manager.run_once()] == [1, 2, 4]
    assert reporter.attempts == [(HOST.upper(), {"intelgpu": "enabled"})]
    assert manager.reported == {"intelgpu": "enabled"}
    assert "Cannot list PCI devices" in caplog.text and "keeping the last report" in caplog.text
    devices.unlink()
    hidden.rename(devices)
    assert manager.run_once() == 60
    assert reporter.delivered[-1] == (HOST.upper(), {"intelgpu": "enabled"})


@pytest.fixture
def fake_conductor(conf: cfg.ConfigOpts) -> Iterator[tuple[messaging.Transport, list[Any]]]:
    calls: list[Any] = []

    class Endpoint:
        target = messaging.Target(version="1.1")

        def device_plugin_labels_update_by_ihost(self, ctxt: Any, host_uuid: str,
                                                 device_plugins: Any = None,
                                                 device_plugin_labels: Any = None) -> None:
            calls.append((host_uuid, device_plugins, device_plugin_labels))

    transport = rpc.get_transport(conf)
    server = rpc.get_server(conf, messaging.Target(topic=conf.agent.conductor_topic, server="c"),
                            [Endpoint()], transport=transport)
    server.start()
    yield transport, calls
    rpc.stop_server(server)


@pytest.mark.parametrize(("payload_format", "expected"), [
    ("2023", (["intelgpu"], None)),
    ("2019", (None, [{"label_key": "intelgpu", "label_value": "enabled"}])),
])
def test_loop_over_fake_transport_reports_and_wakes_on_udev(
        conf: cfg.ConfigOpts, sysfs: FakeSysfs, fake_conductor: tuple[messaging.Transport, list[Any]],
        payload_format: str, expected: tuple[Any, Any]) -> None:
    transport, calls = fake_conductor
    api = rpcapi.ConductorAPI(transport, conf.agent.conductor_topic, timeout=5,
                              payload_format=payload_format)  # type: ignore[arg-type]
    manager = AgentManager(conf, api)
    worker = threading.Thread(target=manager.run)
    worker.start()
    try:
        assert _wait(lambda: len(calls) == 1)
        assert calls[0] == (HOST.upper(), [] if payload_format == "2023" else None,
                            None if payload_format == "2023" else [])
        sysfs.add_gpu("0000:03:00.0")
        manager.wake()  # what a udev event does; report_interval is 60 s
        assert _wait(lambda: len(calls) == 2)
        assert calls[1] == (HOST.upper(), *expected)
    finally:
        manager.stop()
        worker.join(5)
    assert not worker.is_alive()


def test_loop_survives_unexpected_errors(conf: cfg.ConfigOpts,
                                         caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[int] = []

    def detect(_root: str) -> dict[str, str]:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("sysfs exploded")
        return {}

    reporter = ScriptedReporter()
    manager = AgentManager(conf, reporter, detect=detect)
    worker = threading.Thread(target=manager.run)
    worker.start()
    try:
        assert reporter.event.wait(5)  # retried after 1 s backoff, then reported
    finally:
        manager.stop()
        worker.join(5)
    assert "Agent pass failed" in caplog.text and reporter.delivered == [(HOST.upper(), {})]


def test_udev_watcher_calls_back_and_stops() -> None:
    woken = threading.Event()
    watcher = udev.UdevWatcher(woken.set)
    started = watcher.start()  # True where netlink works, False elsewhere: both are fine
    watcher._event(type("Dev", (), {"action": "add", "sys_path": "/sys/devices/x"})())
    assert woken.is_set()
    watcher.stop()
    assert isinstance(started, bool)


def test_udev_unavailable_is_harmless(monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pyudev(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pyudev":
            raise ImportError("No module named 'pyudev'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyudev)
    watcher = udev.UdevWatcher(lambda: None)
    with caplog.at_level(logging.INFO):
        assert watcher.start() is False
    watcher.stop()
    assert "relying on periodic rescans" in caplog.text


def _wait(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_metrics_count_gpus_by_driver_and_function_and_reports(conf: cfg.ConfigOpts,
                                                              sysfs: FakeSysfs) -> None:
    """The default detection path feeds the GPU gauge; each report outcome is counted."""
    from prometheus_client import CollectorRegistry

    from sysinv_ext.agent.metrics import agent_metrics

    sysfs.add_gpu("0000:03:00.0", vfs=2)
    sysfs.add_gpu("0000:04:00.0", card=4, render=132, driver="xe", pci_class="0x038000")
    registry = CollectorRegistry()
    reporter = ScriptedReporter(messaging.MessagingTimeout("no conductor"))
    manager = AgentManager(conf, reporter, metrics=agent_metrics(registry, wall_clock=lambda: 1234.0))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    manager.run_once()  # first report fails
    assert value("sysinv_gpu_agent_gpus", driver="i915", function="vf") == 2
    assert value("sysinv_gpu_agent_gpus", driver="i915", function="pf") == 1
    assert value("sysinv_gpu_agent_gpus", driver="xe", function="pf") == 1
    assert value("sysinv_gpu_agent_reports_total", outcome="failed") == 1
    assert value("sysinv_gpu_agent_last_report_success_timestamp_seconds") == 0
    manager.run_once()
    assert value("sysinv_gpu_agent_reports_total", outcome="sent") == 1
    assert value("sysinv_gpu_agent_last_report_success_timestamp_seconds") == 1234.0


@pytest.mark.parametrize("error", [
    messaging.RemoteError("Boom" * 100, "x" * 2_000_000),
    messaging.MessagingTimeout("y" * 2_000_000),
    messaging.MessagingException("z" * 2_000_000),
], ids=lambda e: type(e).__name__)
def test_huge_conductor_error_does_not_flood_the_agent_log(conf: cfg.ConfigOpts, sysfs: FakeSysfs,
                                                           caplog: pytest.LogCaptureFixture,
                                                           error: Exception) -> None:
    """A hostile or legacy conductor's 2 MB error text: one bounded line per retry."""
    sysfs.add_gpu("0000:03:00.0")
    manager = AgentManager(conf, ScriptedReporter(error, error))
    with caplog.at_level("WARNING"):
        manager.run_once()
        manager.run_once()
    lines = [r.getMessage() for r in caplog.records if HOST.upper() in r.getMessage()]
    assert len(lines) == 2
    assert all(len(line) < 1_000 for line in lines), [len(line) for line in lines]
    assert all("chars)" in line for line in lines)
