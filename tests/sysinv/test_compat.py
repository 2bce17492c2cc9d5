"""sysinv_ext.common.compat: the legacy sysinv wire shims, without a broker.

Fails if oslo.messaging changes under the shims (version series, signatures, the listener's
message class); exercises each shim on oslo.messaging's own classes with a recording connection
(a, c) and kombu's in-memory transport (b). The real-broker behaviour is in test_legacy_wire.py.
"""
from __future__ import annotations

import importlib.metadata
import sys
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import kombu
import pytest
from oslo_messaging._drivers import amqpdriver, impl_rabbit
from oslo_messaging._drivers import common as rpc_common

from sysinv_ext.common import compat


@pytest.fixture(autouse=True)
def shims() -> Iterator[None]:
    compat.install()
    yield
    compat.install()


def test_pinned_oslo_messaging_series() -> None:
    assert importlib.metadata.version("oslo.messaging").startswith(compat.SUPPORTED_SERIES)
    compat.check()
    assert compat.installed()


def test_install_is_idempotent() -> None:
    compat.install()
    compat.install()
    assert amqpdriver.RpcAMQPListener.message_cls is compat.LegacyAwareIncomingMessage
    compat.uninstall()
    assert not compat.installed()
    assert amqpdriver.RpcAMQPListener.message_cls is amqpdriver.AMQPIncomingMessage


def test_other_version_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    compat.uninstall()
    monkeypatch.setattr(compat.importlib.metadata, "version", lambda _name: "19.0.0")
    with pytest.raises(compat.IncompatibleOsloMessaging, match="18.3.x only.*found 19.0.0"):
        compat.install()
    assert not compat.installed()


def test_changed_signature_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def _process_reply(self: Any, data: Any, extra: Any) -> None: ...

    compat.uninstall()
    monkeypatch.setattr(amqpdriver.ReplyWaiter, "_process_reply", _process_reply)
    with pytest.raises(compat.IncompatibleOsloMessaging, match="ReplyWaiter._process_reply"):
        compat.check()


def test_missing_internal_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(impl_rabbit.Connection, "declare_direct_consumer")
    with pytest.raises(compat.IncompatibleOsloMessaging, match="declare_direct_consumer is gone"):
        compat.check()


class RecordingConn:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def direct_send(self, queue: str, msg: dict[str, Any]) -> None:
        self.sent.append((queue, rpc_common.deserialize_msg(msg)))


def _incoming(msg_id: str, reply_q: str | None) -> Any:
    return compat.LegacyAwareIncomingMessage(
        SimpleNamespace(), {}, {}, "unique", msg_id, reply_q, None,
        amqpdriver.ObsoleteReplyQueuesCache(), None)


def test_shim_a_legacy_request_answered_on_msg_id_queue_in_two_messages() -> None:
    conn = RecordingConn()
    _incoming("abc123", None)._send_reply(conn, {"x": 1})
    assert [q for q, _ in conn.sent] == ["abc123", "abc123"]
    (_, first), (_, second) = conn.sent
    assert first["result"] == {"x": 1} and not first["ending"] and first["failure"] is None
    assert second["ending"] is True and second["result"] is None


def test_shim_a_legacy_failure_is_one_message() -> None:
    conn = RecordingConn()
    try:
        raise ValueError("nope")
    except ValueError:
        _incoming("abc123", None)._send_reply(conn, None, sys.exc_info())
    (queue, msg), = conn.sent
    assert queue == "abc123" and "nope" in msg["failure"]


def test_shim_a_modern_request_unchanged() -> None:
    conn = RecordingConn()
    _incoming("abc123", "reply_ffff")._send_reply(conn, "r")
    (queue, msg), = conn.sent
    assert queue == "reply_ffff" and msg["result"] == "r" and msg["ending"] is True


def _waiter() -> Any:
    waiter = object.__new__(amqpdriver.ReplyWaiter)
    waiter.msg_id_cache = amqpdriver.rpc_amqp._MsgIdCache()
    waiter.allowed_remote_exmods = []
    return waiter


@pytest.mark.parametrize(("data", "final"), [
    ({"result": "r", "failure": None, "ending": True}, True),     # modern reply
    ({"result": None, "failure": None, "ending": False}, False),  # modern heartbeat
    ({"result": "r", "failure": None}, True),                     # legacy result
    ({"result": None, "failure": None}, True),                    # legacy None result
])
def test_shim_c_legacy_reply_is_final(data: dict[str, Any], final: bool) -> None:
    assert _waiter()._process_reply(dict(data)) == (data["result"], final)


def test_shim_c_legacy_failure_is_final() -> None:
    failure = rpc_common.serialize_remote_exception((ValueError, ValueError("bad"), None))
    result, ending = _waiter()._process_reply({"result": None, "failure": failure})
    assert isinstance(result, ValueError) and ending is True


def test_shim_c_without_shim_legacy_reply_waits() -> None:
    compat.uninstall()
    assert _waiter()._process_reply({"result": "r", "failure": None}) == ("r", False)


def _memory_consumer(queue_name: str, exchange_name: str = "") -> tuple[Any, Any]:
    connection = kombu.Connection("memory://")
    channel = connection.channel()
    conn = SimpleNamespace(channel=channel, connection=connection, connection_id="mem")
    consumer = impl_rabbit.Consumer(exchange_name=exchange_name, queue_name=queue_name,
                                    routing_key="", type="direct", durable=False,
                                    exchange_auto_delete=False, queue_auto_delete=False,
                                    callback=None)
    consumer.declare(conn)
    return channel, consumer


def _bound_queues(channel: Any, exchange: str, routing_key: str) -> list[str]:
    return list(channel._lookup(exchange, routing_key))


def _reply_name() -> str:
    return "reply_" + uuid.uuid4().hex  # kombu's memory broker state is process-wide


def test_shim_b_reply_queue_bound_to_legacy_exchange() -> None:
    name = _reply_name()
    channel, consumer = _memory_consumer(name)
    assert _bound_queues(channel, name, name) == [name]
    exchange = channel.state.exchanges[name]
    assert exchange["type"] == "direct" and exchange["durable"] is False
    assert exchange["auto_delete"] is True


def test_shim_b_other_queues_untouched() -> None:
    topic = "sysinv.conductor_manager." + uuid.uuid4().hex
    channel, _ = _memory_consumer(topic, exchange_name="sysinv-" + topic)
    assert topic not in channel.state.exchanges


def test_shim_b_absent_without_shims() -> None:
    compat.uninstall()
    name = _reply_name()
    channel, _ = _memory_consumer(name)
    assert name not in channel.state.exchanges
