"""Issue 21 item 7: the ZeroMQ RPC is loopback-only by default, and optionally CURVE-authenticated
between our agent and our conductor (libzmq's CurveZMQ, pyzmq's ZAP authenticator).

Real servers and clients on free 127.0.0.1 ports; keys made by ``zmq_curve.create_key_pair``
under tmp_path. A refused caller gets no answer at all (libzmq drops the handshake), so those
cases wait for a short client timeout.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from sysinv_ext.cmd import agent as agent_cmd
from sysinv_ext.cmd import conductor as conductor_cmd
from sysinv_ext.common import zmq_curve, zmq_rpc
from sysinv_ext.common.context import get_admin_context
from sysinv_ext.conductor.manager import ConductorManager
from sysinv_ext.conf import zeromq
from tests.fakes.kube_api import FakeKubeAPI
from tests.sysinv.conftest import GPU_PLUGINS_2019, HOST_A


class Echo:
    def echo(self, context: Any, **kwargs: Any) -> Any:
        return kwargs


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """conductor and agent key pairs; the agent's public key in the allowed directory."""
    server_pub, server_sec = zmq_curve.create_key_pair(str(tmp_path / "conductor"), "conductor")
    agent_pub, agent_sec = zmq_curve.create_key_pair(str(tmp_path / "agent"), "agent")
    _, other_sec = zmq_curve.create_key_pair(str(tmp_path / "other"), "other")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(agent_pub, allowed / "agent.key")
    return {"server_pub": Path(server_pub), "server_sec": Path(server_sec), "agent_sec": Path(agent_sec),
            "other_sec": Path(other_sec), "allowed": allowed, "allowed_agent": allowed / "agent.key"}


def _server(keys: dict[str, Path]) -> zmq_rpc.ZmqRpcServer:
    curve = zmq_curve.load_server_keys(str(keys["server_sec"]), str(keys["allowed"]))
    return zmq_rpc.ZmqRpcServer(Echo(), ["echo"], "127.0.0.1", 0, curve=curve).start()


def _call(server: zmq_rpc.ZmqRpcServer, secret: Path | None, server_pub: Path, timeout: float) -> Any:
    curve = None if secret is None else zmq_curve.load_client_keys(str(secret), str(server_pub))
    client = zmq_rpc.ZmqRpcClient(server.endpoint, timeout=timeout, curve=curve)
    try:
        return client.call("echo", {}, host_uuid="h")
    finally:
        client.close()


def test_key_files_are_written_0600_for_the_secret(keys: dict[str, Path]) -> None:
    assert keys["server_sec"].stat().st_mode & 0o777 == 0o600
    assert keys["server_pub"].stat().st_mode & 0o777 == 0o644


def test_curve_serves_allowed_agents_only(keys: dict[str, Path]) -> None:
    server = _server(keys)
    try:
        assert _call(server, keys["agent_sec"], keys["server_pub"], 10) == {"host_uuid": "h"}
        with pytest.raises(zmq_rpc.TimeoutExpired):  # a key not in the allowed directory
            _call(server, keys["other_sec"], keys["server_pub"], 1.5)
        with pytest.raises(zmq_rpc.TimeoutExpired):  # a plain (anonymous) zerorpc caller
            _call(server, None, keys["server_pub"], 1.5)
        keys["allowed_agent"].unlink()  # revoked: its next connection is refused
        with pytest.raises(zmq_rpc.TimeoutExpired):
            _call(server, keys["agent_sec"], keys["server_pub"], 1.5)
    finally:
        server.stop()


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604])
def test_secret_key_file_others_may_read_is_refused(keys: dict[str, Path], mode: int) -> None:
    os.chmod(keys["agent_sec"], mode)
    with pytest.raises(zmq_curve.CurveKeyError, match="chmod 600"):
        zmq_curve.load_client_keys(str(keys["agent_sec"]), str(keys["server_pub"]))


@pytest.mark.parametrize(("what", "message"), [
    ("public-as-secret", "no secret key"), ("missing", "No such file"), ("garbage", "not a CURVE")])
def test_bad_key_file_is_one_clear_error(keys: dict[str, Path], tmp_path: Path, what: str,
                                         message: str) -> None:
    path = {"public-as-secret": keys["server_pub"], "missing": tmp_path / "nope.key_secret"}.get(what)
    if path is None:
        path = tmp_path / "garbage.key_secret"
        path.write_text("not a certificate\n")
        path.chmod(0o600)
    if what == "public-as-secret":
        path.chmod(0o600)
    with pytest.raises(zmq_curve.CurveKeyError, match=message):
        zmq_curve.load_server_keys(str(path), str(keys["allowed"]))


