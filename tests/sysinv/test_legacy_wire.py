"""Wire compatibility with sysinv's legacy AMQP RPC, over the real RabbitMQ broker.

The legacy side is emulated by tests/fakes/legacy_sysinv.py (kombu, written from sysinv's
amqp.py/impl_kombu.py); our side is the real sysinv_ext.common.rpc + ConductorAPI. Each test
uses its own exchange and topic. Covers: legacy agent -> our server (msg_id reply queue and
single reply queue, result and typed failure) and our client -> legacy conductor (result,
2019/2023 payloads, failure without 'ending' is final, version 1.2 rejected).
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import oslo_messaging as messaging
import pytest
from oslo_config import cfg
from oslo_messaging import opts as messaging_opts

from sysinv_ext.common import compat, exception, rpc
from sysinv_ext.conductor.rpcapi import ConductorAPI
from tests.fakes import rabbit
from tests.fakes.legacy_sysinv import (
    LegacyAgentClient,
    LegacyConductorServer,
    LegacyRemoteError,
    LegacyTimeout,
)

pytestmark = pytest.mark.rabbitmq

_REASON = rabbit.broker_unreachable_reason()
if _REASON:
    pytestmark = [pytest.mark.rabbitmq, pytest.mark.skip(reason=_REASON)]


class Names:
    def __init__(self) -> None:
        self.exchange = rabbit.unique_name("sysinv")
        self.topic = rabbit.unique_name("sysinv.conductor_manager")


@pytest.fixture
def names() -> Iterator[Names]:
    n = Names()
    yield n
    rabbit.delete(queues=[n.topic, f"{n.topic}.ctl-0"], exchanges=[n.exchange])


@pytest.fixture
def conf(names: Names) -> cfg.ConfigOpts:
    c = cfg.ConfigOpts()
    rpc.register_opts(c)
    c([], project="sysinv-test")
    c.set_override("transport_url", rabbit.URL)
    c.set_override("control_exchange", names.exchange)
    return c


class StubConductor:
    """Stands in for ConductorManager's endpoint; records calls, returns a marker."""

    target = messaging.Target(version="1.1")

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def device_plugin_labels_update_by_ihost(self, context: dict[str, Any], host_uuid: str,
                                             device_plugins: Any = None,
                                             device_plugin_labels: Any = None) -> Any:
        self.calls.append((context, {"host_uuid": host_uuid, "device_plugins": device_plugins,
                                     "device_plugin_labels": device_plugin_labels}))
        if host_uuid == "unknown":
            raise exception.HostNotFound(host_uuid=host_uuid)
        return {"handled": host_uuid}


@pytest.fixture
def our_server(conf: cfg.ConfigOpts, names: Names) -> Iterator[StubConductor]:
    stub = StubConductor()
    server = rpc.get_server(conf, messaging.Target(topic=names.topic, server="ctl-0"), [stub])
    server.start()
    yield stub
    rpc.stop_server(server)


@pytest.mark.parametrize("single_reply_queue", [False, True], ids=["msg_id-queue", "reply-queue"])
def test_legacy_agent_gets_reply_from_our_conductor(our_server: StubConductor, names: Names,
                                                   single_reply_queue: bool) -> None:
    client = LegacyAgentClient(rabbit.KOMBU_URL, names.exchange, names.topic,
                               single_reply_queue=single_reply_queue)
    result = client.call("device_plugin_labels_update_by_ihost",
                         {"host_uuid": "h-1", "device_plugins": ["intelgpu"]},
                         context={"user": "admin", "request_id": "req-1"}, timeout=10)
    assert result == {"handled": "h-1"}
    assert "_reply_q" in client.sent[0] if single_reply_queue else "_reply_q" not in client.sent[0]
    ctx, args = our_server.calls[0]
    assert args == {"host_uuid": "h-1", "device_plugins": ["intelgpu"], "device_plugin_labels": None}
    assert ctx["user"] == "admin" and ctx["request_id"] == "req-1"


def test_legacy_agent_2019_payload_reaches_our_conductor(our_server: StubConductor,
                                                         names: Names) -> None:
    labels = [{"label_key": "intelgpu", "label_value": "enabled"}]
    LegacyAgentClient(rabbit.KOMBU_URL, names.exchange, names.topic).call(
        "device_plugin_labels_update_by_ihost", {"host_uuid": "h-2", "device_plugin_labels": labels})
    assert our_server.calls[0][1]["device_plugin_labels"] == labels


