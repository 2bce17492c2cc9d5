"""What the conductor benchmarks share: the broker, the plugins file, host UUIDs and the
in-process conductor's configuration.

benchmarks/sysinv.py (emulated API server), benchmarks/cluster.py (the real one) and
benchmarks/sysinv_scale.py (conductor processes) each built these alike; one copy keeps
their figures comparable.
"""
from __future__ import annotations

import json
from pathlib import Path

from oslo_config import cfg

RABBIT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
PLUGINS = {"intel-gpu-plugin": "intelgpu=enabled"}


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
