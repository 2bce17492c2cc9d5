"""A corrupt SQLite label database (random bytes, a truncated copy, a directory in its place):
the ``sysinv-gpu-conductor`` process moves it aside (named in the log) and serves from a fresh
one, never alive-but-deaf; a database it cannot create at all makes it exit 1 at once.
Real conductor process, real RabbitMQ (own topic, deleted afterwards), real SQLite files;
EMULATED: the Kubernetes API (tests/fakes/kube_api.py).
"""
from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from sysinv_ext.common import rpc
from sysinv_ext.conductor.rpcapi import ConductorAPI
from sysinv_ext.db import api as db_api
from sysinv_ext.db import migration
from tests.fakes import rabbit
from tests.fakes.kube_api import FakeKubeAPI
from tests.sysinv.conftest import HOST_A

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.fixture
def topic() -> Iterator[str]:
    reason = rabbit.broker_unreachable_reason()
    if reason:
        pytest.skip(reason)
    name = rabbit.unique_name("sysinv.conductor_manager")
    yield name
    rabbit.delete(queues=[name, f"{name}.ctl-db"])


def _config(tmp_path: Path, topic: str, kubeconfig: Path, db_file: Path) -> Path:
    plugins = tmp_path / "enabled_kube_plugins"
    plugins.write_text(json.dumps({"intel-gpu-plugin": "intelgpu=enabled"}))
    config = tmp_path / "conductor.conf"
    config.write_text(
        f"[DEFAULT]\ntransport_url = {rabbit.URL}\n"
        f"[conductor]\ntopic = {topic}\nhost = ctl-db\nenabled_kube_plugins = {plugins}\n"
        f"state_path = {tmp_path}/state\naudit_interval = 60\n"
        f"[database]\nconnection = sqlite:///{db_file}\n"
        f"[kubernetes]\nkubeconfig = {kubeconfig}\nretry_backoff = 0.01\n")
    return config


def _api(topic: str) -> tuple[messaging.Transport, ConductorAPI]:
    conf = cfg.ConfigOpts()
    rpc.register_opts(conf)
    conf([], default_config_files=[])
    transport = rpc.get_transport(conf, url=rabbit.URL)
    return transport, ConductorAPI(transport, topic=topic, timeout=3, retry=0)


def _good_db(path: Path) -> bytes:
    engine = db_api.get_engine(f"sqlite:///{path}")
    migration.upgrade(engine)
    for i in range(100):
        db_api.label_sync(engine, f"host-{i}", {"intelgpu": "enabled"})
    engine.dispose()
    return path.read_bytes()


def _corrupt(kind: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "random bytes":
        path.write_bytes(os.urandom(64 * 1024))
    elif kind == "truncated":
        data = _good_db(path)
        path.write_bytes(data[: len(data) // 2])
    else:
        path.mkdir()
        (path / "something").write_text("x")


@pytest.mark.parametrize("kind", ["random bytes", "truncated", "a directory"])
def test_corrupt_sqlite_db_set_aside_and_conductor_serves(
        tmp_path: Path, topic: str, fake_kube: FakeKubeAPI, kubeconfig: Path, kind: str) -> None:
    db_file = tmp_path / "state" / "conductor.sqlite"
    _corrupt(kind, db_file)
    fake_kube.add_node("worker-0", HOST_A, {})
    conductor = rabbit.ServiceProcess(
        "sysinv-gpu-conductor", ["--config-file", str(_config(tmp_path, topic, kubeconfig, db_file))],
        tmp_path / "conductor.log").start()
    transport, api = _api(topic)
    try:
        deadline = time.monotonic() + 60
        result = None
        while result is None and conductor.running() and time.monotonic() < deadline:
            try:
                result = api.device_plugin_labels_update_by_ihost({}, HOST_A, {"intelgpu": "enabled"})
            except (messaging.MessagingTimeout, messaging.MessageDeliveryFailure):
                pass
        assert result == {"node": "worker-0", "labels": {"intelgpu": "enabled"}, "removed": []}, \
            conductor.log()
        log = conductor.log()
        match = re.search(r"is corrupt \((.+?)\): moved aside to (\S+);", log)
        assert match, log
        aside = Path(match.group(2))
        assert aside.parent == db_file.parent and aside.name.startswith("conductor.sqlite.corrupt-")
        assert aside.exists() and db_file.is_file()
        assert migration.sqlite_unusable_reason(str(db_file)) is None
        assert "Traceback" not in log
    finally:
        code = conductor.stop(20)
        transport.cleanup()
    assert code == 0


def test_uncreatable_sqlite_db_conductor_exits_1_at_once(tmp_path: Path, topic: str,
                                                         kubeconfig: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the database directory should be")
    db_file = blocker / "conductor.sqlite"
    conductor = rabbit.ServiceProcess(
        "sysinv-gpu-conductor", ["--config-file", str(_config(tmp_path, topic, kubeconfig, db_file))],
        tmp_path / "conductor.log").start()
    assert conductor.proc is not None
    try:
        assert conductor.proc.wait(60) == 1
    finally:
        conductor.stop()  # a conductor that did not exit must not outlive the test
    log = conductor.log()
    assert "Conductor failed: Database error during upgrade" in log and "Traceback" not in log


@pytest.mark.parametrize("kind", ["random bytes", "truncated", "a directory"])
def test_sqlite_unusable_reason_names_corruption(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "db" / "conductor.sqlite"
    _corrupt(kind, path)
    assert migration.sqlite_unusable_reason(str(path))
    moved = migration.set_aside_corrupt_sqlite(f"sqlite:///{path}")
    assert moved is not None and not path.exists() and Path(moved[0]).exists()


def test_sqlite_good_or_absent_db_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "conductor.sqlite"
    assert migration.set_aside_corrupt_sqlite(f"sqlite:///{path}") is None
    _good_db(path)
    assert migration.set_aside_corrupt_sqlite(f"sqlite:///{path}") is None
    assert path.exists() and not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert migration.set_aside_corrupt_sqlite("postgresql+psycopg2://x@127.0.0.1/db") is None
