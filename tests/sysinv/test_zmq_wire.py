"""sysinv_ext.common.zmq_wire (pure): sysinv's zerorpc event format and context encoding.

Checked against the bytes tests/fakes/sysinv_zmq.py (written from sysinv's serializer.py and
StarlingX's zerorpc patches) produces and reads.
"""
from __future__ import annotations

import datetime
import uuid

import msgpack
import pytest
from oslo_context import context as oslo_context

from sysinv_ext.common import zmq_wire as wire
from sysinv_ext.common.context import RequestContext
from tests.fakes import sysinv_zmq


def test_request_is_four_items_with_context_map() -> None:
    ctx = RequestContext(is_admin=True, request_id="req-1")
    blob = wire.pack(wire.request("m", [ctx], {"host_uuid": "h", "device_plugins": ["intelgpu"]}))
    raw = msgpack.unpackb(blob, raw=False)
    assert len(raw) == 4
    header, name, args, kwargs = raw
    assert name == "m" and header["v"] == 3 and isinstance(header["message_id"], bytes)
    assert args[0][b"context"] is True and args[0][b"context_type"] == b"base_request"
    assert args[0][b"data"]["request_id"] == "req-1"
    assert kwargs == {"host_uuid": "h", "device_plugins": ["intelgpu"]}
    # what sysinv's decoder makes of it: oslo.context's RequestContext
    _, _, sysinv_args, _ = sysinv_zmq.unpack(blob)
    assert isinstance(sysinv_args[0], oslo_context.RequestContext) and sysinv_args[0].is_admin


@pytest.mark.parametrize("ctx", [
    oslo_context.RequestContext(is_admin=True, request_id="req-2"),
    sysinv_zmq.SysinvRequestContext({"is_admin": True, "request_id": "req-2"}),
], ids=["base_request", "request"])
def test_sysinv_context_decodes_to_plain_dict(ctx: object) -> None:
    blob = sysinv_zmq.pack({"message_id": b"x", "v": 3}, "m", [ctx], {"a": 1})
    event = wire.unpack(blob)
    assert isinstance(event.args[0], dict) and event.args[0]["request_id"] == "req-2"
    assert event.kwargs == {"a": 1} and event.message_id == b"x"


@pytest.mark.parametrize("items", [3, 5])
def test_event_not_of_four_items_is_a_wire_error_as_in_sysinv(items: int) -> None:
    """StarlingX's patched zerorpc reads exactly [header, name, args, kwargs]; a stock event (3)
    used to be read as one without kwargs, and run."""
    blob = msgpack.packb([{"message_id": b"y", "v": 3}, "m", [1], {}, None][:items])
    if items == 3:
        assert blob == sysinv_zmq.pack_stock({"message_id": b"y", "v": 3}, "m", [1])
    with pytest.raises(wire.WireError, match=f"invalid msg format \\({items} items\\)"):
        wire.unpack(blob)


def test_error_reply_has_name_and_bounded_message_but_no_traceback() -> None:
    req = wire.request("m", [], {})
    try:
        raise KeyError("k" * 100_000)
    except KeyError as err:
        blob = wire.pack(wire.reply(req, "ERR", wire.error_args(err)))
    _, name, args, _ = sysinv_zmq.unpack(blob)
    assert name == "ERR" and args[0] == "KeyError" and args[2] is None
    assert len(args[1]) < 500 and len(blob) < 1000


@pytest.mark.parametrize("blob", [b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"a": 1}),
                                  msgpack.packb([{}, 5, [], {}]), msgpack.packb([{}, "m", 1, {}]),
                                  msgpack.packb([{}, "m", [], {1: 2}])])
def test_malformed_events_are_wire_errors(blob: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.unpack(blob)


def test_reply_answers_the_request_channel() -> None:
    req = wire.request("m", [], {})
    rep = wire.reply(req, "OK", [None])
    assert rep.response_to == req.message_id and rep.message_id != req.message_id
    header, name, args, kwargs = sysinv_zmq.unpack(wire.pack(rep))
    assert (name, args, kwargs, header["response_to"]) == ("OK", [None], {}, req.message_id)


def test_encoder_follows_sysinv_for_plain_types() -> None:
    when = datetime.datetime(2025, 1, 2, 3, 4, 5, 6)
    ident = uuid.UUID(int=1)
    assert wire.encode(when) == "2025-01-02T03:04:05.000006"
    assert wire.encode(ident) == str(ident)
    assert wire.encode(ValueError("x")) == "ValueError('x')"
    with pytest.raises(TypeError):
        wire.encode(object())
