"""Test double of sysinv's ZeroMQ RPC peers, written from its wire format (no sysinv_ext code).

Emulated with pyzmq + msgpack on threads: sysinv/zmq_rpc (zmq_rpc.py ``ZmqRpcServer``/
``ZmqRpcClient``/``RpcWrapper``, serializer.py ``encode``/``decode``, client_provider.py) over
StarlingX's patched zerorpc (starlingx/integ python/zerorpc-python, patches 0002 encoder/decoder,
0003+0005 kwargs, 0007 IPv6):
- an event is the msgpack array ``[header, name, args, kwargs]`` (``use_bin_type=True``; unpacked
  with ``raw=False`` and sysinv's decoder as ``object_hook``); anything else is "invalid msg
  format": the patched server logs it and never answers;
- header ``{'message_id': bytes, 'v': 3}``, a reply adds ``response_to``; ``OK [result]`` or
  ``ERR [name, message, traceback]`` (zerorpc ServerBase._async_task);
- the context is ``{b'context': True, b'context_type': b'base_request'|b'request'|..., b'data':
  ctx.to_dict()}``, decoded back with ``from_dict`` (oslo.context's class for base_request);
- the client pops ``timeout_``/``async_``/``slots_`` before sending (patch 0005), the server
  calls ``method(context, **kwargs)`` for public methods only (RpcWrapper), else NameError.
Not emulated: eventlet, heartbeats (sysinv runs ``heartbeat=None``), streaming, fanout, DNS.
"""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq
from oslo_context import context as oslo_context


class ZerorpcRemoteError(Exception):
    """``zerorpc.exceptions.RemoteError(name, human_msg, human_traceback)``."""

    def __init__(self, name: str, msg: str, tb: str | None) -> None:
        super().__init__(f"{name}: {msg}")
        self.name, self.msg, self.traceback = name, msg, tb


class ZerorpcTimeoutExpired(Exception):
    """``zerorpc.exceptions.TimeoutExpired``."""


@dataclass
class SysinvRequestContext:
    """Stands in for sysinv.common.context.RequestContext (context_type b'request')."""

    values: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SysinvRequestContext:
        return cls(dict(values))


def encode(obj: Any) -> Any:
    """sysinv serializer.encode (the context part; msgpack ``default``)."""
    if isinstance(obj, SysinvRequestContext):
        return {b"context": True, b"context_type": b"request", b"data": obj.to_dict()}
    if isinstance(obj, oslo_context.RequestContext):
        return {b"context": True, b"context_type": b"base_request", b"data": obj.to_dict()}
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, Exception):
        return repr(obj)
    return obj


def decode(obj: Any) -> Any:
    """sysinv serializer.decode (msgpack ``object_hook``)."""
    try:
        if b"context" in obj:
            data, kind = obj[b"data"], obj[b"context_type"]
            if kind == b"request":
                return SysinvRequestContext.from_dict(data)
            return oslo_context.RequestContext.from_dict(data)
        return obj
    except KeyError:
        return obj


def pack(header: dict[str, Any], name: str, args: Any, kwargs: dict[str, Any]) -> bytes:
    """patched zerorpc Event.pack: 4 items."""
    return bytes(msgpack.Packer(use_bin_type=True, default=encode).pack((header, name, args, kwargs)))


def pack_stock(header: dict[str, Any], name: str, args: Any) -> bytes:
    """Stock PyPI zerorpc 0.6.3 Event.pack: 3 items, no kwargs."""
    return bytes(msgpack.Packer(use_bin_type=True).pack((header, name, args)))


def unpack(blob: bytes) -> tuple[dict[str, Any], str, Any, dict[str, Any]]:
    """patched zerorpc Event.unpack: exactly 4 items, else 'invalid msg format'."""
    unpacker = msgpack.Unpacker(raw=False, object_hook=decode)
    unpacker.feed(blob)
    msg = unpacker.unpack()
    try:
        (header, name, args, kwargs) = msg
    except Exception as err:
        raise ValueError(f'invalid msg format "{msg}": {err}') from err
    if not isinstance(header, dict):
        header = {}
    return header, name, args, kwargs


def _socket(ctx: zmq.Context[Any], kind: int) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = ctx.socket(kind)
    sock.setsockopt(zmq.IPV6, True)  # patch 0007
    sock.setsockopt(zmq.LINGER, 0)
    return sock


def endpoint(host: str, port: int) -> str:
    """sysinv zmq_rpc.get_tcp_endpoint."""
    return f"tcp://[{host}]:{port}"


