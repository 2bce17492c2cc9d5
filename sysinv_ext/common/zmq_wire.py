"""sysinv's ZeroMQ wire format: zerorpc events as StarlingX patches them, and sysinv's encoder.

StarlingX runs a patched zerorpc (starlingx/integ ``python/zerorpc-python``): every event is one
msgpack array of 4 items ``[header, name, args, kwargs]`` (stock zerorpc sends 3 and drops the
kwargs: sysinv never answers it, and neither do we), packed with ``use_bin_type=True`` and
sysinv's encoder as msgpack ``default`` (sysinv/zmq_rpc/serializer.py). A request context travels as the map
``{b'context': True, b'context_type': b'base_request', b'data': ctx.to_dict()}``.
Replies: ``OK [result]`` or ``ERR [exc name, message, traceback]``, header ``response_to`` = the
request's ``message_id``; we send the traceback as nil (zerorpc's RemoteError then reads
"name: message"), never the server's own. A decoded event nested deeper than
:data:`~sysinv_ext.common.bounded.MAX_DEPTH` is refused here, before anything walks it
recursively. Pure functions only: no sockets, nothing about agents or conductors.
"""
from __future__ import annotations

import datetime
import ipaddress
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from sysinv_ext.common import bounded
from sysinv_ext.common.context import RequestContext

PROTOCOL_VERSION = 3  # zerorpc header 'v'
#: sysinv serializer.py context types: sysinv RequestContext, oslo.context's, the two rpc ones.
CONTEXT_TYPES = (b"request", b"base_request", b"rpc", b"common_rpc")
#: what sysinv's agent sends (oslo's admin context) and so what we send
OUR_CONTEXT_TYPE = b"base_request"
#: oslo_utils.timeutils.PERFECT_TIME_FORMAT, what sysinv's encoder makes of a datetime
PERFECT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
#: zerorpc channel events (heartbeat, flow control) that a one-shot request/reply may ignore
CHANNEL_EVENTS = ("_zpc_hb", "_zpc_more")
#: characters of an error message sent back in an ERR reply
ERROR_MESSAGE_LIMIT = 400


class WireError(ValueError):
    """A frame that is not a zerorpc event in sysinv's format.

    ``header`` is the event's header when it could be read (the server may then answer ERR).
    """

    def __init__(self, message: str, header: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.header = header


@dataclass
class Event:
    """One zerorpc event; ``header`` keys are str, ``message_id``/``response_to`` opaque bytes."""

    header: dict[str, Any]
    name: str
    args: list[Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def message_id(self) -> Any:
        return self.header.get("message_id")

    @property
    def response_to(self) -> Any:
        return self.header.get("response_to")


def new_message_id() -> bytes:
    """An opaque id, 32 bytes like zerorpc's (counter hex + random base)."""
    return uuid.uuid4().hex.encode()


def request(name: str, args: list[Any], kwargs: Mapping[str, Any]) -> Event:
    return Event({"message_id": new_message_id(), "v": PROTOCOL_VERSION}, name, list(args),
                 dict(kwargs))


def reply(to: Event, name: str, args: list[Any]) -> Event:
    """A reply event on the channel opened by ``to`` (``OK`` or ``ERR``)."""
    return Event({"message_id": new_message_id(), "v": PROTOCOL_VERSION,
                  "response_to": to.message_id}, name, args, {})


def encode_context(data: Mapping[str, Any], context_type: bytes = OUR_CONTEXT_TYPE) -> dict[bytes, Any]:
    return {b"context": True, b"context_type": context_type, b"data": dict(data)}


def encode(obj: Any) -> Any:
    """msgpack ``default``: what sysinv's ``serializer.encode`` does for the types we can meet."""
    if isinstance(obj, RequestContext):
        return encode_context(obj.to_dict())
    if isinstance(obj, datetime.datetime):
        return obj.strftime(PERFECT_TIME_FORMAT)
    if isinstance(obj, (uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, Exception):
        return repr(obj)
    raise TypeError(f"cannot send {type(obj).__name__} over sysinv's ZeroMQ RPC")


def decode(obj: dict[Any, Any]) -> Any:
    """msgpack ``object_hook``: a sysinv context map becomes the plain dict of its data.

    Our endpoints take a dict context (as over AMQP); every other map passes unchanged.
    """
    if b"context" in obj and isinstance(obj.get(b"data"), Mapping):
        return {str(k): v for k, v in obj[b"data"].items()}
    return obj


def pack(event: Event) -> bytes:
    payload = (event.header, event.name, event.args, event.kwargs)
    packed: bytes = msgpack.packb(payload, use_bin_type=True, default=encode)
    return packed


def unpack(blob: bytes) -> Event:
    """One event of exactly 4 items, as StarlingX's patched zerorpc reads it.

    A stock-zerorpc 3-item event (no kwargs) is a :class:`WireError`: sysinv refuses it
    ("invalid msg format") and never runs it, and so do we. Messages are bounded.
    """
    try:
        items = msgpack.unpackb(blob, raw=False, object_hook=decode, strict_map_key=False)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as err:
        raise WireError(f"not a msgpack event: {bounded.short(str(err))}") from err
    if not isinstance(items, list) or len(items) != 4:
        size = f"{len(items)} items" if isinstance(items, list) else type(items).__name__
        raise WireError(f"invalid msg format ({size}): want [header, name, args, kwargs]")
    header, name, args, kwargs = items
    if not isinstance(header, dict):
        header = {}  # zerorpc: backward compatibility
    if bounded.too_deep(items, bounded.MAX_DEPTH + 1):
        shallow = {k: v for k, v in header.items() if k in ("message_id", "v")
                   and isinstance(v, (bytes, str, int))}
        raise WireError(f"request nested deeper than {bounded.MAX_DEPTH} levels", shallow)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if not isinstance(name, str):
        raise WireError(f"event name must be a string, not {type(name).__name__}")
    if args is None:
        args = []
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise WireError("event args must be an array and kwargs a map")
    if not all(isinstance(key, str) for key in kwargs):
        raise WireError("event kwargs keys must be strings")
    return Event(header, name, args, kwargs)


def error_args(err: BaseException) -> list[Any]:
    """``ERR`` args (zerorpc protocol v2+: name, message, traceback): the exception's name and a
    bounded message; no traceback (nil), so no file path or code of the server reaches callers."""
    return [type(err).__name__, bounded.short(str(err), ERROR_MESSAGE_LIMIT), None]
