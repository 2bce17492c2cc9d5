"""The ``sysinv-gpu-conductor`` command as a process: RabbitMQ RPC (real broker at
127.0.0.1:5672, skipped with a reason when absent), alembic upgrade at start, audit thread,
SIGTERM -> exit 0, restart keeps state; bad flags and bad config -> exit 2 with one stderr line.
EMULATED: the Kubernetes API (tests/fakes/kube_api.py); the agent side is the real ConductorAPI.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from sysinv_ext.common import exception, rpc
from sysinv_ext.conductor.rpcapi import ConductorAPI
from tests.fakes import rabbit as rabbit_fake
from tests.fakes.kube_api import FakeKubeAPI
from tests.fakes.legacy_sysinv import LegacyAgentClient
from tests.sysinv.conftest import HOST_A, HOST_B, tcp_reachable

RABBIT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
ROOT = Path(__file__).resolve().parents[2]


def _command() -> list[str]:
    script = shutil.which("sysinv-gpu-conductor", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "sysinv_ext.cmd.conductor"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_command(), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


# -- bad input: exit 2, exactly one stderr line ---------------------------------------------


@pytest.mark.parametrize(("args", "fragment"), [
    (["--bogus"], "--bogus"),
    (["--config-file"], "--config-file"),
    (["--config-file", "/nonexistent/conductor.conf"], "/nonexistent/conductor.conf"),
])
def test_bad_flags_exit_2_one_line(args: list[str], fragment: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0] and "Traceback" not in result.stderr


def test_bad_option_value_exit_2_one_line(tmp_path: Path) -> None:
    path = tmp_path / "conductor.conf"
    path.write_text("[conductor]\naudit_interval = 0\n")
    result = _run("--config-file", str(path))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "audit_interval" in result.stderr


# -- the running service over RabbitMQ ------------------------------------------------------


@pytest.fixture(scope="module")
def rabbit() -> str:
    if not tcp_reachable("127.0.0.1", 5672):
        pytest.skip("RabbitMQ is not reachable at 127.0.0.1:5672")
    return RABBIT_URL


class Conductor:
    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([*_command(), "--config-file", str(self.config)], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def conductor_pair(tmp_path: Path, database: str, kubeconfig: Path) -> Iterator[dict[str, Any]]:
    """Two conductor processes' configurations (not started): controller-0 and controller-1 on one
    topic, one database and one API server, with short lease timings; yields ``conductors``,
    ``transport`` and an agent-side ``api``; kills both and deletes their queues at the end.
    Shared by the HA tests on the emulated API server and on the real one."""
    topic = "sysinv.conductor_manager.ha-" + uuid.uuid4().hex[:8]
    plugins = tmp_path / "enabled_kube_plugins"
    plugins.write_text(json.dumps({"intel-gpu-plugin": "intelgpu=enabled"}))
    conductors = {}
    for name in ("controller-0", "controller-1"):
        config = tmp_path / f"{name}.conf"
        log = tmp_path / f"{name}.log"
        config.write_text(
            f"[DEFAULT]\ntransport_url = {RABBIT_URL}\nlog_file = {log}\n"
            f"[conductor]\ntopic = {topic}\nhost = {name}\nenabled_kube_plugins = {plugins}\n"
            f"state_path = {tmp_path}/{name}\naudit_interval = 1\n"
            "lease_duration = 4\nlease_renew_deadline = 3\nlease_retry_period = 0.5\n"
            f"[database]\nconnection = {database}\n"
            f"[kubernetes]\nkubeconfig = {kubeconfig}\nretry_backoff = 0.01\n")
        conductors[name] = Conductor(config, log)
    conf = cfg.ConfigOpts()
    rpc.register_opts(conf)
    conf([], default_config_files=[])
    transport = rpc.get_transport(conf, url=RABBIT_URL)
    try:
        yield {"conductors": conductors, "transport": transport,
               "api": ConductorAPI(transport, topic=topic, timeout=5, retry=0)}
    finally:
        for conductor in conductors.values():
            conductor.kill()
        transport.cleanup()
        rabbit_fake.delete(queues=[topic] + [f"{topic}.{name}" for name in conductors])


@pytest.fixture
def service(rabbit: str, tmp_path: Path, fake_kube: FakeKubeAPI,
            kubeconfig: Path) -> Iterator[dict[str, Any]]:
    topic = "sysinv.conductor_manager.test-" + uuid.uuid4().hex[:8]  # isolated from other tests
    plugins = tmp_path / "enabled_kube_plugins"
    plugins.write_text(json.dumps({"intel-gpu-plugin": "intelgpu=enabled"}))
    config = tmp_path / "conductor.conf"
    log = tmp_path / "conductor.log"
    config.write_text(
        f"[DEFAULT]\ntransport_url = {rabbit}\nlog_file = {log}\n"
        f"[conductor]\ntopic = {topic}\nhost = test-conductor\nenabled_kube_plugins = {plugins}\n"
        f"state_path = {tmp_path}/state\naudit_interval = 1\n"
        f"[kubernetes]\nkubeconfig = {kubeconfig}\nretry_backoff = 0.01\n")
    conf = cfg.ConfigOpts()
    rpc.register_opts(conf)
    conf([], default_config_files=[])
    transport = rpc.get_transport(conf, url=rabbit)
    conductor = Conductor(config, log)
    try:
        yield {"conductor": conductor, "transport": transport, "topic": topic, "tmp": tmp_path,
               "api": ConductorAPI(transport, topic=topic, timeout=3, retry=0)}
    finally:
        conductor.kill()
        transport.cleanup()
        rabbit_fake.delete(queues=[topic, f"{topic}.test-conductor"])


def _wait_ready(api: ConductorAPI, deadline: float = 60.0) -> Any:
    """First report that gets an answer (the server may still be importing/upgrading)."""
    end = time.monotonic() + deadline
    while True:
        try:
            return api.device_plugin_labels_update_by_ihost({}, HOST_A, {"intelgpu": "enabled"})
        except (messaging.MessagingTimeout, messaging.MessageDeliveryFailure):
            if time.monotonic() > end:
                raise


def _wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_service_labels_audits_restarts_and_stops(service: dict[str, Any], fake_kube: FakeKubeAPI) -> None:
    fake_kube.add_node("worker-0", HOST_A, {"kubernetes.io/hostname": "worker-0"})
    conductor: Conductor = service["conductor"]
    api: ConductorAPI = service["api"]
    conductor.start()
    result = _wait_ready(api)
    assert result == {"node": "worker-0", "labels": {"intelgpu": "enabled"}, "removed": []}
    assert fake_kube.node_labels("worker-0")["intelgpu"] == "enabled"
    assert (service["tmp"] / "state" / "conductor.sqlite").exists()

    # a legacy sysinv agent (oslo-incubator AMQP RPC, 2019 payload, no _reply_q) is served too
    fake_kube.add_node("worker-1", HOST_B)
    legacy = LegacyAgentClient(rabbit_fake.KOMBU_URL, "sysinv", service["topic"])
    legacy.call("device_plugin_labels_update_by_ihost",
                {"host_uuid": HOST_B, "device_plugin_labels": [{"label_key": "intelgpu",
                                                                "label_value": "enabled"}]}, timeout=15)
    assert fake_kube.node_labels("worker-1") == {"intelgpu": "enabled"}

    # garbage comes back as our exception type; a host without a node yet is pending (no
    # error, SPEC section 2); the server keeps serving
    with pytest.raises(exception.InvalidPayload):
        api.client.prepare(version="1.0").call({}, "device_plugin_labels_update_by_ihost",
                                                host_uuid=HOST_A, device_plugins="intelgpu")
    assert api.device_plugin_labels_update_by_ihost(
        {}, "00000000-dead-beef-0000-000000000000", {})["node"] is None

    # label removed by hand -> the audit thread (1 s) puts it back
    fake_kube.put_object({**fake_kube.get_node("worker-0"), "metadata": {"name": "worker-0", "labels": {}}})
    assert _wait_for(lambda: fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"})

    assert conductor.stop() == 0

    # restart on the same database: state kept (label restored with no agent report)
    fake_kube.put_object({**fake_kube.get_node("worker-0"), "metadata": {"name": "worker-0", "labels": {}}})
    conductor.start()
    assert _wait_for(lambda: fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}, timeout=60)
    # the audit can restore the label before the RPC server is up (it starts on its own thread):
    # wait for the restarted conductor to say it serves, then call (3 s timeout, no retry)
    serving = "serving topic {}".format(service["topic"])
    assert _wait_for(lambda: conductor.log.read_text().count(serving) == 2, timeout=60)
    result = api.device_plugin_labels_update_by_ihost({}, HOST_A, {})  # GPU gone
    assert result["removed"] == ["intelgpu"]
    assert fake_kube.node_labels("worker-0") == {}
    assert conductor.stop(signal.SIGINT) == 0
    log = conductor.log.read_text()
    assert "Traceback" not in log
    assert "serving topic {}".format(service["topic"]) in log


@pytest.mark.slow
def test_sigterm_while_broker_unreachable_exits_0(tmp_path: Path) -> None:
    """oslo.messaging retries a refused broker forever inside start(); SIGTERM must still win."""
    config = tmp_path / "conductor.conf"
    log = tmp_path / "conductor.log"
    config.write_text(
        f"[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:{rabbit_fake.free_port()}/\n"
        f"log_file = {log}\n[conductor]\nstate_path = {tmp_path}/state\nleader_election = false\n"
        f"enabled_kube_plugins = {tmp_path}/absent\n[kubernetes]\nkubeconfig = {tmp_path}/absent\n")
    conductor = Conductor(config, log)
    conductor.start()
    try:
        assert _wait_for(lambda: log.exists() and "Connection failed" in log.read_text(), timeout=60)
        started = time.monotonic()
        assert conductor.stop() == 0
        assert time.monotonic() - started < 10
        text = log.read_text()
        assert "Traceback" not in text, "expected failures (no kubeconfig, no broker) are one line each"
        assert "never connected to the broker" in text
    finally:
        conductor.kill()


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_kill_9_during_a_label_removal_converges_after_restart(service: dict[str, Any],
                                                               fake_kube: FakeKubeAPI) -> None:
    """Issue 11 item 4: the database says "absent" before the PATCH; a conductor killed while
    the removal's PATCH hangs leaves the label, and the next conductor removes it."""
    fake_kube.add_node("worker-0", HOST_A)
    conductor: Conductor = service["conductor"]
    api: ConductorAPI = service["api"]
    conductor.start()
    assert _wait_ready(api)["labels"] == {"intelgpu": "enabled"}
    fake_kube.clear_records()
    fake_kube.inject_drop("PATCH", "/nodes/worker-0$", times=1, after=60)  # hangs, never applied
    with pytest.raises(messaging.MessagingTimeout):
        api.device_plugin_labels_update_by_ihost({}, HOST_A, {})  # GPU gone
    assert len(fake_kube.patches) == 1, "the removal's PATCH is in flight"
    conductor.kill()  # SIGKILL
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}
    fake_kube.clear_injections()
    conductor.start()
    assert _wait_for(lambda: fake_kube.node_labels("worker-0") == {}, timeout=60), \
        "the recorded removal is applied by the restarted conductor"
    assert conductor.stop() == 0
