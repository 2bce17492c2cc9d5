"""ZeroMQ RPC in sysinv's zerorpc dialect, on threads (no eventlet, no gevent).

sysinv (since 2022; only this since 2025) runs ``zerorpc.Server(RpcWrapper(manager),
heartbeat=None, encoder=encode, decoder=decode)`` bound at ``tcp://[ip]:port`` (ROUTER) and
``zerorpc.Client`` (DEALER) with ``heartbeat=None``; a call is one request event and one reply
event (:mod:`sysinv_ext.common.zmq_wire`). This module is a small adapter over pyzmq speaking
that: :class:`ZmqRpcServer` (one socket thread, calls run on a thread pool, a rejected call is an
``ERR`` reply at once) and :class:`ZmqRpcClient` (one call at a time per client). It knows no RPC
method: the server exposes exactly the method names it is given.

Hostile callers are bounded by libzmq where it can (``ZMQ_MAXMSGSIZE``: a larger frame ends the
connection before Python sees it; a per-peer receive queue of ``RCVHWM`` frames; half-open
connections dropped after ``ZMQ_HANDSHAKE_IVL``, dead ones by ZMTP heartbeats) and here for the
rest: at most ``max_pending`` calls (and MAX_PENDING_BYTES of request frames) queued or running,
at most ``max_pending_per_peer`` of them from one connection (more are answered ``ERR ServerBusy``
at once, so one flooding peer cannot delay another's call), log lines limited per cause and
bounded, heap memory returned to the OS after large frames. Optional CURVE
(:mod:`sysinv_ext.common.zmq_curve`) for our own agents.
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
from oslo_messaging.rpc import server as _oslo_rpc_server

from sysinv_ext.common import bounded, memory, zmq_curve
from sysinv_ext.common import zmq_wire as wire

LOG = logging.getLogger(__name__)

HEARTBEAT_IVL_MS = 5000  # ZMTP heartbeat, as StarlingX's zerorpc patch 0009 sets
HEARTBEAT_TIMEOUT_MS = 15000  # no traffic this long after a PING: the peer is gone
HANDSHAKE_IVL_MS = 5000  # a connection that has not finished the ZMTP handshake by then is closed
#: libzmq closes a connection that sends a larger frame (a real request is under 30 KiB)
MAX_MESSAGE_SIZE = 256 * 1024
RCVHWM = 64  # frames libzmq queues per connection before it stops reading that connection
MAX_PENDING = 2048  # calls queued or running (a 5,000-node burst is 240 callers at once)
MAX_PENDING_BYTES = 16 * 1024 * 1024  # their request frames together
MAX_PENDING_PER_PEER = 8  # of which from one connection (our and sysinv's agents send one)
ACCEPT_BATCH = 64  # requests read before answers are forwarded again
TRIM_AFTER_BYTES = 64 * 1024  # a frame this large: return freed heap to the OS afterwards
TRIM_EVERY = 1.0  # seconds, at most, between trims while busy
TB_FRAMES = 8  # innermost frames logged for an unexpected failure
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


def _socket(context: zmq.Context[Any], kind: int, max_message_size: int = MAX_MESSAGE_SIZE,
            handshake_ms: int = HANDSHAKE_IVL_MS) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = context.socket(kind)
    sock.setsockopt(zmq.IPV6, 1)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HANDSHAKE_IVL, handshake_ms)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_size)
    sock.setsockopt(zmq.LINGER, 0)
    return sock


class ServerBusy(Exception):
    """Sent back as ``ERR ServerBusy`` when the call queue, or the caller's share of it, is full."""


