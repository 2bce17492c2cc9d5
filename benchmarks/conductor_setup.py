"""What the conductor benchmarks share: the broker, the plugins file, host UUIDs, the
in-process conductor's configuration, and waiting on a condition.

benchmarks/sysinv.py (emulated API server), benchmarks/cluster.py (the real one) and
benchmarks/sysinv_scale.py (conductor processes) each built these alike; one copy keeps
their figures comparable.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from oslo_config import cfg

RABBIT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
PLUGINS = {"intel-gpu-plugin": "intelgpu=enabled"}

T = TypeVar("T")


def host_uuid(i: int) -> str:
    """The ``i``-th benchmark host's UUID (also its node's systemUUID)."""
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def conductor_conf(tmp: Path, kubeconfig: Path, topic: str, host: str) -> cfg.ConfigOpts:
    """A private ConfigOpts for an in-process ConductorManager on RabbitMQ: ``topic``, ``host``,
    state and enabled_kube_plugins under ``tmp``, the API server of ``kubeconfig``."""
    from sysinv_ext.common import rpc
    from sysinv_ext.conf import register_conductor_opts

    plugins = tmp / "enabled_kube_plugins"
    plugins.write_text(json.dumps(PLUGINS))
    conf = cfg.ConfigOpts()
    register_conductor_opts(conf)
    rpc.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("transport_url", RABBIT_URL)
    conf.set_override("topic", topic, "conductor")
    conf.set_override("host", host, "conductor")
    conf.set_override("state_path", str(tmp / "state"), "conductor")
    conf.set_override("enabled_kube_plugins", str(plugins), "conductor")
    conf.set_override("kubeconfig", str(kubeconfig), "kubernetes")
    return conf


def wait(what: str, condition: Callable[[], T], timeout: float = 60, interval: float = 0.01) -> T:
    """Poll ``condition`` until it returns something true, and return that; RuntimeError naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)
