"""Raw AMQP messages our RPC server cannot decode, published with kombu to the real RabbitMQ
(own exchange and topic, deleted afterwards): not JSON, a JSON list, an envelope version it does
not speak, an envelope whose message is not JSON. Where the message names a reply queue the
caller gets a failure at once (UnsupportedVersion for envelope 99.0) instead of waiting its whole
timeout; every case is one rate-limited log line, no traceback, and the server keeps serving
with bounded threads and file descriptors. Real: oslo.messaging server, compat shims, broker.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kombu
import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from sysinv_ext.common import compat, rpc
from sysinv_ext.conductor.rpcapi import ConductorAPI
from tests.fakes import rabbit

pytestmark = [pytest.mark.rabbitmq]


class Endpoint:
    target = messaging.Target(version="1.1")

    def device_plugin_labels_update_by_ihost(self, context: Any, host_uuid: str,
                                             device_plugins: Any = None,
                                             device_plugin_labels: Any = None) -> Any:
        return {"handled": host_uuid}


class Server:
    def __init__(self, exchange: str, topic: str) -> None:
        self.exchange, self.topic = exchange, topic
        conf = cfg.ConfigOpts()
        rpc.register_opts(conf)
        conf([], project="sysinv-test")
        conf.set_override("transport_url", rabbit.URL)
        conf.set_override("control_exchange", exchange)
        self.server = rpc.get_server(conf, messaging.Target(topic=topic, server="ctl-0"), [Endpoint()])
        self.server.start()
        self.client_transport = rpc.get_transport(conf)
        self.api = ConductorAPI(self.client_transport, topic=topic, timeout=10, retry=0)

    def still_serves(self) -> bool:
        return bool(self.api.device_plugin_labels_update_by_ihost({}, "h-1", {}) == {"handled": "h-1"})

    def close(self) -> None:
        rpc.stop_server(self.server)
        self.client_transport.cleanup()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    reason = rabbit.broker_unreachable_reason()
    if reason:
        pytest.skip(reason)
    monkeypatch.setattr(compat, "_UNDECODABLE_LOG", compat._Throttle(compat.UNDECODABLE_LOG_EVERY))
    srv = Server(rabbit.unique_name("sysinv"), rabbit.unique_name("sysinv.conductor_manager"))
    try:
        assert srv.still_serves()
        yield srv
    finally:
        srv.close()
        rabbit.delete(queues=[srv.topic, f"{srv.topic}.ctl-0"], exchanges=[srv.exchange])


def _raw_call(server: Server, body: bytes, *, reply_name: str | None = None,
              wait: float = 5.0) -> list[dict[str, Any]]:
    """Publish ``body`` as-is (content type JSON) to the server's topic; the replies that
    arrive on ``reply_name`` within ``wait`` seconds (decoded envelopes)."""
    replies: list[dict[str, Any]] = []
    with kombu.Connection(rabbit.KOMBU_URL, connect_timeout=5) as conn:
        channel = conn.channel()
        queue = None
        if reply_name:
            queue = kombu.Queue(name=reply_name, durable=False, auto_delete=True, channel=channel)
            queue.declare()
        exchange = kombu.Exchange(server.exchange, type="topic", durable=False, auto_delete=False)
        kombu.Producer(channel, exchange=exchange, routing_key=server.topic).publish(
            body, content_type="application/json", content_encoding="utf-8", serializer=None)
        if queue is None:
            return replies

        def on_reply(payload: Any, message: Any) -> None:
            envelope = payload if isinstance(payload, dict) else json.loads(payload)
            replies.append(json.loads(envelope["oslo.message"]) if "oslo.message" in envelope
                           else envelope)
            message.ack()

        with kombu.Consumer(channel, queues=[queue], accept=["json"], callbacks=[on_reply]):
            deadline = time.monotonic() + wait
            while not replies and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    pass
        queue.delete()
    return replies


def _request(version: str = "1.0", **extra: Any) -> dict[str, Any]:
    msg_id = uuid.uuid4().hex
    return {"method": "device_plugin_labels_update_by_ihost", "namespace": None, "version": version,
            "args": {"host_uuid": "h-1", "device_plugins": []}, "_msg_id": msg_id,
            "_reply_q": "reply_" + uuid.uuid4().hex, "_unique_id": uuid.uuid4().hex, **extra}


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == compat.__name__
            and r.levelno >= logging.WARNING]


def test_envelope_version_99_answered_unsupported_version_at_once(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    request = _request()
    body = json.dumps({"oslo.version": "99.0", "oslo.message": json.dumps(request)}).encode()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        replies = _raw_call(server, body, reply_name=request["_reply_q"])
    assert len(replies) == 1 and time.monotonic() - started < 5
    failure = json.loads(replies[0]["failure"])
    assert failure["class"] == "UnsupportedVersion" and "99.0" in failure["message"]
    assert replies[0]["_msg_id"] == request["_msg_id"] and replies[0]["ending"] is True
    lines = _lines(caplog)
    assert len(lines) == 1 and "unsupported envelope version" in lines[0] and "answered" in lines[0]
    assert "Traceback" not in caplog.text and server.still_serves()


def test_legacy_style_request_version_99_answered_on_msg_id_queue(server: Server) -> None:
    request = _request()
    del request["_reply_q"]  # legacy sysinv agents wait on a queue named after _msg_id
    body = json.dumps({"oslo.version": "99.0", "oslo.message": json.dumps(request)}).encode()
    replies = _raw_call(server, body, reply_name=request["_msg_id"])
    assert json.loads(replies[0]["failure"])["class"] == "UnsupportedVersion"


def test_target_version_99_answered_unsupported_version(server: Server) -> None:
    """Held OK before the shim (oslo's dispatcher answers it): must stay so."""
    request = _request(version="99.0")
    replies = _raw_call(server, json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(request)})
                        .encode(), reply_name=request["_reply_q"])
    assert json.loads(replies[0]["failure"])["class"] == "UnsupportedVersion"


@pytest.mark.parametrize(("body", "reason"), [
    (b"\x00\xffnot json at all", "not decodable"),
    (json.dumps([_request()]).encode(), "not a JSON object"),
    (b'{"oslo.version": "2.0", "oslo.message": "{not json"}', "not decodable"),
    (b'"just a string"', "not a JSON object"),
])
def test_undecodable_message_one_log_line_no_traceback_server_keeps_serving(
        server: Server, caplog: pytest.LogCaptureFixture, body: bytes, reason: str) -> None:
    with caplog.at_level(logging.WARNING):
        _raw_call(server, body)
        assert server.still_serves()  # served after the garbage: the garbage was handled first
    lines = _lines(caplog)
    assert len(lines) == 1 and reason in lines[0] and "no reply address" in lines[0], lines
    assert "Traceback" not in caplog.text and len(lines[0]) < 300


def test_500_undecodable_messages_log_one_line_and_bounded_resources(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
    with caplog.at_level(logging.WARNING), \
            kombu.Connection(rabbit.KOMBU_URL, connect_timeout=5) as conn:
        producer = kombu.Producer(conn.channel(), exchange=kombu.Exchange(
            server.exchange, type="topic", durable=False, auto_delete=False), routing_key=server.topic)
        for i in range(500):
            producer.publish(b"\x00garbage %d" % i + b"x" * 2000, content_type="application/json",
                             content_encoding="utf-8", serializer=None)
        conn.release()
        assert server.still_serves()
    assert len(_lines(caplog)) == 1
    assert threading.active_count() <= threads + 2
    assert len(os.listdir("/proc/self/fd")) <= fds + 4
