"""Fixtures for the sysinv_ext conductor tests.

EMULATED: the Kubernetes API is tests/fakes/kube_api.py (a real HTTP server reached through the
official client); RPC uses oslo.messaging's in-process ``fake:/`` driver here (RabbitMQ in the
service tests). Everything else is real: SQLite/PostgreSQL through SQLAlchemy, alembic,
files under tmp_path. Each test builds a fresh ``cfg.ConfigOpts()``.
"""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from sysinv_ext.common import rpc
from sysinv_ext.conductor.manager import ConductorManager
from sysinv_ext.conductor.rpcapi import ConductorAPI
from sysinv_ext.conf import register_conductor_opts
from sysinv_ext.db import migration
from tests.fakes.kube_api import FakeKubeAPI
from tests.fakes.postgres import throwaway_database

HOST_A = "4C4C4544-0042-3510-8051-B4C04F4A4E31"  # as dmidecode prints it: upper case
HOST_B = "0b5e2a5c-1111-4d2c-9c3a-5a1d6f0e7b22"
GPU_PLUGINS_2019 = {"intel-gpu-plugin": "intelgpu=enabled"}


def tcp_reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of the PostgreSQL server at 127.0.0.1:5432 (trust auth); skips when unreachable."""
    if not tcp_reachable("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    return "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A throwaway PostgreSQL database for one test, dropped afterwards."""
    with throwaway_database("sysinv_ext_test") as url:
        yield url


@pytest.fixture
def fake_kube() -> Iterator[FakeKubeAPI]:
    api = FakeKubeAPI().start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def kubeconfig(tmp_path: Path, fake_kube: FakeKubeAPI) -> Path:
    return fake_kube.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def plugins_path(tmp_path: Path) -> Path:
    return tmp_path / "platform" / "enabled_kube_plugins"


@pytest.fixture
def write_plugins(plugins_path: Path) -> Callable[[Any], Path]:
    """Write enabled_kube_plugins atomically (as the role does); a str is written verbatim."""
    def write(content: Any) -> Path:
        plugins_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = plugins_path.with_suffix(".tmp")
        tmp.write_text(content if isinstance(content, str) else json.dumps(content))
        tmp.replace(plugins_path)
        return plugins_path
    return write


@pytest.fixture
def conductor_conf(tmp_path: Path, kubeconfig: Path, plugins_path: Path) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    register_conductor_opts(conf)
    rpc.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("transport_url", "fake:/")
    conf.set_override("host", "conductor-test", "conductor")
    conf.set_override("state_path", str(tmp_path / "state"), "conductor")
    conf.set_override("enabled_kube_plugins", str(plugins_path), "conductor")
    conf.set_override("allowed_label_keys", ["intelqat"], "conductor")  # the tests' second plugin
    conf.set_override("kubeconfig", str(kubeconfig), "kubernetes")
    conf.set_override("retry_backoff", 0.01, "kubernetes")
    return conf


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` s (conditions, never a fixed sleep)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def cache_caught_up(manager: ConductorManager, api: FakeKubeAPI) -> bool:
    """True when the manager's node cache holds every node at the server's resourceVersion."""
    cached = {n.name: n.resource_version for n in manager.cache.nodes()}
    served = {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
              for o in api.list_objects("v1", "nodes")}
    return manager.cache.synced and cached == served


def sync_cache(manager: ConductorManager, api: FakeKubeAPI, timeout: float = 10.0) -> None:
    """Start the manager's cache and wait until it has seen every change on the server."""
    manager.start()
    assert wait_for(lambda: cache_caught_up(manager, api), timeout), "node cache did not catch up"


def make_manager(conf: cfg.ConfigOpts) -> ConductorManager:
    """A manager on an upgraded database, as the service builds it."""
    manager = ConductorManager(conf)
    migration.upgrade(manager.engine)
    return manager


@pytest.fixture
def manager(conductor_conf: cfg.ConfigOpts) -> Iterator[ConductorManager]:
    mgr = make_manager(conductor_conf)
    yield mgr
    mgr.close()
    mgr.engine.dispose()


class RpcPair:
    """A conductor RPC server and an agent-side ConductorAPI on one fake:/ transport."""

    def __init__(self, conf: cfg.ConfigOpts, manager: ConductorManager) -> None:
        self.transport = rpc.get_transport(conf)
        target = messaging.Target(topic=conf.conductor.topic, server=conf.conductor.host)
        self.server = rpc.get_server(conf, target, [manager], self.transport)
        self.server.start()
        self.api = ConductorAPI(self.transport, topic=conf.conductor.topic, timeout=10)

    def call(self, **kwargs: Any) -> Any:
        """Raw call with exactly these wire keyword arguments (what any agent could send)."""
        cctxt = self.api.client.prepare(version="1.0")
        return cctxt.call({"request_id": "req-test"}, "device_plugin_labels_update_by_ihost", **kwargs)

    def close(self) -> None:
        rpc.stop_server(self.server)


@pytest.fixture
def rpc_pair(conductor_conf: cfg.ConfigOpts, manager: ConductorManager) -> Iterator[RpcPair]:
    pair = RpcPair(conductor_conf, manager)
    yield pair
    pair.close()