@pytest.mark.parametrize("single_reply_queue", [False, True], ids=["msg_id-queue", "reply-queue"])
def test_legacy_agent_gets_failure_promptly(our_server: StubConductor, names: Names,
                                            single_reply_queue: bool) -> None:
    client = LegacyAgentClient(rabbit.KOMBU_URL, names.exchange, names.topic,
                               single_reply_queue=single_reply_queue)
    started = time.monotonic()
    with pytest.raises(LegacyRemoteError) as err:
        client.call("device_plugin_labels_update_by_ihost",
                    {"host_uuid": "unknown", "device_plugins": []}, timeout=20)
    assert err.value.exc_type == "HostNotFound"
    assert err.value.module == "sysinv_ext.common.exception"
    assert time.monotonic() - started < 10


class ServerNotFound(Exception):
    """Like sysinv.common.exception.ServerNotFound: a module callers do not allow."""


class LegacyEndpoint:
    """The legacy conductor's manager method (sysinv 2019/2023 signatures accepted)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def device_plugin_labels_update_by_ihost(self, context: dict[str, Any], host_uuid: str,
                                             **payload: Any) -> Any:
        self.calls.append({"host_uuid": host_uuid, **payload})
        if host_uuid == "boom":
            raise ServerNotFound("Server boom could not be found.")
        return None if host_uuid.startswith("none") else "ok:" + host_uuid


@pytest.fixture
def legacy_conductor(names: Names) -> Iterator[LegacyConductorServer]:
    server = LegacyConductorServer(rabbit.KOMBU_URL, LegacyEndpoint(), exchange=names.exchange,
                                   topic=names.topic).start()
    yield server
    server.stop()


@pytest.fixture
def transport(conf: cfg.ConfigOpts) -> Iterator[messaging.Transport]:
    t = rpc.get_transport(conf)
    yield t
    t.cleanup()


@pytest.mark.parametrize(("payload_format", "keyword", "value"), [
    ("2023", "device_plugins", ["intelgpu"]),
    ("2019", "device_plugin_labels", [{"label_key": "intelgpu", "label_value": "enabled"}]),
])
def test_our_agent_calls_legacy_conductor(legacy_conductor: LegacyConductorServer,
                                          transport: messaging.Transport, names: Names,
                                          payload_format: str, keyword: str, value: Any) -> None:
    api = ConductorAPI(transport, names.topic, timeout=10, retry=1,
                       payload_format=payload_format)  # type: ignore[arg-type]
    assert api.device_plugin_labels_update_by_ihost({}, "h-3", {"intelgpu": "enabled"}) == "ok:h-3"
    request = legacy_conductor.received[0]
    assert request["version"] == "1.0" and request["method"] == "device_plugin_labels_update_by_ihost"
    assert request["args"] == {"host_uuid": "h-3", keyword: value}
    assert request["_reply_q"].startswith("reply_")


def test_our_agent_gets_none_result_from_legacy_conductor(
        legacy_conductor: LegacyConductorServer, transport: messaging.Transport,
        names: Names) -> None:
    # sysinv's conductor returns None; its result message has no 'ending' key (shim c).
    api = ConductorAPI(transport, names.topic, timeout=10, retry=1)
    started = time.monotonic()
    assert api.device_plugin_labels_update_by_ihost({}, "none-1", {}) is None
    assert time.monotonic() - started < 5
    assert legacy_conductor.endpoint.calls == [{"host_uuid": "none-1", "device_plugins": []}]


def test_legacy_conductor_failure_is_final_not_a_timeout(
        legacy_conductor: LegacyConductorServer, transport: messaging.Transport,
        names: Names) -> None:
    api = ConductorAPI(transport, names.topic, timeout=20, retry=1)
    started = time.monotonic()
    with pytest.raises(messaging.RemoteError) as err:
        api.device_plugin_labels_update_by_ihost({}, "boom", {"intelgpu": "enabled"})
    assert err.value.exc_type == "ServerNotFound"
    assert "could not be found" in str(err.value)
    assert time.monotonic() - started < 5
    # the legacy server sent exactly one message, without 'ending'
    assert [m for _, m in legacy_conductor.replies if m.get("ending")] == []


def test_legacy_conductor_rejects_version_1_2(legacy_conductor: LegacyConductorServer,
                                               transport: messaging.Transport,
                                               names: Names) -> None:
    client = rpc.get_client(transport, messaging.Target(topic=names.topic, version="1.2"),
                            timeout=10, retry=1)
    with pytest.raises(messaging.RemoteError) as err:
        client.call({}, "device_plugin_labels_update_by_ihost", host_uuid="h", device_plugins=[])
    assert err.value.exc_type == "UnsupportedRpcVersion"
    assert legacy_conductor.endpoint.calls == []


@pytest.fixture
def without_shims() -> Iterator[None]:
    compat.uninstall()
    try:
        yield
    finally:
        compat.install()


def test_without_shim_a_legacy_agent_times_out(conf: cfg.ConfigOpts, names: Names,
                                               without_shims: None) -> None:
    """Control: plain oslo.messaging 18 answers no legacy msg_id-queue client."""
    for group, opts in messaging_opts.list_opts():
        if group == "oslo_messaging_rabbit":
            conf.register_opts(opts, group=group)
    # the unanswerable reply is retried for this long before the server gives up on it
    conf.set_override("kombu_missing_consumer_retry_timeout", 1, group="oslo_messaging_rabbit")
    server = rpc.get_server(conf, messaging.Target(topic=names.topic, server="ctl-0"),
                            [StubConductor()], transport=messaging.get_rpc_transport(conf))
    server.start()
    try:
        with pytest.raises(LegacyTimeout):
            LegacyAgentClient(rabbit.KOMBU_URL, names.exchange, names.topic).call(
                "device_plugin_labels_update_by_ihost",
                {"host_uuid": "h", "device_plugins": []}, timeout=3)
    finally:
        rpc.stop_server(server)


def test_without_shims_our_agent_times_out_on_legacy_conductor(
        legacy_conductor: LegacyConductorServer, conf: cfg.ConfigOpts, names: Names,
        without_shims: None) -> None:
    """Control: plain oslo.messaging 18 never sees the legacy server's reply."""
    plain = messaging.get_rpc_transport(conf)
    try:
        api = ConductorAPI(plain, names.topic, timeout=3, retry=1)
        with pytest.raises(messaging.MessagingTimeout):
            api.device_plugin_labels_update_by_ihost({}, "h-4", {"intelgpu": "enabled"})
        assert legacy_conductor.endpoint.calls  # the request itself did arrive
    finally:
        plain.cleanup()


