"""Our conductor and a RabbitMQ-based sysinv-conductor on one broker: ours never takes sysinv's calls.

Real RabbitMQ, in a virtual host of its own per test (``rabbitmqctl add_vhost``): queue names
are per vhost, and this test is about the real default queue names (``sysinv.conductor_manager``
is sysinv's, ours is ``[conductor]topic``'s default), which no other test may share. The sysinv
side is tests/fakes/legacy_sysinv.py; our conductor is started as the service does
(``start_rpc_servers``) around a real ConductorManager.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from oslo_config import cfg

from sysinv_ext.cmd import conductor as conductor_cmd
from sysinv_ext.common import constants, rpc
from sysinv_ext.conductor.manager import ConductorManager
from sysinv_ext.conductor.rpcapi import ConductorAPI
from sysinv_ext.conf import agent as agent_conf
from tests.fakes import rabbit
from tests.fakes.legacy_sysinv import LegacyAgentClient, LegacyConductorServer, LegacyRemoteError
from tests.sysinv.conftest import GPU_PLUGINS_2019, HOST_A

pytestmark = pytest.mark.rabbitmq
CALLS = 20


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def vhost() -> Iterator[str]:
    reason = rabbit.broker_unreachable_reason()
    if reason:
        pytest.skip(reason)
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl not installed: cannot make a private virtual host")
    name = "sysinv-gpu-test-" + uuid.uuid4().hex[:10]
    try:
        _ctl("add_vhost", name)
        _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"cannot create a RabbitMQ virtual host: {err}")
    yield name
    _ctl("delete_vhost", name)


class SysinvConductorEndpoint:
    """A few of sysinv-conductor's methods, enough to show who answered."""

    def __init__(self) -> None:
        self.calls = 0

    def iplatform_update_by_ihost(self, context: dict[str, Any], ihost_uuid: str,
                                  imsg_dict: dict[str, Any]) -> str:
        self.calls += 1
        return "sysinv-conductor"


def _start(conf: cfg.ConfigOpts, manager: ConductorManager, topic: str | None) -> Any:
    if topic is not None:
        conf.set_override("topic", topic, "conductor")
    servers = conductor_cmd.start_rpc_servers(conf, manager, threading.Event())
    assert servers.started.wait(30), "our conductor did not connect to RabbitMQ"
    return servers


def _sysinv_calls(url: str) -> list[Any]:
    client = LegacyAgentClient(url)  # sysinv's agent: exchange sysinv, topic sysinv.conductor_manager
    outcomes: list[Any] = []
    for i in range(CALLS):
        try:
            outcomes.append(client.call("iplatform_update_by_ihost",
                                        {"ihost_uuid": f"host-{i}", "imsg_dict": {}}, timeout=10))
        except LegacyRemoteError as err:
            outcomes.append(err)
    return outcomes


def test_default_topics_are_not_sysinvs() -> None:
    conf = cfg.ConfigOpts()
    conductor_cmd.register(conf)
    agent_conf.register_opts(conf)
    conf([], default_config_files=[])
    assert conf.conductor.topic == conf.agent.conductor_topic == constants.GPU_CONDUCTOR_TOPIC
    assert constants.GPU_CONDUCTOR_TOPIC != constants.MANAGER_TOPIC


def test_sysinv_calls_all_reach_sysinv_conductor_and_ours_still_serves(
        vhost: str, conductor_conf: cfg.ConfigOpts, manager: ConductorManager, write_plugins: Any,
        fake_kube: Any) -> None:
    url = f"{rabbit.URL}{vhost}"
    conductor_conf.set_override("transport_url", url)
    write_plugins(GPU_PLUGINS_2019)
    fake_kube.add_node("worker-0", HOST_A)
    sysinv = SysinvConductorEndpoint()
    legacy = LegacyConductorServer(f"amqp://guest:guest@{rabbit.HOST}:{rabbit.PORT}/{vhost}", sysinv).start()
    servers = _start(conductor_conf, manager, None)  # our default topic
    try:
        outcomes = _sysinv_calls(f"amqp://guest:guest@{rabbit.HOST}:{rabbit.PORT}/{vhost}")
        assert outcomes == ["sysinv-conductor"] * CALLS
        assert sysinv.calls == CALLS
        # our agent, with its default topic, reaches our conductor on the same broker
        transport = rpc.get_transport(conductor_conf)
        try:
            api = ConductorAPI(transport, agent_conf_default_topic(), timeout=10, retry=1)
            result = api.device_plugin_labels_update_by_ihost({}, HOST_A, {"intelgpu": "enabled"})
        finally:
            transport.cleanup()
        assert result["labels"] == {"intelgpu": "enabled"}
    finally:
        conductor_cmd.stop_rpc_servers(servers)
        legacy.stop()


def test_sysinv_topic_is_possible_but_warned_and_splits_sysinvs_calls(
        vhost: str, conductor_conf: cfg.ConfigOpts, manager: ConductorManager,
        caplog: pytest.LogCaptureFixture) -> None:
    """What the default prevents: two consumers on sysinv's queue share its calls."""
    conductor_conf.set_override("transport_url", f"{rabbit.URL}{vhost}")
    kombu_url = f"amqp://guest:guest@{rabbit.HOST}:{rabbit.PORT}/{vhost}"
    sysinv = SysinvConductorEndpoint()
    legacy = LegacyConductorServer(kombu_url, sysinv).start()
    with caplog.at_level(logging.WARNING, logger=conductor_cmd.__name__):
        servers = _start(conductor_conf, manager, constants.MANAGER_TOPIC)
    try:
        assert any("sysinv's own sysinv.conductor_manager" in r.getMessage() and "NoSuchMethod"
                   in r.getMessage() for r in caplog.records)
        outcomes = _sysinv_calls(kombu_url)
        failed = [o for o in outcomes if isinstance(o, LegacyRemoteError)]
        assert failed and sysinv.calls == CALLS - len(failed)
        assert all(o.exc_type == "NoSuchMethod" for o in failed), failed
    finally:
        conductor_cmd.stop_rpc_servers(servers)
        legacy.stop()


def agent_conf_default_topic() -> str:
    conf = cfg.ConfigOpts()
    agent_conf.register_opts(conf)
    conf([], default_config_files=[])
    return str(conf.agent.conductor_topic)
