"""``sysinv-gpu-status`` against what does not answer, answers junk, or is built to hurt (issue 21
item 14): it ends within its deadline (``--deadline``, default 10 s) and says why in one stderr
line, exit code 3, without a traceback. Each case runs the real console script with its address
space capped at 1 GiB, so a run that would swallow the machine fails with MemoryError instead.

The misbehaving servers are plain sockets of this module: one that accepts and never answers
(PostgreSQL, API server), one that answers an HTTP header and then one byte a second, and one
that answers whatever body it is given."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from sysinv_ext.conductor.manager import ConductorManager
from tests.fakes.kube_api import FakeKubeAPI, write_kubeconfig
from tests.sysinv.test_status import _conf_file

STATUS = str(Path(sys.executable).with_name("sysinv-gpu-status"))
HOST = "4c4c4544-0042-3510-8052-b4c04f4e4b32"
MEMORY_CAP = 1 << 30


def _status(config: Path, *args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    # the memory cap through prlimit(1), not a preexec_fn: that forces a fork() of this test
    # process, and grpc's fork handlers (grpc is loaded by other tests in the same worker) then
    # abort the child before exec ("epoll_wait error: Bad file descriptor", exit -6)
    return subprocess.run(["prlimit", f"--as={MEMORY_CAP}", "--", STATUS, "--config-file", str(config),
                           *args], capture_output=True, text=True, timeout=timeout)


def _one_line_exit_3(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 3, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert needle.lower() in lines[0].lower(), lines[0]
    assert len(lines[0]) < 600


class Server:
    """A TCP server on a free port; ``serve(conn)`` runs per connection on its own thread."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self._serve = serve
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[socket.socket], None]], Server]]:
    made: list[Server] = []

    def make(serve: Callable[[socket.socket], None]) -> Server:
        made.append(Server(serve))
        return made[-1]
    yield make
    for srv in made:
        srv.close()


def _silent(stop: threading.Event) -> Callable[[socket.socket], None]:
    def serve(conn: socket.socket) -> None:
        stop.wait(60)  # accepts, never answers
    return serve