class ZmqRpcServer:
    """Serves ``methods`` of ``target`` at ``tcp://[host]:port`` (port 0: any free port).

    Like sysinv's server, a method gets the request's args (the context first) and kwargs as
    sent. Also answers zerorpc's introspection (``_zerorpc_list``, ``_zerorpc_ping``, ...).
    ``expected`` exceptions are answered as ``ERR`` without a logged traceback. With ``curve``
    only clients whose public key file is in ``curve.allowed_dir`` get through.
    """

    def __init__(self, target: Any, methods: Iterable[str], host: str, port: int, *,
                 name: str | None = None, workers: int = DEFAULT_WORKERS,
                 expected: Sequence[type[BaseException]] = (),
                 max_pending: int = MAX_PENDING, max_pending_per_peer: int = MAX_PENDING_PER_PEER,
                 max_message_size: int = MAX_MESSAGE_SIZE, handshake_ms: int = HANDSHAKE_IVL_MS,
                 curve: zmq_curve.ServerKeys | None = None) -> None:
        self.host, self.port = host, port
        self.name = name or type(target).__name__
        self._methods: dict[str, Callable[..., Any]] = {m: getattr(target, m) for m in methods}
        self._builtins: dict[str, Callable[..., Any]] = {
            "_zerorpc_list": lambda: sorted(self._methods),
            "_zerorpc_name": lambda: self.name,
            "_zerorpc_ping": lambda: ["pong", self.name],
            "_zerorpc_help": self._help,
            "_zerorpc_inspect": lambda: {"name": self.name, "methods": {
                m: {"args": None, "doc": getattr(f, "__doc__", None)} for m, f in self._methods.items()}},
        }
        self._expected = tuple(expected)
        self._workers = workers
        self._max_pending, self._max_per_peer = max_pending, max_pending_per_peer
        self._max_message_size, self._handshake_ms = max_message_size, handshake_ms
        self._curve = curve
        self._context: zmq.Context[Any] = zmq.Context()
        self._inproc = f"inproc://zmq-rpc-replies-{uuid.uuid4().hex}"
        self._push: zmq.Socket[Any] | None = None
        self._push_lock = threading.Lock()
        self._closing = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._auth: Any = None
        self._pending_lock = threading.Lock()
        self._pending: dict[bytes, int] = {}  # peer routing id -> calls queued or running
        self._pending_total = 0
        self._pending_bytes = 0
        self._log = bounded.CauseLimiter()
        self._trim_due = False
        self._last_trim = 0.0
        self.busy_replies = 0  # calls refused as ServerBusy (tests, benchmarks)

    @property
    def endpoint(self) -> str:
        return tcp_endpoint(self.host, self.port)

    def _help(self, method: str) -> Any:
        if method not in self._methods:
            raise NameError(bounded.short(method))
        return getattr(self._methods[method], "__doc__", None)

    @property
    def pending(self) -> int:
        """Calls queued or running now."""
        return self._pending_total

    def start(self) -> ZmqRpcServer:
        """Bind (raises ``zmq.ZMQError``, e.g. address in use) and serve on a thread."""
        router = _socket(self._context, zmq.ROUTER, self._max_message_size, self._handshake_ms)
        router.setsockopt(zmq.RCVHWM, RCVHWM)
        if self._curve is not None:
            self._start_auth(router, self._curve)
        try:
            router.bind(tcp_endpoint(self.host, self.port))
        except zmq.ZMQError:
            router.close()
            self._stop_auth()
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
        LOG.info("ZeroMQ RPC server %s bound at %s (%s)", self.name, self.endpoint,
                 "CURVE: only allowed client keys" if self._curve else "no authentication")
        return self

    def _start_auth(self, router: zmq.Socket[Any], keys: zmq_curve.ServerKeys) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self._auth = ThreadAuthenticator(self._context, log=logging.getLogger(__name__ + ".zap"))
        self._auth.start()
        self._auth.configure_curve_callback(domain="*",
                                            credentials_provider=zmq_curve.AllowedKeys(keys.allowed_dir))
        router.curve_secretkey = keys.secret
        router.curve_publickey = keys.public
        router.curve_server = True

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

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
        self._stop_auth()
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
                    for _ in range(ACCEPT_BATCH):  # then answers again: replies are not starved
                        if not router.poll(0):
                            break
                        self._accept(router, router.recv_multipart())
                self._maybe_trim(idle=not ready)
            while pull.poll(0):  # answers of the calls that finished while stopping
                router.send_multipart(pull.recv_multipart())
        except zmq.ZMQError as err:  # context terminated under us: nothing left to serve
            LOG.error("ZeroMQ RPC server at %s stopped: %s", self.endpoint, err)
        finally:
            router.close()
            pull.close()

    def _warn(self, cause: str, fmt: str, *args: Any) -> None:
        """One line for ``cause``, at most a few per minute; ``args`` must already be bounded."""
        allowed, held = self._log.allow(cause)
        if allowed:
            LOG.warning("ZeroMQ RPC at %s: %s%s", self.endpoint, fmt % args, bounded.held_note(held))

    def _maybe_trim(self, *, idle: bool) -> None:
        """Give the heap back after large frames: when idle, or every TRIM_EVERY s if busy."""
        if self._trim_due and (idle or _now() - self._last_trim > TRIM_EVERY):
            self._trim_due, self._last_trim = False, _now()
            memory.release_memory()

    def _accept(self, router: zmq.Socket[Any], frames: list[bytes]) -> None:
        if len(frames) < 2:
            self._warn("frames", "dropped a message of %d frame(s)", len(frames))
            return
        envelope, blob = frames[:-1], frames[-1]
        if len(blob) >= TRIM_AFTER_BYTES:
            self._trim_due = True
        try:
            event = wire.unpack(blob)
        except wire.WireError as err:
            to = wire.Event(err.header or {}, "", [])
            if to.message_id is None or to.response_to is not None:
                self._warn("malformed", "dropped a malformed request (not answered, not run): %s",
                           bounded.short(str(err)))
                return
            self._warn("refused", "refused a request (not run): %s", bounded.short(str(err)))
            router.send_multipart([*envelope, wire.pack(wire.reply(to, "ERR", wire.error_args(err)))])
            return
        if event.response_to is not None or self._closing.is_set():
            return  # heartbeat / flow control on a channel: our calls are one request, one reply
        if event.message_id is None:
            self._warn("no-id", "dropped %s without message_id", bounded.short(event.name))
            return
        peer, size = envelope[0], len(blob)
        with self._pending_lock:
            busy = self._pending_total >= self._max_pending \
                or self._pending_bytes + size > MAX_PENDING_BYTES \
                or self._pending.get(peer, 0) >= self._max_per_peer
            if not busy:
                self._pending[peer] = self._pending.get(peer, 0) + 1
                self._pending_total += 1
                self._pending_bytes += size
        if busy:
            self.busy_replies += 1
            self._warn("busy", "refused %s: %d calls in progress (%d from this caller)",
                       bounded.short(event.name), self._pending_total, self._pending.get(peer, 0))
            refusal = wire.error_args(ServerBusy("too many calls in progress; retry later"))
            router.send_multipart([*envelope, wire.pack(wire.reply(event, "ERR", refusal))])
            return
        assert self._pool is not None
        try:
            self._pool.submit(self._call, envelope, event, size)
        except RuntimeError:  # shutting down
            self._done(peer, size)

    def _done(self, peer: bytes, size: int) -> None:
        with self._pending_lock:
            self._pending_total -= 1
            self._pending_bytes -= size
            left = self._pending.get(peer, 1) - 1
            if left > 0:
                self._pending[peer] = left
            else:
                self._pending.pop(peer, None)

    def _call(self, envelope: list[bytes], event: wire.Event, size: int) -> None:
        try:
            blob = self._answer(event)
            with self._push_lock:
                if self._push is not None:
                    self._push.send_multipart([*envelope, blob])
        finally:
            self._done(envelope[0], size)

    def _answer(self, event: wire.Event) -> bytes:
        func = self._methods.get(event.name) or self._builtins.get(event.name)
        try:
            if func is None:
                raise NameError(bounded.short(event.name))
            return wire.pack(wire.reply(event, "OK", [func(*event.args, **event.kwargs)]))
        except Exception as err:  # every failure goes back to the caller as ERR, at once
            cause: BaseException = err
            if isinstance(err, messaging.ExpectedException):  # endpoint's expected_exceptions
                cause = err.exc_info[1]
            kind = type(cause).__name__
            if isinstance(cause, (NameError, *self._expected)) or _bad_arguments(cause):
                allowed, held = self._log.allow("rejected " + kind)
                if allowed:
                    LOG.info("ZeroMQ RPC %s rejected: %s: %s%s", bounded.short(event.name), kind,
                             bounded.short(str(cause), wire.ERROR_MESSAGE_LIMIT),
                             bounded.held_note(held))
            else:
                allowed, held = self._log.allow("failed " + kind)
                if allowed:  # a fault of ours: where it happened, but not the caller's data
                    frames = "".join(traceback.format_tb(cause.__traceback__, limit=-TB_FRAMES))
                    LOG.error("ZeroMQ RPC %s failed: %s: %s%s\n%s", bounded.short(event.name), kind,
                              bounded.short(str(cause), wire.ERROR_MESSAGE_LIMIT),
                              bounded.held_note(held), frames)
            return wire.pack(wire.reply(event, "ERR", wire.error_args(cause)))