@pytest.mark.parametrize("single_reply_queue", [False, True], ids=["msg_id-queue", "reply-queue"])
def test_legacy_agent_to_our_real_conductor_manager(
        conductor_conf: cfg.ConfigOpts, fake_kube: Any, write_plugins: Any, names: Names,
        single_reply_queue: bool) -> None:
    """The real ConductorManager (Kubernetes emulated by tests/fakes/kube_api.py) served on
    RabbitMQ answers both legacy payload forms and the legacy failure path."""
    from tests.sysinv.conftest import make_manager

    host = "4C4C4544-0042-3510-8051-B4C04F4A4E31"
    fake_kube.add_node("worker-0", host.lower())
    write_plugins({"intel-gpu-plugin": "intelgpu=enabled"})
    conductor_conf.set_override("transport_url", rabbit.URL)
    conductor_conf.set_override("control_exchange", names.exchange)
    manager = make_manager(conductor_conf)
    server = rpc.get_server(conductor_conf, messaging.Target(topic=names.topic, server="ctl-0"),
                            [manager])
    server.start()
    try:
        client = LegacyAgentClient(rabbit.KOMBU_URL, names.exchange, names.topic,
                                   single_reply_queue=single_reply_queue)
        result = client.call("device_plugin_labels_update_by_ihost",
                             {"host_uuid": host, "device_plugin_labels": [
                                 {"label_key": "intelgpu", "label_value": "enabled"}]})
        assert result["node"] == "worker-0"
        assert fake_kube.node_labels("worker-0").get("intelgpu") == "enabled"
        client.call("device_plugin_labels_update_by_ihost",
                    {"host_uuid": host, "device_plugins": []})
        assert "intelgpu" not in fake_kube.node_labels("worker-0")
        with pytest.raises(LegacyRemoteError) as err:
            client.call("device_plugin_labels_update_by_ihost",
                        {"host_uuid": host, "device_plugins": "intelgpu"}, timeout=10)
        assert err.value.exc_type == "InvalidPayload"
    finally:
        rpc.stop_server(server)
        manager.close()  # its node-watch thread must not outlive the test
        manager.engine.dispose()