class SysinvZmqClient:
    """sysinv's ``ZmqRpcClient`` + zerorpc ``Client(heartbeat=None, timeout=...)``.

    ``call(context, {'method': ..., 'args': {...}})`` as sysinv's rpcapi builds it (make_msg).
    ``replies`` keeps every decoded reply ``(header, name, args, kwargs)``.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self.endpoint = endpoint(host, port)
        self.timeout = timeout
        self._ctx: zmq.Context[Any] = zmq.Context()
        self._sock = _socket(self._ctx, zmq.DEALER)
        self._sock.connect(self.endpoint)
        self.replies: list[tuple[dict[str, Any], str, Any, dict[str, Any]]] = []

    def call(self, context: Any, msg: dict[str, Any], timeout: float | None = None) -> Any:
        kwargs = dict(msg["args"])
        if timeout is not None:
            kwargs["timeout_"] = timeout
        return self.invoke(msg["method"], context, **kwargs)

    def invoke(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """zerorpc ``ClientBase.__call__``: internal options popped, the rest sent as kwargs."""
        timeout = kwargs.pop("timeout_", self.timeout)
        kwargs.pop("slots_", None)
        kwargs.pop("async_", None)
        msgid = uuid.uuid4().hex.encode()
        self._sock.send_multipart([b"", pack({"message_id": msgid, "v": 3}, method, args, kwargs)])
        return self._wait(msgid, method, timeout)

    def send_stock(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """What stock zerorpc sends for ``client.method(*args, **kwargs)``: 3 items, no kwargs."""
        msgid = uuid.uuid4().hex.encode()
        self._sock.send_multipart([b"", pack_stock({"message_id": msgid, "v": 3}, method, list(args))])
        return self._wait(msgid, method, self.timeout if timeout is None else timeout)

    def _wait(self, msgid: bytes, method: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000) + 1):
                raise ZerorpcTimeoutExpired(f"calling remote method {method}")
            header, name, args, kwargs = unpack(self._sock.recv_multipart()[-1])
            self.replies.append((header, name, args, kwargs))
            if header.get("response_to") != msgid:
                continue
            if name == "ERR":
                err_name, err_msg, err_tb = args
                raise ZerorpcRemoteError(err_name, err_msg, err_tb)
            return args[0]

    def close(self) -> None:
        self._sock.close()
        self._ctx.term()


@dataclass
class Received:
    """One request the server decoded: the RPC method, its context object and kwargs."""

    method: str
    context: Any
    kwargs: dict[str, Any]
    header: dict[str, Any]


@dataclass
class SysinvZmqServer:
    """sysinv's ``ZmqRpcServer``: ``zerorpc.Server(RpcWrapper(target), heartbeat=None, ...)``.

    Binds ``tcp://[host]:port`` (port 0: a free one, see ``port`` after start). Requests are
    served one at a time (one greenlet pool in sysinv; enough here). ``received`` keeps calls,
    ``invalid`` the frames sysinv's patched zerorpc could not unpack (never answered).
    """

    target: Any
    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _ctx: Any = None

    def start(self) -> SysinvZmqServer:
        self._ctx = zmq.Context()
        sock = _socket(self._ctx, zmq.ROUTER)
        sock.bind(endpoint(self.host, self.port))
        self.port = int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        self._thread = threading.Thread(target=self._run, args=(sock,), name="sysinv-zmq", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._ctx is not None:
            self._ctx.term()

    def _run(self, sock: zmq.Socket[Any]) -> None:
        try:
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                frames = sock.recv_multipart()
                identity, blob = frames[:-2], frames[-1]
                try:
                    header, name, args, kwargs = unpack(blob)
                except ValueError as err:  # ChannelMultiplexer: logged, ignored, no reply
                    self.invalid.append(str(err))
                    continue
                if header.get("response_to") is not None:
                    continue  # heartbeat on an open channel
                reply = self._dispatch(header, name, list(args), dict(kwargs))
                sock.send_multipart([*identity, b"", reply])
        finally:
            sock.close()

    def _dispatch(self, header: dict[str, Any], name: str, args: list[Any],
                  kwargs: dict[str, Any]) -> bytes:
        out = {"message_id": uuid.uuid4().hex.encode(), "v": 3, "response_to": header["message_id"]}
        try:
            public = [m for m in dir(self.target) if not m.startswith("_")]
            if name not in public:
                raise NameError(name)
            context = args[0] if args else None
            self.received.append(Received(name, context, dict(kwargs), header))
            result = getattr(self.target, name)(context, **kwargs)  # RpcWrapper.method
            return pack(out, "OK", (result,), {})
        except Exception as err:
            return pack(out, "ERR", (type(err).__name__, str(err), traceback.format_exc()), {})