class ZmqRpcClient:
    """Calls a zerorpc server at ``endpoint`` the way sysinv's ``ZmqRpcClient`` does.

    ``call(method, context, **kwargs)`` sends ``[header, method, [context], kwargs]``. A call that
    times out closes the socket, so its request is not delivered later. With ``curve`` the
    connection is CurveZMQ (a server that does not know our key never answers: a timeout).
    """

    def __init__(self, endpoint: str, *, timeout: float = 30.0,
                 curve: zmq_curve.ClientKeys | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._curve = curve
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
                if self._curve is not None:
                    sock.curve_secretkey = self._curve.secret
                    sock.curve_publickey = self._curve.public
                    sock.curve_serverkey = self._curve.server_public
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


def _bad_arguments(err: BaseException) -> bool:
    """A TypeError raised binding the caller's arguments (an expected rejection), not one raised
    inside the method (a fault): the innermost frame is the call itself, in ``_answer``, or in
    oslo.messaging's ``expected_exceptions`` wrapper around an endpoint method."""
    if not isinstance(err, TypeError):
        return False
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and (tb.tb_frame.f_code is ZmqRpcServer._answer.__code__
                               or tb.tb_frame.f_code.co_filename == _oslo_rpc_server.__file__)


def _now() -> float:
    return time.monotonic()
