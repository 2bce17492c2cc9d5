"""Wire compatibility with sysinv's legacy oslo-incubator AMQP RPC (pinned to oslo.messaging 18.3.x).

sysinv carried ``sysinv/openstack/common/rpc`` (amqp.py, impl_kombu.py) long after OpenStack
moved to oslo.messaging; its peers differ from oslo.messaging in three places, fixed here:

(a) server side: a legacy client without ``_reply_q`` waits on a queue named after ``_msg_id``
    and expects the result and the closing ``ending`` message separately (MulticallWaiter drops
    the result of an ``ending`` message) -> reply to the ``_msg_id`` queue, in two messages;
(b) client side: a legacy server publishes replies to a direct exchange named after our
    ``_reply_q`` (``reply_<hex>``), routing key the same -> bind our reply queue to it as well;
(c) client side: a legacy server sends a failure, or a result, without ``ending`` in the same
    message (failures never get one) -> a reply without the ``ending`` key is final.

Modern peers are unaffected: they always send ``_reply_q`` and ``ending``, and never publish to
``reply_<hex>`` exchanges. :func:`install` patches oslo.messaging's rabbit driver internals
(``amqpdriver.RpcAMQPListener.message_cls``, ``AMQPIncomingMessage._send_reply``,
``ReplyWaiter._process_reply``, ``impl_rabbit.Consumer.declare`` and ``_callback``);
:func:`check` refuses any
oslo.messaging whose internals differ from the 18.3 line these were written against.
"""
from __future__ import annotations

import importlib.metadata
import inspect
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import kombu.entity
import kombu.messaging
from oslo_log import log as logging
from oslo_messaging._drivers import amqpdriver, impl_rabbit
from oslo_messaging._drivers import common as rpc_common
from oslo_messaging.rpc.dispatcher import UnsupportedVersion

LOG = logging.getLogger(__name__)

SUPPORTED_SERIES = "18.3."
LEGACY_REPLY_PREFIX = "reply_"

# Parameter names of the internals we subclass or wrap, as in oslo.messaging 18.3.1; looked up
# when check() runs (our own wrappers are unwrapped first).
_EXPECTED_SIGNATURES: dict[tuple[Any, str, str], list[str]] = {
    (amqpdriver, "AMQPIncomingMessage", "__init__"): [
        "self", "listener", "ctxt", "message", "unique_id", "msg_id", "reply_q",
        "client_timeout", "obsolete_reply_queues", "message_operations_handler"],
    (amqpdriver, "AMQPIncomingMessage", "_send_reply"): ["self", "conn", "reply", "failure", "ending"],
    (amqpdriver, "ReplyWaiter", "_process_reply"): ["self", "data"],
    (impl_rabbit, "Consumer", "declare"): ["self", "conn"],
    (impl_rabbit, "Connection", "declare_direct_consumer"): ["self", "topic", "callback"],
    (impl_rabbit, "Consumer", "_callback"): ["self", "message"],
    (impl_rabbit, "RabbitMessage", "__init__"): ["self", "raw_message"],
}
MAX_UNDECODABLE_BODY = 1 << 20  # larger garbage is not even parsed for a reply address
UNDECODABLE_LOG_EVERY = 60.0  # seconds between log lines about undecodable messages


class IncompatibleOsloMessaging(RuntimeError):
    """oslo.messaging's internals differ from those the legacy-wire shims were written for."""


def _fail(what: str) -> IncompatibleOsloMessaging:
    return IncompatibleOsloMessaging(
        f"sysinv_ext.common.compat supports oslo.messaging {SUPPORTED_SERIES}x only ({what}); "
        "re-check the legacy sysinv wire shims before changing the pin")


def check() -> None:
    """Raise :class:`IncompatibleOsloMessaging` unless the patched internals look as expected."""
    version = importlib.metadata.version("oslo.messaging")
    if not version.startswith(SUPPORTED_SERIES):
        raise _fail(f"found {version}")
    for (module, cls_name, attr), params in _EXPECTED_SIGNATURES.items():
        name = f"{module.__name__}.{cls_name}.{attr}"
        func = getattr(getattr(module, cls_name, None), attr, None)
        if func is None:
            raise _fail(f"{name} is gone")
        got = list(inspect.signature(_original(func), follow_wrapped=False).parameters)
        if got != params:
            raise _fail(f"{name}({', '.join(params)}) changed to ({', '.join(got)})")
    if list(inspect.signature(rpc_common.serialize_remote_exception).parameters) != ["failure_info"]:
        raise _fail("serialize_remote_exception(failure_info) changed")
    if not issubclass(amqpdriver.RpcAMQPListener.message_cls, amqpdriver.AMQPIncomingMessage):
        raise _fail(f"RpcAMQPListener.message_cls is {amqpdriver.RpcAMQPListener.message_cls!r}")
    probe = impl_rabbit.Consumer(exchange_name="", queue_name="reply_probe", routing_key="",
                                 type="direct", durable=False, exchange_auto_delete=False,
                                 queue_auto_delete=False, callback=None)
    for attr in ("exchange_name", "queue_name", "type", "queue"):
        if not hasattr(probe, attr):
            raise _fail(f"impl_rabbit.Consumer has no attribute {attr!r}")