def _answer(body: bytes, status: str = "200 OK") -> Callable[[socket.socket], None]:
    def serve(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        conn.shutdown(socket.SHUT_WR)
    return serve


def _raw(data: bytes) -> Callable[[socket.socket], None]:
    def serve(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(data)
        conn.close()
    return serve


def _trickle(stop: threading.Event) -> Callable[[socket.socket], None]:
    def serve(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{\"items\": [")
        while not stop.wait(1.0):
            conn.sendall(b" ")  # one byte a second: every read returns before its timeout
    return serve


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def recorded(tmp_path: Path, fake_kube: FakeKubeAPI, manager: ConductorManager,
             conductor_conf: cfg.ConfigOpts, write_plugins: Callable[[Any], Path]) -> Path:
    """A config whose database holds one labelled host (as in test_status's happy path)."""
    write_plugins({"intel-gpu-plugin": "intelgpu=enabled"})
    fake_kube.add_node("worker-0", HOST, {})
    manager.report(HOST, device_plugins=["intelgpu"])
    return _conf_file(tmp_path, conductor_conf)


def _with_api(tmp_path: Path, config: Path, port: int) -> Path:
    kubeconfig = write_kubeconfig(tmp_path / "hostile-kubeconfig", f"http://127.0.0.1:{port}")
    return _with_kubeconfig(tmp_path, config, kubeconfig)


def _with_kubeconfig(tmp_path: Path, config: Path, kubeconfig: Path) -> Path:
    text = config.read_text()
    lines = [f"kubeconfig = {kubeconfig}" if line.startswith("kubeconfig = ") else line
             for line in text.splitlines()]
    out = tmp_path / "hostile.conf"
    out.write_text("\n".join(lines) + "\n")
    return out


def _with_database(tmp_path: Path, config: Path, url: str) -> Path:
    out = tmp_path / "hostile-db.conf"
    out.write_text(config.read_text() + f"[database]\nconnection = {url}\n")
    return out


# -- hangs -------------------------------------------------------------------------------------
def test_postgresql_that_accepts_and_never_answers_ends_within_the_deadline(
        tmp_path: Path, recorded: Path, server: Callable[..., Server], stop: threading.Event) -> None:
    silent = server(_silent(stop))
    config = _with_database(tmp_path, recorded, f"postgresql+psycopg2://u@127.0.0.1:{silent.port}/db")
    started = time.monotonic()
    result = _status(config, "--deadline", "3")
    _one_line_exit_3(result, "database")
    assert time.monotonic() - started < 30


def test_postgresql_that_never_answers_ends_within_the_default_deadline(
        tmp_path: Path, recorded: Path, server: Callable[..., Server], stop: threading.Event) -> None:
    silent = server(_silent(stop))
    config = _with_database(tmp_path, recorded, f"postgresql+psycopg2://u@127.0.0.1:{silent.port}/db")
    _one_line_exit_3(_status(config, timeout=40), "database")


def test_api_that_sends_one_byte_a_second_ends_within_the_deadline(
        tmp_path: Path, recorded: Path, server: Callable[..., Server], stop: threading.Event) -> None:
    trickle = server(_trickle(stop))
    _one_line_exit_3(_status(_with_api(tmp_path, recorded, trickle.port), "--deadline", "3"),
                     "within 3 s")


def test_api_that_never_answers_ends_within_the_deadline(
        tmp_path: Path, recorded: Path, server: Callable[..., Server], stop: threading.Event) -> None:
    silent = server(_silent(stop))
    _one_line_exit_3(_status(_with_api(tmp_path, recorded, silent.port), "--deadline", "3"),
                     "Kubernetes")


def test_abandoned_read_never_aborts_the_exit(
        tmp_path: Path, recorded: Path, server: Callable[..., Server], stop: threading.Event) -> None:
    """The read given up at the deadline is a thread still blocked in recv(): interpreter
    finalization with it alive aborted the command now and then (exit -6 after its message,
    about one run in three here). Several runs, as the abort came only now and then."""
    silent = server(_silent(stop))
    config = _with_api(tmp_path, recorded, silent.port)
    for _ in range(4):
        _one_line_exit_3(_status(config, "--deadline", "2"), "giving up")


# -- bad configuration -------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "needle"), [
    ("mysql://root@127.0.0.1/sysinv", "mysql"),
    ("mysql+pymysql://root:secret@127.0.0.1/sysinv", "mysql"),
    ("this is not a url", "URL"),
    ("://", "URL"),
], ids=["mysql", "mysql-pymysql", "not-a-url", "empty-scheme"])
def test_unsupported_or_malformed_database_url_is_one_line(tmp_path: Path, recorded: Path, url: str,
                                                           needle: str) -> None:
    result = _status(_with_database(tmp_path, recorded, url))
    _one_line_exit_3(result, needle)
    assert "secret" not in result.stderr


# -- junk from the API server ------------------------------------------------------------------
@pytest.mark.parametrize("serve", [
    _answer(b"this is not json"),
    _answer(b"[" * 100_000 + b"]" * 100_000),
    _answer(b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    _answer(b"[1, 2, 3]"),
    _answer(b'{"items": "nodes"}'),
    _raw(b"\x00\xff garbage that is not HTTP\r\n\r\n"),
    _answer(b"<html>proxy error</html>", status="502 Bad Gateway"),
], ids=["not-json", "nested-100000", "items-nested-100000", "list", "items-string",
        "not-http", "html-502"])
def test_api_answering_junk_is_one_line(tmp_path: Path, recorded: Path,
                                        server: Callable[..., Server],
                                        serve: Callable[[socket.socket], None]) -> None:
    junk = server(serve)
    _one_line_exit_3(_status(_with_api(tmp_path, recorded, junk.port)), "list nodes")


# -- hostile kubeconfigs -----------------------------------------------------------------------
def _billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1', x: *i}}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("content", "needle"), [
    ("[" * 100_000 + "]" * 100_000, "nested"),
    ("a:\n" + "".join(" " * i + "- \n" for i in range(1, 2000)), "nested"),
    (_billion_laughs(), "alias"),
], ids=["flow-nested-100000", "block-nested", "billion-laughs"])
def test_hostile_kubeconfig_is_one_line(tmp_path: Path, recorded: Path, content: str,
                                        needle: str) -> None:
    kubeconfig = tmp_path / "evil-kubeconfig"
    kubeconfig.write_text(content)
    result = _status(_with_kubeconfig(tmp_path, recorded, kubeconfig))
    _one_line_exit_3(result, needle)
    assert "kubeconfig" in result.stderr


def test_node_fields_of_the_wrong_type_are_read_as_absent_not_a_traceback(
        tmp_path: Path, recorded: Path, server: Callable[..., Server]) -> None:
    junk = server(_answer(b'{"items": [{"metadata": "x", "status": [1]}, 7]}'))
    result = _status(_with_api(tmp_path, recorded, junk.port))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "no Kubernetes node has systemUUID" in result.stderr  # our host: its node is not there
