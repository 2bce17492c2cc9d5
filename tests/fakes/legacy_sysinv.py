"""Test double of sysinv's legacy oslo-incubator AMQP RPC peers, written from its wire format.

Emulated (with kombu directly, no sysinv code): ``sysinv/openstack/common/rpc`` amqp.py and
impl_kombu.py as of sysinv 2f3fa421 - the envelope ``{"oslo.version": "2.0", "oslo.message":
<json>}``; requests with ``method``, ``namespace``, ``args``, ``version``, ``_msg_id``,
``_unique_id``, optional ``_reply_q`` and ``_context_<key>``; replies on a direct exchange
named after ``_reply_q`` or ``_msg_id``; a result message then an ``ending`` one, a failure alone.

- :class:`LegacyAgentClient` calls like sysinv's ``RpcProxy.call`` (MulticallWaiter, reply queue
  named after ``_msg_id``; or MulticallProxyWaiter with ``amqp_rpc_single_reply_queue``).
- :class:`LegacyConductorServer` serves a topic like sysinv's ``ProxyCallback`` and
  ``RpcDispatcher`` (version check: 1.x up to its RPC_API_VERSION, else UnsupportedRpcVersion).
Not emulated: eventlet green threads, connection pools, multicall generators, fanout, qpid.
"""
from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

import kombu

ENVELOPE_VERSION = "2.0"


def serialize_msg(raw: dict[str, Any]) -> dict[str, str]:
    return {"oslo.version": ENVELOPE_VERSION, "oslo.message": json.dumps(raw)}


def deserialize_msg(body: Any) -> dict[str, Any]:
    if isinstance(body, (bytes, str)):
        body = json.loads(body)
    if not isinstance(body, dict) or "oslo.message" not in body:
        return dict(body)  # un-enveloped (pre-envelope peers)
    if body["oslo.version"].split(".")[0] != ENVELOPE_VERSION.split(".")[0]:
        raise ValueError(f"UnsupportedRpcEnvelopeVersion {body['oslo.version']}")
    return dict(json.loads(body["oslo.message"]))


def version_is_compatible(imp_version: str, version: str) -> bool:
    """sysinv rpc/common.py ``version_is_compatible``."""
    major, minor = (int(p) for p in version.split("."))
    imp_major, imp_minor = (int(p) for p in imp_version.split("."))
    return major == imp_major and minor <= imp_minor


class LegacyRemoteError(Exception):
    """What sysinv's ``deserialize_remote_exception`` yields for a module it does not allow."""

    def __init__(self, exc_type: str, value: str, module: str) -> None:
        super().__init__(f"{exc_type}: {value}")
        self.exc_type, self.value, self.module = exc_type, value, module


class LegacyTimeout(Exception):
    """sysinv ``rpc_common.Timeout``."""


class UnsupportedRpcVersion(Exception):
    """sysinv ``rpc_common.UnsupportedRpcVersion`` (serialized under this module's name)."""


def _direct_exchange(name: str) -> kombu.Exchange:
    # impl_kombu DirectConsumer / DirectPublisher
    return kombu.Exchange(name=name, type="direct", durable=False, auto_delete=True)


class LegacyAgentClient:
    """Sends one ``call`` the way sysinv's agent does (``RpcProxy``: version '1.0')."""

    def __init__(self, url: str, exchange: str = "sysinv",
                 topic: str = "sysinv.conductor_manager", *,
                 single_reply_queue: bool = False) -> None:
        self.url, self.exchange, self.topic = url, exchange, topic
        self.single_reply_queue = single_reply_queue
        self.sent: list[dict[str, Any]] = []

    def call(self, method: str, args: dict[str, Any], *, context: dict[str, Any] | None = None,
             version: str = "1.0", timeout: float = 10.0) -> Any:
        msg_id = uuid.uuid4().hex
        msg: dict[str, Any] = {"method": method, "namespace": None, "args": args,
                               "version": version, "_msg_id": msg_id,
                               "_unique_id": uuid.uuid4().hex}
        ctx = context if context is not None else {"user": None, "tenant": None, "is_admin": True,
                                                   "request_id": "req-" + msg_id}
        msg.update({f"_context_{key}": value for key, value in ctx.items()})
        reply_name = ("reply_" + uuid.uuid4().hex) if self.single_reply_queue else msg_id
        if self.single_reply_queue:
            msg["_reply_q"] = reply_name
        replies: list[dict[str, Any]] = []
        with kombu.Connection(self.url, connect_timeout=5) as conn:
            channel = conn.channel()
            queue = kombu.Queue(name=reply_name, exchange=_direct_exchange(reply_name),
                                routing_key=reply_name, durable=False, auto_delete=True,
                                exclusive=False, channel=channel)
            queue.declare()
            topic_exchange = kombu.Exchange(self.exchange, type="topic", durable=False,
                                            auto_delete=False)
            producer = kombu.Producer(channel, exchange=topic_exchange, routing_key=self.topic)
            self.sent.append(dict(msg))
            producer.publish(serialize_msg(msg), headers={"ttl": int(timeout * 1000)})

            def on_reply(body: Any, message: Any) -> None:
                replies.append(deserialize_msg(body))
                message.ack()

            consumer = kombu.Consumer(channel, queues=[queue], accept=["json"],
                                      callbacks=[on_reply])
            deadline = time.monotonic() + timeout
            with consumer:
                while True:
                    outcome = self._outcome(replies, msg_id)
                    if outcome is not None:
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LegacyTimeout(f"no reply to {method} msg_id {msg_id}")
                    try:
                        conn.drain_events(timeout=min(left, 0.5))
                    except TimeoutError:
                        continue
            if self.single_reply_queue:
                queue.delete()
        done, result = outcome
        if isinstance(result, Exception):
            raise result
        return result

    def _outcome(self, replies: list[dict[str, Any]], msg_id: str) -> tuple[bool, Any] | None:
        """MulticallWaiter (msg_id queue) or MulticallProxyWaiter (single reply queue) logic."""
        result: Any = None
        for data in replies:
            if self.single_reply_queue and data.get("_msg_id") != msg_id:
                continue
            if data.get("failure"):
                failure = json.loads(data["failure"])
                return True, LegacyRemoteError(failure.get("class", ""), failure.get("message", ""),
                                               failure.get("module", ""))
            if data.get("ending"):
                if self.single_reply_queue:
                    result = data.get("result")
                return True, result
            result = data.get("result")
        return None


