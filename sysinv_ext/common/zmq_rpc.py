"""ZeroMQ RPC in sysinv's zerorpc dialect, on threads (no eventlet, no gevent).

sysinv (since 2022; only this since 2025) runs ``zerorpc.Server(RpcWrapper(manager),
heartbeat=None, encoder=encode, decoder=decode)`` bound at ``tcp://[ip]:port`` (ROUTER) and
``zerorpc.Client`` (DEALER) with ``heartbeat=None``; a call is one request event and one reply
event (:mod:`sysinv_ext.common.zmq_wire`). This module is a small adapter over pyzmq speaking
that: :class:`ZmqRpcServer` (one socket thread, calls run on a thread pool, a rejected call is an
``ERR`` reply at once) and :class:`ZmqRpcClient` (one call at a time per client). It knows no RPC
method: the server exposes exactly the method names it is given.
"""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import oslo_messaging as messaging
import zmq
from oslo_log import log as logging

from sysinv_ext.common import zmq_wire as wire

LOG = logging.getLogger(__name__)

HEARTBEAT_IVL_MS = 5000  # ZMTP heartbeat, as StarlingX's zerorpc patch 0009 sets
POLL_MS = 200
DEFAULT_WORKERS = 16
WILDCARDS = ("", "*", "::", "0.0.0.0")


class ZmqRpcError(Exception):
    """Base of the client's errors."""


class RemoteError(ZmqRpcError):
    """The server answered ``ERR``: what zerorpc raises as ``zerorpc.RemoteError``."""

    def __init__(self, name: str, msg: str, traceback_text: str | None) -> None:
        super().__init__(f"{name}: {msg}")
        self.name, self.msg, self.traceback = name, msg, traceback_text


class TimeoutExpired(ZmqRpcError):
    """No reply in time (zerorpc ``TimeoutExpired``); the request is dropped, not retried."""


def tcp_endpoint(host: str, port: int) -> str:
    """sysinv's ``get_tcp_endpoint``: ``tcp://[host]:port`` (IPv4, IPv6 or a name)."""
    return f"tcp://[{host}]:{port}"


def _socket(context: zmq.Context[Any], kind: int) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = context.socket(kind)
    sock.setsockopt(zmq.IPV6, 1)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.LINGER, 0)
    return sock