def _original(func: Callable[..., Any]) -> Callable[..., Any]:
    return getattr(func, "__wrapped__", func)


class LegacyAwareIncomingMessage(amqpdriver.AMQPIncomingMessage):  # type: ignore[misc]
    """Shim (a): an RPC request that carries ``_msg_id`` but no ``_reply_q`` is answered the
    legacy way, on the queue named by ``_msg_id`` (through the default exchange, which reaches
    the queue of that name the old client declared), result then ``ending``."""

    def __init__(self, listener: Any, ctxt: Any, message: Any, unique_id: Any, msg_id: Any,
                 reply_q: Any, *args: Any) -> None:
        self.legacy_reply = bool(msg_id) and not reply_q
        if self.legacy_reply:
            reply_q = msg_id
        super().__init__(listener, ctxt, message, unique_id, msg_id, reply_q, *args)

    def _send_reply(self, conn: Any, reply: Any = None, failure: Any = None,
                    ending: bool = True) -> None:
        if self.legacy_reply and ending and not failure:
            # sysinv's MulticallWaiter ignores 'result' in the message flagged 'ending'.
            super()._send_reply(conn, reply, None, ending=False)
            super()._send_reply(conn, None, None, ending=True)
            return
        super()._send_reply(conn, reply, failure, ending)


def _process_reply_legacy_final(self: Any, data: dict[str, Any]) -> tuple[Any, bool]:
    """Shim (c): oslo.messaging always sends ``ending`` (True, or False for a heartbeat);
    legacy servers send it only in a closing message that never follows a failure."""
    legacy = "ending" not in data
    result, ending = _ORIGINAL_PROCESS_REPLY(self, data)
    return result, bool(ending or legacy or data.get("failure"))


def _declare_with_legacy_binding(self: Any, conn: Any) -> None:
    """Shim (b): also bind a reply queue to the ``reply_<hex>`` direct exchange legacy servers
    publish to. Declared exactly as their DirectPublisher does (durable=False, auto_delete=True)
    so either side may create it; re-run on every reconnection with the queue itself."""
    _ORIGINAL_DECLARE(self, conn)
    if (self.exchange_name == "" and self.type == "direct"
            and self.queue_name.startswith(LEGACY_REPLY_PREFIX)):
        legacy = kombu.entity.Exchange(  # type: ignore[no-untyped-call]
            name=self.queue_name, type="direct", durable=False, auto_delete=True)
        legacy(conn.channel).declare()  # type: ignore[no-untyped-call]
        self.queue.bind_to(exchange=legacy, routing_key=self.queue_name)


def _callback_answering_undecodable(self: Any, message: Any) -> None:
    """Shim (d): ``impl_rabbit.Consumer._callback`` as in 18.3.1, except that a message that
    cannot be decoded is answered where it can be, logged in one line, and rejected."""
    if self.rabbit_stream_fanout:
        offset = message.headers.get("x-stream-offset")
        if offset is not None:
            self.next_stream_offset = offset + 1
    m2p = getattr(self.queue.channel, "message_to_python", None)
    if m2p:
        message = m2p(message)
    try:
        decoded = impl_rabbit.RabbitMessage(message)
    except Exception as err:  # kombu decode errors, UnsupportedRpcEnvelopeVersion, dict(list)...
        _answer_undecodable(self.queue.channel, self.queue_name, message, err)
        message.reject()
        return
    try:
        self.callback(decoded)
    except Exception:
        LOG.exception("Failed to process message ... skipping it.")
        message.reject()


class _Throttle:
    """At most one log line per ``every`` seconds; counts what it held back."""

    def __init__(self, every: float) -> None:
        self.every, self._last, self._held = every, -every, 0
        self._lock = threading.Lock()

    def allow(self) -> tuple[bool, int]:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.every:
                self._held += 1
                return False, 0
            held, self._last, self._held = self._held, now, 0
            return True, held


_UNDECODABLE_LOG = _Throttle(UNDECODABLE_LOG_EVERY)


def _undecodable_reason(err: Exception) -> str:
    if isinstance(err, rpc_common.UnsupportedRpcEnvelopeVersion):
        return f"unsupported envelope version (this side speaks {rpc_common._RPC_ENVELOPE_VERSION})"
    if isinstance(err, (TypeError, ValueError)) and not isinstance(err, json.JSONDecodeError):
        return "not a JSON object"
    return f"not decodable ({type(err).__name__})"


