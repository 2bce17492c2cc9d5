"""Hostile callers of the ZeroMQ RPC server (issue 21, items 2, 8, 9, 16, 17).

Real ``ZmqRpcServer`` on a free 127.0.0.1 port, a stub target, and raw pyzmq sockets as the
hostile peers; the legitimate caller is tests/fakes/sysinv_zmq.py's sysinv-style client. Every
test waits on a condition with a deadline (no bare sleeps) and asserts behaviour, not speed:
the latency and RSS figures under a flood are in ``python -m benchmarks sysinv``.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import zmq

from sysinv_ext.common import zmq_rpc
from tests.fakes.sysinv_zmq import SysinvZmqClient, ZerorpcRemoteError
from tests.fakes.sysinv_zmq import pack as sysinv_pack
from tests.fakes.sysinv_zmq import unpack as sysinv_unpack

LOGGER = "sysinv_ext.common.zmq_rpc"


class Stub:
    """``fast`` answers at once; ``slow`` holds its worker until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []

    def fast(self, context: Any = None, **kwargs: Any) -> str:
        self.calls.append("fast")
        return "done"

    def slow(self, context: Any = None, **kwargs: Any) -> str:
        self.calls.append("slow")
        self.release.wait(60)
        return "slow done"

    def broken(self, context: Any = None, **kwargs: Any) -> None:
        self.calls.append("broken")
        raise RuntimeError("failed reading /etc/secret/server-side.path")

    def buggy(self, context: Any = None, **kwargs: Any) -> int:
        return len(5)  # type: ignore[arg-type]  # a TypeError of the server's own making


@pytest.fixture
def stub() -> Iterator[Stub]:
    target = Stub()
    yield target
    target.release.set()


@pytest.fixture
def server(stub: Stub) -> Iterator[zmq_rpc.ZmqRpcServer]:
    srv = zmq_rpc.ZmqRpcServer(stub, ["fast", "slow", "broken", "buggy"], "127.0.0.1", 0, name="stub").start()
    yield srv
    stub.release.set()
    srv.stop()


@pytest.fixture
def client(server: zmq_rpc.ZmqRpcServer) -> Iterator[SysinvZmqClient]:
    cli = SysinvZmqClient("127.0.0.1", server.port, timeout=10)
    yield cli
    cli.close()


class RawPeer:
    """A hostile DEALER: sends whatever frames it is given, reads replies when asked."""

    def __init__(self, port: int) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)  # queue all we send (the flood is the test)
        self.sock.connect(f"tcp://127.0.0.1:{port}")

    def send(self, blob: bytes) -> None:
        self.sock.send_multipart([b"", blob])

    def request(self, name: str, args: list[Any] | None = None, **kwargs: Any) -> bytes:
        msgid = uuid.uuid4().hex.encode()
        self.send(sysinv_pack({"message_id": msgid, "v": 3}, name, args or [{}], kwargs))
        return msgid

    def replies(self, count: int, timeout: float = 20.0) -> list[tuple[Any, ...]]:
        """Up to ``count`` decoded replies, whatever arrives before ``timeout``."""
        got: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                break
            got.append(sysinv_unpack(self.sock.recv_multipart()[-1]))
        return got

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def peer(server: zmq_rpc.ZmqRpcServer) -> Iterator[RawPeer]:
    raw = RawPeer(server.port)
    yield raw
    raw.close()


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


# -- item 2: caller input echoed without a bound ---------------------------------------------

def test_long_method_name_gets_a_bounded_error_reply_and_log_line(
        client: SysinvZmqClient, caplog: pytest.LogCaptureFixture) -> None:
    """A 200 KB name made a 400 KB ERR reply (name in the message and in the traceback)."""
    name = "n" * 200_000
    with caplog.at_level(logging.DEBUG, logger=LOGGER), pytest.raises(ZerorpcRemoteError) as info:
        client.invoke(name, {})
    assert info.value.name == "NameError"
    header, _, args, _ = client.replies[-1]
    assert len(msgpack.packb(args)) < 2000
    assert caplog.records and max(len(r.getMessage()) for r in caplog.records) < 1000


def test_frame_over_the_size_cap_is_dropped_and_others_are_served(
        server: zmq_rpc.ZmqRpcServer, peer: RawPeer, client: SysinvZmqClient) -> None:
    """An 8 MB request used to be decoded, run and answered with 16 MB; libzmq now drops it."""
    msgid = uuid.uuid4().hex.encode()
    peer.send(sysinv_pack({"message_id": msgid, "v": 3}, "f" * 8_000_000, [{}], {}))
    assert client.invoke("fast", {}) == "done"
    assert peer.replies(1, timeout=1.0) == []
    assert server.pending == 0


# -- item 17: what callers get back; deep nesting ----------------------------------------------

@pytest.mark.parametrize(("method", "name"), [("broken", "RuntimeError"), ("nope", "NameError")])
def test_error_reply_carries_no_server_traceback(client: SysinvZmqClient, method: str,
                                                 name: str) -> None:
    with pytest.raises(ZerorpcRemoteError) as info:
        client.invoke(method, {})
    assert info.value.name == name
    assert info.value.traceback is None  # zerorpc's RemoteError then reads "name: message"
    header, reply, args, _ = client.replies[-1]
    assert reply == "ERR" and len(args) == 3 and "zmq_rpc.py" not in repr(args)