class ZmqRpcServer:
    """Serves ``methods`` of ``target`` at ``tcp://[host]:port`` (port 0: any free port).

    Like sysinv's server, a method gets the request's args (the context first) and kwargs as
    sent. Also answers zerorpc's introspection (``_zerorpc_list``, ``_zerorpc_ping``, ...).
    ``expected`` exceptions are answered as ``ERR`` without a logged traceback.
    """

    def __init__(self, target: Any, methods: Iterable[str], host: str, port: int, *,
                 name: str | None = None, workers: int = DEFAULT_WORKERS,
                 expected: Sequence[type[BaseException]] = ()) -> None:
        self.host, self.port = host, port
        self.name = name or type(target).__name__
        self._methods: dict[str, Callable[..., Any]] = {m: getattr(target, m) for m in methods}
        self._builtins: dict[str, Callable[..., Any]] = {
            "_zerorpc_list": lambda: sorted(self._methods),
            "_zerorpc_name": lambda: self.name,
            "_zerorpc_ping": lambda: ["pong", self.name],
            "_zerorpc_help": lambda m: getattr(self._methods[m], "__doc__", None),
            "_zerorpc_inspect": lambda: {"name": self.name, "methods": {
                m: {"args": None, "doc": getattr(f, "__doc__", None)} for m, f in self._methods.items()}},
        }
        self._expected = tuple(expected)
        self._workers = workers
        self._context: zmq.Context[Any] = zmq.Context()
        self._inproc = f"inproc://zmq-rpc-replies-{uuid.uuid4().hex}"
        self._push: zmq.Socket[Any] | None = None
        self._push_lock = threading.Lock()
        self._closing = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def endpoint(self) -> str:
        return tcp_endpoint(self.host, self.port)

    def start(self) -> ZmqRpcServer:
        """Bind (raises ``zmq.ZMQError``, e.g. address in use) and serve on a thread."""
        router = _socket(self._context, zmq.ROUTER)
        try:
            router.bind(tcp_endpoint(self.host, self.port))
        except zmq.ZMQError:
            router.close()
            raise
        if self.port == 0:
            last = router.getsockopt(zmq.LAST_ENDPOINT)
            self.port = int((last.decode() if isinstance(last, bytes) else str(last)).rsplit(":", 1)[1])
        pull = self._context.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.bind(self._inproc)
        self._push = self._context.socket(zmq.PUSH)
        self._push.setsockopt(zmq.LINGER, 0)
        self._push.connect(self._inproc)
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="zmq-rpc")
        self._thread = threading.Thread(target=self._serve, args=(router, pull),
                                        name="zmq-rpc-server", daemon=True)
        self._thread.start()
        LOG.info("ZeroMQ RPC server %s bound at %s", self.name, self.endpoint)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking calls, let calls in flight finish and answer, close the sockets."""
        self._closing.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._push_lock:
            if self._push is not None:
                self._push.close()
                self._push = None
        self._context.term()

    def _serve(self, router: zmq.Socket[Any], pull: zmq.Socket[Any]) -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(POLL_MS))
                if pull in ready:
                    while pull.poll(0):
                        router.send_multipart(pull.recv_multipart())
                if router in ready:
                    while router.poll(0):
                        self._accept(router.recv_multipart())
            while pull.poll(0):  # answers of the calls that finished while stopping
                router.send_multipart(pull.recv_multipart())
        except zmq.ZMQError as err:  # context terminated under us: nothing left to serve
            LOG.error("ZeroMQ RPC server at %s stopped: %s", self.endpoint, err)
        finally:
            router.close()
            pull.close()

    def _accept(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            LOG.warning("ZeroMQ RPC at %s: dropped a message of %d frame(s)", self.endpoint, len(frames))
            return
        envelope, blob = frames[:-1], frames[-1]
        try:
            event = wire.unpack(blob)
        except wire.WireError as err:
            LOG.warning("ZeroMQ RPC at %s: dropped a malformed request: %s", self.endpoint, err)
            return
        if event.response_to is not None or self._closing.is_set():
            return  # heartbeat / flow control on a channel: our calls are one request, one reply
        if event.message_id is None:
            LOG.warning("ZeroMQ RPC at %s: dropped %s without message_id", self.endpoint, event.name)
            return
        assert self._pool is not None
        try:
            self._pool.submit(self._call, envelope, event)
        except RuntimeError:  # shutting down
            return

    def _call(self, envelope: list[bytes], event: wire.Event) -> None:
        func = self._methods.get(event.name) or self._builtins.get(event.name)
        try:
            if func is None:
                raise NameError(event.name)
            blob = wire.pack(wire.reply(event, "OK", [func(*event.args, **event.kwargs)]))
        except Exception as err:  # every failure goes back to the caller as ERR, at once
            cause: BaseException = err
            if isinstance(err, messaging.ExpectedException):  # endpoint's expected_exceptions
                cause = err.exc_info[1]
            text = "".join(traceback.format_exception(cause))
            if isinstance(cause, self._expected) or isinstance(cause, (NameError, TypeError)):
                LOG.info("ZeroMQ RPC %s rejected: %s: %s", event.name, type(cause).__name__, cause)
            else:
                LOG.error("ZeroMQ RPC %s failed: %s", event.name, text)
            blob = wire.pack(wire.reply(event, "ERR", wire.error_args(cause, text)))
        with self._push_lock:
            if self._push is not None:
                self._push.send_multipart([*envelope, blob])


class ZmqRpcClient:
    """Calls a zerorpc server at ``endpoint`` the way sysinv's ``ZmqRpcClient`` does.

    ``call(method, context, **kwargs)`` sends ``[header, method, [context], kwargs]``. A call that
    times out closes the socket, so its request is not delivered later.
    """

    def __init__(self, endpoint: str, *, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._context: zmq.Context[Any] = zmq.Context()
        self._sock: zmq.Socket[Any] | None = None
        self._lock = threading.Lock()

    def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        limit = self.timeout if timeout is None else timeout
        event = wire.request(method, list(args), kwargs)
        blob = wire.pack(event)  # TypeError for arguments the wire cannot carry
        with self._lock:
            if self._sock is None:
                sock = _socket(self._context, zmq.DEALER)
                try:
                    sock.connect(self.endpoint)
                except zmq.ZMQError as err:  # e.g. a malformed address
                    sock.close()
                    raise ZmqRpcError(f"cannot connect to {self.endpoint}: {err}") from err
                self._sock = sock
            sock = self._sock
            sock.send_multipart([b"", blob])
            deadline = _now() + limit
            while True:
                left = deadline - _now()
                if left <= 0 or not sock.poll(int(left * 1000) + 1):
                    self._reset()
                    raise TimeoutExpired(f"no reply to {method} from {self.endpoint} in {limit:g} s")
                try:
                    answer = wire.unpack(sock.recv_multipart()[-1])
                except wire.WireError as err:
                    LOG.warning("Ignoring a malformed reply from %s: %s", self.endpoint, err)
                    continue
                if answer.response_to != event.message_id or answer.name in wire.CHANNEL_EVENTS:
                    continue  # a late reply to an earlier call, or channel housekeeping
                if answer.name == "OK":
                    return answer.args[0] if answer.args else None
                if answer.name == "ERR":
                    name, msg, text = (list(answer.args) + [None, None, None])[:3]
                    raise RemoteError(str(name), str(msg), text)
                raise ZmqRpcError(f"unexpected reply {answer.name!r} from {self.endpoint}")

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._reset()
        self._context.term()


def _now() -> float:
    return time.monotonic()