def _reply_address(body: Any) -> tuple[str, str] | None:
    """(reply queue, msg_id) named inside an undecodable message, or None. Never raises."""
    try:
        if isinstance(body, (bytes, bytearray)):
            if len(body) > MAX_UNDECODABLE_BODY:
                return None
            body = body.decode("utf-8")
        outer = json.loads(body) if isinstance(body, str) else body
        inner = outer.get(rpc_common._MESSAGE_KEY, outer) if isinstance(outer, dict) else None
        if isinstance(inner, str):
            inner = json.loads(inner)
        if not isinstance(inner, dict):
            return None
        msg_id, reply_q = inner.get("_msg_id"), inner.get("_reply_q") or inner.get("_msg_id")
    except Exception:  # garbage in any other way: nothing to answer
        return None
    if isinstance(msg_id, str) and isinstance(reply_q, str) \
            and 0 < len(msg_id) <= 255 and 0 < len(reply_q) <= 255:
        return reply_q, msg_id
    return None


def _answer_undecodable(channel: Any, queue_name: str, message: Any, err: Exception) -> None:
    reason = _undecodable_reason(err)
    address = _reply_address(getattr(message, "body", None))
    answered = ""
    if address is not None:
        reply_q, msg_id = address
        if isinstance(err, rpc_common.UnsupportedRpcEnvelopeVersion):
            failure: Exception = UnsupportedVersion(str(err.kwargs.get("version", "?"))[:20])
        else:
            failure = ValueError(f"message not understood: {reason}")
        try:
            body = {"result": None, "ending": True, "_msg_id": msg_id,
                    "_unique_id": uuid.uuid4().hex,
                    "failure": rpc_common.serialize_remote_exception((type(failure), failure, None))}
            kombu.messaging.Producer(  # type: ignore[no-untyped-call]
                channel, exchange=kombu.entity.Exchange("", type="direct", passive=True),  # type: ignore[no-untyped-call]
                routing_key=reply_q, auto_declare=False).publish(rpc_common.serialize_msg(body))
            answered = f"; answered {type(failure).__name__} to {reply_q[:80]}"
        except Exception as publish_err:  # the caller's reply queue may be gone
            answered = f"; could not answer {reply_q[:80]}: {type(publish_err).__name__}"
    allowed, held = _UNDECODABLE_LOG.allow()
    if allowed:
        LOG.warning("Dropped a message on queue %s: %s%s%s", queue_name, reason,
                    answered or "; no reply address in it",
                    f" ({held} more since the last such line)" if held else "")


_ORIGINAL_PROCESS_REPLY = _original(amqpdriver.ReplyWaiter._process_reply)
_ORIGINAL_DECLARE = _original(impl_rabbit.Consumer.declare)
_ORIGINAL_CALLBACK = _original(impl_rabbit.Consumer._callback)
_callback_answering_undecodable.__wrapped__ = _ORIGINAL_CALLBACK  # type: ignore[attr-defined]
_process_reply_legacy_final.__wrapped__ = _ORIGINAL_PROCESS_REPLY  # type: ignore[attr-defined]
_declare_with_legacy_binding.__wrapped__ = _ORIGINAL_DECLARE  # type: ignore[attr-defined]


def installed() -> bool:
    return (amqpdriver.RpcAMQPListener.message_cls is LegacyAwareIncomingMessage
            and amqpdriver.ReplyWaiter._process_reply is _process_reply_legacy_final
            and impl_rabbit.Consumer.declare is _declare_with_legacy_binding
            and impl_rabbit.Consumer._callback is _callback_answering_undecodable)


def install() -> None:
    """Check oslo.messaging, then apply shims (a) to (d) process-wide; idempotent."""
    if installed():
        return
    check()
    amqpdriver.RpcAMQPListener.message_cls = LegacyAwareIncomingMessage
    amqpdriver.ReplyWaiter._process_reply = _process_reply_legacy_final
    impl_rabbit.Consumer.declare = _declare_with_legacy_binding
    impl_rabbit.Consumer._callback = _callback_answering_undecodable
    LOG.debug("legacy sysinv AMQP RPC compatibility shims installed")


def uninstall() -> None:
    """Restore oslo.messaging's own behaviour (tests use it to show each shim is needed)."""
    amqpdriver.RpcAMQPListener.message_cls = amqpdriver.AMQPIncomingMessage
    amqpdriver.ReplyWaiter._process_reply = _ORIGINAL_PROCESS_REPLY
    impl_rabbit.Consumer.declare = _ORIGINAL_DECLARE
    impl_rabbit.Consumer._callback = _ORIGINAL_CALLBACK