@dataclass
class LegacyConductorServer:
    """Serves ``topic`` on ``exchange`` like sysinv's conductor; ``endpoint`` gets the calls.

    Endpoint methods take ``(context_dict, **args)``. ``received`` keeps every decoded request.
    """

    url: str
    endpoint: Any
    exchange: str = "sysinv"
    topic: str = "sysinv.conductor_manager"
    rpc_api_version: str = "1.1"
    received: list[dict[str, Any]] = field(default_factory=list)
    replies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _publish_channel: Any = None
    error: BaseException | None = None

    def start(self) -> LegacyConductorServer:
        self._thread = threading.Thread(target=self._run, name="legacy-conductor", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"legacy conductor did not start: {self.error!r}")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            with kombu.Connection(self.url, connect_timeout=5) as conn:
                channel = conn.channel()
                self._publish_channel = conn.channel()
                exchange = kombu.Exchange(self.exchange, type="topic", durable=False,
                                          auto_delete=False)
                queue = kombu.Queue(name=self.topic, exchange=exchange, routing_key=self.topic,
                                    durable=False, auto_delete=False, exclusive=False,
                                    channel=channel)
                queue.declare()

                def handler(body: Any, message: Any) -> None:
                    self._handle(conn, body, message)

                with kombu.Consumer(channel, queues=[queue], callbacks=[handler], accept=["json"]):
                    self._ready.set()
                    while not self._stop.is_set():
                        try:
                            conn.drain_events(timeout=0.2)
                        except TimeoutError:
                            continue
        except BaseException as err:  # reported by start() / tests
            self.error = err
            self._ready.set()

    def _handle(self, conn: kombu.Connection, body: Any, message: Any) -> None:
        message.ack()
        msg = deserialize_msg(body)
        self.received.append(dict(msg))
        ctx = {key[9:]: msg.pop(key) for key in list(msg) if key.startswith("_context_")}
        msg_id, reply_q = msg.pop("_msg_id", None), msg.pop("_reply_q", None)
        version = msg.get("version") or "1.0"
        try:
            if not version_is_compatible(self.rpc_api_version, version):
                raise UnsupportedRpcVersion(f"Specified RPC version, {version}, not supported by "
                                            "this endpoint.")
            func = getattr(self.endpoint, msg["method"], None)
            if func is None:
                raise AttributeError(f"No such RPC function '{msg['method']}'")
            result = func(ctx, **msg.get("args", {}))
        except Exception as err:
            failure = json.dumps({"class": type(err).__name__, "module": type(err).__module__,
                                  "message": str(err), "tb": traceback.format_exc().splitlines(),
                                  "args": [str(a) for a in err.args], "kwargs": {}})
            self._reply(conn, msg_id, reply_q, {"result": None, "failure": failure})
            return  # amqp.py ProxyCallback: a failure is never followed by 'ending'
        self._reply(conn, msg_id, reply_q, {"result": result, "failure": None})
        self._reply(conn, msg_id, reply_q, {"result": None, "failure": None, "ending": True})

    def _reply(self, conn: kombu.Connection, msg_id: str | None, reply_q: str | None,
               msg: dict[str, Any]) -> None:
        """amqp.py ``msg_reply``: DirectPublisher to ``reply_q`` (with ``_msg_id``) or ``msg_id``."""
        if not msg_id:
            return
        msg["_unique_id"] = uuid.uuid4().hex
        target = reply_q or msg_id
        if reply_q:
            msg["_msg_id"] = msg_id
        self.replies.append((target, dict(msg)))
        producer = kombu.Producer(self._publish_channel, exchange=_direct_exchange(target),
                                  routing_key=target)
        producer.publish(serialize_msg(msg))
