"""Helpers for tests against the real RabbitMQ broker at 127.0.0.1:5672 (guest/guest).

Not a fake broker: it checks reachability, hands out unique exchange/topic names so tests do not
see each other's messages, deletes what a test declared, runs our services as subprocesses
(``ServiceProcess``) with their output in a log file, and emulates broker outages for chosen
clients with a TCP forwarder (``TcpProxy``) instead of stopping RabbitMQ. Imports no pytest.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import kombu

HOST, PORT = "127.0.0.1", 5672
URL = f"rabbit://guest:guest@{HOST}:{PORT}/"
KOMBU_URL = f"amqp://guest:guest@{HOST}:{PORT}//"
MANAGEMENT_API = f"http://{HOST}:15672/api"  # the rabbitmq_management plugin, when enabled


def broker_unreachable_reason(timeout: float = 1.0) -> str | None:
    """None if an AMQP login works, else why not (for ``pytest.skip``)."""
    try:
        with socket.create_connection((HOST, PORT), timeout=timeout):
            pass
    except OSError as err:
        return f"RabbitMQ not reachable at {HOST}:{PORT}: {err}"
    try:
        with kombu.Connection(KOMBU_URL, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as err:  # any login/protocol failure means: skip
        return f"RabbitMQ at {HOST}:{PORT} refused an AMQP login as guest: {err}"
    return None


def wait_port(host: str = HOST, port: int = PORT, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def unique_name(prefix: str) -> str:
    return f"{prefix}-test-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    """A TCP port nothing listens on (for simulated broker outages)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def delete(queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> None:
    """Best-effort removal of test queues/exchanges (ignores ones already gone)."""
    with kombu.Connection(KOMBU_URL, connect_timeout=2) as conn:
        for name in queues:
            try:
                conn.default_channel.queue_delete(name)
            except Exception:
                conn.close()
                conn.connect()
        for name in exchanges:
            try:
                conn.default_channel.exchange_delete(name)
            except Exception:
                conn.close()
                conn.connect()


def list_names(kind: str = "queues") -> list[str] | None:
    """Names of the broker's ``"queues"`` or ``"exchanges"`` on vhost ``/``, or None if unknown.

    AMQP itself cannot list them: this asks the management API if the plugin is enabled, else
    ``rabbitmqctl list_<kind> name`` (which needs the broker's Erlang cookie: root or the
    rabbitmq user on the broker's machine).
    """
    if kind not in ("queues", "exchanges"):
        raise ValueError(f"kind must be 'queues' or 'exchanges', not {kind!r}")
    auth = base64.b64encode(b"guest:guest").decode()
    request = urllib.request.Request(f"{MANAGEMENT_API}/{kind}/%2F?columns=name",
                                     headers={"Authorization": f"Basic {auth}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return [str(item["name"]) for item in json.load(response)]
    except (OSError, ValueError, KeyError, TypeError):  # no management plugin (or no JSON list)
        pass
    try:
        listed = subprocess.run(["rabbitmqctl", "-q", f"list_{kind}", "--no-table-headers", "name"],
                                capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):  # not installed here, no cookie, broker down
        return None
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()]


def delete_prefixed(prefix: str, queues: Iterable[str] = ()) -> list[str]:
    """Delete every queue and exchange whose name starts with ``prefix``, plus ``queues``.

    For names that are not known in advance, e.g. oslo.messaging's ``<topic>_fanout_<uuid>``
    queues and ``<topic>_fanout`` exchange, left behind by a server killed with SIGKILL. When
    the broker's names cannot be listed (:func:`list_names`), only ``queues`` are deleted.
    Returns the queue names deleted (best effort, as :func:`delete`).
    """
    if not prefix:
        raise ValueError("an empty prefix would delete every queue of the broker")
    listed_queues = list_names("queues") or []
    listed_exchanges = list_names("exchanges") or []
    names = sorted({*queues, *(name for name in listed_queues if name.startswith(prefix))})
    delete(queues=names, exchanges=[name for name in listed_exchanges if name.startswith(prefix)])
    return names


def purge(queues: Iterable[str]) -> None:
    """Drop the messages waiting in ``queues`` (ones that do not exist are ignored)."""
    with kombu.Connection(KOMBU_URL, connect_timeout=2) as conn:
        for name in queues:
            try:
                conn.default_channel.queue_purge(name)
            except Exception:  # not declared (yet): nothing to purge; the channel is closed
                conn.close()
                conn.connect()


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class ServiceProcess:
    """One of our console services (``sysinv-gpu-agent``/``-conductor``) as a subprocess."""

    def __init__(self, command: str, args: Sequence[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        exe = Path(sys.executable).with_name(command)
        self.argv = [str(exe), *args]
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)
        log.close()
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait; SIGKILL if it does not stop. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class TcpProxy:
    """A TCP forwarder in front of the real broker, to emulate broker outages and returns.

    ``start()`` listens on ``port`` and pipes each client to ``target``; ``stop()`` closes the
    listener *and* every open connection, which clients see as the broker going away (refused
    connections while stopped). Only this process's clients are affected, not the real broker.
    """

    def __init__(self, port: int, target: tuple[str, int] = (HOST, PORT)) -> None:
        self.port, self.target = port, target
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"rabbit://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone would not free the port
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