def _agent_conf(**overrides: Any) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    agent_cmd.register(conf)
    conf([], default_config_files=[])
    for name, value in overrides.items():
        group, _, opt = name.rpartition("__")
        conf.set_override(opt, value, group or None)
    return conf


def test_our_agent_and_conductor_over_curve_from_their_options(
        keys: dict[str, Path], conductor_conf: cfg.ConfigOpts, manager: ConductorManager,
        fake_kube: FakeKubeAPI, write_plugins: Any) -> None:
    write_plugins(GPU_PLUGINS_2019)
    fake_kube.add_node("worker-0", HOST_A)
    conductor_conf.set_override("rpc_backend_zeromq", True)
    conductor_conf.set_override("rpc_zeromq_conductor_bind_port", 0)
    conductor_conf.set_override("curve_secret_key_file", str(keys["server_sec"]), "zeromq")
    conductor_conf.set_override("curve_allowed_clients_dir", str(keys["allowed"]), "zeromq")
    conductor_cmd.check(conductor_conf)
    stop = threading.Event()
    servers = conductor_cmd.start_rpc_servers(conductor_conf, manager, stop)
    assert servers.started.wait(10)
    port = int(servers.endpoint.rsplit(":", 1)[1])
    conf = _agent_conf(rpc_backend_zeromq=True, rpc_zeromq_conductor_bind_port=port, agent__rpc_timeout=10,
                       zeromq__curve_secret_key_file=str(keys["agent_sec"]),
                       zeromq__curve_server_key_file=str(keys["server_pub"]))
    agent_cmd.check(conf)
    _, api = agent_cmd.conductor_api(conf)
    try:
        result = api.device_plugin_labels_update_by_ihost(get_admin_context(), HOST_A,
                                                          {"intelgpu": "enabled"})
        assert result["labels"] == {"intelgpu": "enabled"}
        assert fake_kube.node_labels("worker-0")["intelgpu"] == "enabled"
    finally:
        api.close()
        conductor_cmd.stop_rpc_servers(servers)


@pytest.mark.parametrize("side", ["conductor", "agent"])
def test_curve_secret_without_its_companion_option_is_a_usage_error(
        keys: dict[str, Path], conductor_conf: cfg.ConfigOpts, side: str) -> None:
    if side == "conductor":
        conf, check, missing = conductor_conf, conductor_cmd.check, "curve_allowed_clients_dir"
    else:
        conf, check, missing = _agent_conf(), agent_cmd.check, "curve_server_key_file"
    conf.set_override("rpc_backend_zeromq", True)
    conf.set_override("curve_secret_key_file", str(keys["server_sec"]), "zeromq")
    with pytest.raises(ValueError, match=missing):
        check(conf)


def test_default_bind_address_is_loopback_with_a_hint_to_bind_the_management_address(
        conductor_conf: cfg.ConfigOpts, manager: ConductorManager,
        caplog: pytest.LogCaptureFixture) -> None:
    """It was '::' (every interface, no authentication)."""
    fresh = cfg.ConfigOpts()
    zeromq.register_opts(fresh)
    fresh([], default_config_files=[])
    assert fresh.rpc_zeromq_conductor_bind_ip == "127.0.0.1"
    conductor_conf.set_override("rpc_backend_zeromq", True)
    conductor_conf.set_override("rpc_zeromq_conductor_bind_port", 0)
    stop = threading.Event()
    with caplog.at_level(logging.INFO):
        servers = conductor_cmd.start_rpc_servers(conductor_conf, manager, stop)
        assert servers.started.wait(10)
    try:
        assert servers.endpoint.startswith("tcp://[127.0.0.1]:")
        hints = [r.getMessage() for r in caplog.records if "loopback only" in r.getMessage()]
        assert len(hints) == 1 and "rpc_zeromq_conductor_bind_ip" in hints[0]
    finally:
        conductor_cmd.stop_rpc_servers(servers)


@pytest.mark.parametrize("program", ["conductor", "agent"])
def test_readable_secret_key_is_a_one_line_usage_error(keys: dict[str, Path], tmp_path: Path,
                                                       program: str) -> None:
    secret = keys["server_sec"] if program == "conductor" else keys["agent_sec"]
    secret.chmod(0o644)
    config = tmp_path / f"{program}.conf"
    config.write_text(f"[DEFAULT]\nrpc_backend_zeromq = true\n[zeromq]\ncurve_secret_key_file = {secret}\n"
                      f"curve_allowed_clients_dir = {keys['allowed']}\n"
                      f"curve_server_key_file = {keys['server_pub']}\n")
    done = subprocess.run([sys.executable, "-m", f"sysinv_ext.cmd.{program}", "--config-file", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "chmod 600" in done.stderr