@pytest.mark.parametrize("where", ["context", "kwarg"])
def test_deeply_nested_request_is_refused_at_decode(client: SysinvZmqClient, stub: Stub,
                                                    caplog: pytest.LogCaptureFixture,
                                                    where: str) -> None:
    """Nested ~990 deep it used to reach the method and come back as RecursionError, with an
    ERROR traceback in the log."""
    deep = nested(990)
    with caplog.at_level(logging.INFO, logger=LOGGER), pytest.raises(ZerorpcRemoteError) as info:
        if where == "context":
            client.invoke("fast", {"request_id": deep})
        else:
            client.invoke("fast", {}, host_uuid=deep)
    assert info.value.name == "WireError" and "nested deeper than" in info.value.msg
    assert stub.calls == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert client.invoke("fast", {}) == "done"


# -- item 8: flood of requests from one peer -------------------------------------------------

def test_one_peer_flood_does_not_hold_up_another_peers_call(
        server: zmq_rpc.ZmqRpcServer, stub: Stub, peer: RawPeer, client: SysinvZmqClient) -> None:
    """A peer sending 300 calls that block used to fill every worker and the unbounded queue:
    a legitimate call from another peer then waited behind all of them (timed out). Now the
    flooder gets at most MAX_PENDING_PER_PEER calls and ServerBusy at once for the rest."""
    flood = 300
    for _ in range(flood):
        peer.request("slow")
    busy = peer.replies(flood - zmq_rpc.MAX_PENDING_PER_PEER)
    assert len(busy) == flood - zmq_rpc.MAX_PENDING_PER_PEER
    assert all(r[1] == "ERR" and r[2][0] == "ServerBusy" and r[2][2] is None for r in busy)
    assert client.invoke("fast", {}) == "done"  # while the flooder's calls still block
    assert stub.calls.count("slow") == zmq_rpc.MAX_PENDING_PER_PEER
    stub.release.set()
    done = peer.replies(zmq_rpc.MAX_PENDING_PER_PEER)
    assert [r[1] for r in done] == ["OK"] * zmq_rpc.MAX_PENDING_PER_PEER


def test_full_call_queue_answers_server_busy_at_once(stub: Stub) -> None:
    srv = zmq_rpc.ZmqRpcServer(stub, ["fast", "slow"], "127.0.0.1", 0, max_pending=4,
                               max_pending_per_peer=3).start()
    peers = [RawPeer(srv.port) for _ in range(3)]
    try:
        for p in peers:
            for _ in range(2):
                p.request("slow")
        replies = _collect(peers, 2)
        assert [r[2][0] for r in replies] == ["ServerBusy", "ServerBusy"]
        assert srv.pending == 4 and srv.busy_replies == 2
        stub.release.set()
        assert [r[1] for r in _collect(peers, 4)] == ["OK"] * 4
    finally:
        stub.release.set()
        for p in peers:
            p.close()
        srv.stop()


def _collect(peers: list[RawPeer], count: int, timeout: float = 20.0) -> list[tuple[Any, ...]]:
    got: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for p in peers:
            got.extend(p.replies(count - len(got), timeout=0.05))
    return got


# -- item 16: logs one caller can flood --------------------------------------------------------

def test_flood_of_malformed_frames_logs_a_few_lines(peer: RawPeer, caplog: pytest.LogCaptureFixture) -> None:
    """20,000 malformed 21-byte frames gave 20,122 WARNING lines; now a few per minute."""
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for i in range(2000):
            peer.send(b"\x93" + i.to_bytes(4, "big") + b"garbage-frame-21")  # 3-item array, junk
        msgid = peer.request("fast")
        [answer] = peer.replies(1)  # the server reads one peer's frames in order
    assert answer[0]["response_to"] == msgid
    lines = [r for r in caplog.records if r.name == LOGGER]
    assert 1 <= len(lines) <= 10 and all(len(r.getMessage()) < 400 for r in lines)


def test_rejected_calls_log_one_short_line_each_kind(client: SysinvZmqClient,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for i in range(50):
            with pytest.raises(ZerorpcRemoteError):
                client.invoke(f"no_such_method_{i}", {})
            with pytest.raises(ZerorpcRemoteError):
                client.invoke("fast", {}, "extra", "positional")  # TypeError
    lines = [r for r in caplog.records if r.name == LOGGER]
    assert 2 <= len(lines) <= 20
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in lines)


def test_type_error_inside_a_method_is_logged_as_a_fault_not_a_rejection(
        client: SysinvZmqClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER), pytest.raises(ZerorpcRemoteError) as info:
        client.invoke("buggy", {})
    assert info.value.name == "TypeError" and info.value.traceback is None
    [line] = [r for r in caplog.records if r.name == LOGGER]
    assert line.levelno == logging.ERROR and "in buggy" in line.getMessage()


# -- item 9: half-open peers ----------------------------------------------------------------

def test_connection_that_never_handshakes_is_closed(server: zmq_rpc.ZmqRpcServer,
                                                    client: SysinvZmqClient) -> None:
    """Raw TCP connections that never speak ZMTP used to stay for libzmq's default 30 s; with
    ZMQ_HANDSHAKE_IVL they are closed after HANDSHAKE_IVL_MS."""
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    try:
        assert client.invoke("fast", {}) == "done"
        deadline = time.monotonic() + 15  # libzmq's default handshake interval is 30 s
        for conn in idle:
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            data = conn.recv(4096)  # libzmq's greeting, then EOF when it gives up on us
            while data:
                data = conn.recv(4096)
            assert time.monotonic() < deadline
    finally:
        for conn in idle:
            conn.close()


def test_stock_event_from_raw_peer_is_never_run(stub: Stub, peer: RawPeer) -> None:
    """Item 1 at the server level: a 3-item event is neither run nor answered."""
    peer.send(msgpack.packb([{"message_id": b"m1", "v": 3}, "fast", [{}]], use_bin_type=True))
    msgid = peer.request("fast")
    answers = peer.replies(2, timeout=1.0)
    assert [a[0]["response_to"] for a in answers] == [msgid]
    assert stub.calls == ["fast"]
