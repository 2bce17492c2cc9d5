"""Real ``sysinv-gpu-agent`` and ``sysinv-gpu-conductor`` processes over the real RabbitMQ broker.

EMULATED: the Kubernetes API (tests/fakes/kube_api.py, fixtures from conftest.py), sysfs
(tests/fakes/sysfs.py), and broker outages (tests/fakes/rabbit.py TcpProxy in front of the real
broker, so other tests' connections are untouched). Real: both services, oslo.messaging over
AMQP, the conductor's SQLite database. Own exchange and topic. One flow: GPU seen -> node label;
GPU removed -> label removed; broker outage with a change meanwhile -> both recover; conductor
restart -> recorded labels kept (its audit re-applies them without any new report).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import rabbit
from tests.fakes.kube_api import FakeKubeAPI
from tests.fakes.sysfs import FakeSysfs

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

HOST_UUID = "4C4C4544-0042-3510-8052-B4C04F4E4B32"
NODE = "worker-0"
FAST_RECONNECT = ("[oslo_messaging_rabbit]\nrabbit_retry_interval = 1\nrabbit_retry_backoff = 1\n"
                  "rabbit_interval_max = 2\n")


@pytest.fixture
def broker() -> Iterator[tuple[rabbit.TcpProxy, str, str]]:
    reason = rabbit.broker_unreachable_reason()
    if reason:
        pytest.skip(reason)
    exchange, topic = rabbit.unique_name("sysinv"), rabbit.unique_name("sysinv.conductor_manager")
    proxy = rabbit.TcpProxy(rabbit.free_port()).start()
    yield proxy, exchange, topic
    proxy.stop()
    rabbit.delete(queues=[topic, f"{topic}.ctl-0"], exchanges=[exchange])


def _configs(tmp_path: Path, url: str, exchange: str, topic: str, kubeconfig: Path,
             sysfs: FakeSysfs) -> tuple[Path, Path]:
    plugins = tmp_path / "platform" / "enabled_kube_plugins"
    plugins.parent.mkdir()
    plugins.write_text(json.dumps({"intel-gpu-plugin": "intelgpu=enabled"}))
    common = f"[DEFAULT]\ntransport_url = {url}\ncontrol_exchange = {exchange}\n" + FAST_RECONNECT
    conductor = tmp_path / "conductor.conf"
    conductor.write_text(
        common + f"[conductor]\ntopic = {topic}\nhost = ctl-0\nenabled_kube_plugins = {plugins}\n"
        f"state_path = {tmp_path}/state\naudit_interval = 1\n"
        f"[database]\nconnection = sqlite:///{tmp_path}/conductor.sqlite\n"
        f"[kubernetes]\nkubeconfig = {kubeconfig}\nretry_backoff = 0.01\n")
    agent = tmp_path / "agent.conf"
    agent.write_text(
        common + f"[agent]\nsysfs_root = {sysfs.sysfs_root}\nconductor_topic = {topic}\n"
        "report_interval = 1\nrpc_timeout = 5\nrpc_retry = 1\nretry_backoff_max = 2\n"
        "udev_events = false\n")
    return conductor, agent


def _label(kube: FakeKubeAPI) -> str | None:
    return kube.node_labels(NODE).get("intelgpu")


def test_agent_conductor_flow(tmp_path: Path, fake_kube: FakeKubeAPI, kubeconfig: Path,
                              broker: tuple[rabbit.TcpProxy, str, str]) -> None:
    proxy, exchange, topic = broker
    fake_kube.add_node(NODE, HOST_UUID.lower(), {"kubernetes.io/hostname": NODE})
    sysfs = FakeSysfs(tmp_path / "root")
    sysfs.set_product_uuid(HOST_UUID)
    sysfs.add_gpu("0000:03:00.0", vfs=2)
    conductor_conf, agent_conf = _configs(tmp_path, proxy.url, exchange, topic, kubeconfig, sysfs)
    conductor = rabbit.ServiceProcess("sysinv-gpu-conductor", ["--config-file", str(conductor_conf)],
                                      tmp_path / "conductor.log").start()
    agent = rabbit.ServiceProcess("sysinv-gpu-agent", ["--config-file", str(agent_conf)],
                                  tmp_path / "agent.log").start()
    logs = lambda: "--- conductor\n" + conductor.log() + "\n--- agent\n" + agent.log()  # noqa: E731
    try:
        # 1. GPU seen -> label on the node whose systemUUID matches
        assert rabbit.wait_for(lambda: _label(fake_kube) == "enabled", 30), logs()
        # 2. GPU gone -> empty report -> label removed (StarlingX never removed it)
        sysfs.remove_gpu("0000:03:00.0")
        assert rabbit.wait_for(lambda: _label(fake_kube) is None, 15), logs()
        # 3. broker outage for both services; the GPU comes back meanwhile
        failures_before = agent.log().count("unreachable reporting host")
        proxy.stop()
        sysfs.add_gpu("0000:03:00.0")
        assert rabbit.wait_for(
            lambda: agent.log().count("unreachable reporting host") > failures_before, 20), logs()
        assert _label(fake_kube) is None
        proxy.start()
        assert rabbit.wait_for(lambda: _label(fake_kube) == "enabled", 30), logs()
        assert agent.running() and conductor.running()
        # 4. conductor restart keeps its state: with no new report, its audit re-applies the
        #    recorded label after someone removed it from the node. The agent re-reports every
        #    report_interval, so it is stopped first and its queued messages purged: then no
        #    report can reach the new conductor, and only the audit can restore the label.
        assert agent.stop(15) == 0, logs()
        assert conductor.stop(20) == 0, logs()
        rabbit.purge([topic, f"{topic}.ctl-0"])
        node = fake_kube.get_node(NODE)
        assert node is not None
        node["metadata"]["labels"].pop("intelgpu")
        fake_kube.put_object(node)
        conductor_log_before = len(conductor.log())
        conductor = rabbit.ServiceProcess("sysinv-gpu-conductor",
                                          ["--config-file", str(conductor_conf)],
                                          tmp_path / "conductor.log").start()
        assert rabbit.wait_for(lambda: _label(fake_kube) == "enabled", 30), logs()
        # restored by the new conductor itself: its first node LIST (cache) or its audit. The
        # conductor logs after the API server has the patch, so the label can be seen first.
        restored = re.compile(r"Node worker-0 \(host \S+, (watch|audit)\): labels set "
                              r"\{'intelgpu': 'enabled'\}")
        assert rabbit.wait_for(lambda: restored.search(conductor.log()[conductor_log_before:]), 10), \
            conductor.log()[conductor_log_before:]
        restarted_log = conductor.log()[conductor_log_before:]
        assert ", report): labels set" not in restarted_log, logs()  # not by a report
    finally:
        agent_code = agent.stop(15)
        conductor_code = conductor.stop(20)
    assert (agent_code, conductor_code) == (0, 0), logs()
