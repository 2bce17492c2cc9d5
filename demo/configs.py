"""Configuration files the demo generates for the real programs it starts.

oslo.config files for ``sysinv-gpu-conductor`` and ``sysinv-gpu-agent`` (same options a StarlingX
controller would set in /etc/sysinv-gpu/*.conf), and the extra-vars file for
``ansible-playbook playbooks/bootstrap.yml`` (like StarlingX's localhost.yml overrides).
Every path points into the demo's temp dir.
"""
from __future__ import annotations

import configparser
import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Messaging:
    """Where agent and conductor meet: transport URL, exchange and conductor topic."""

    transport_url: str
    exchange: str
    topic: str
    zmq_port: int | None = None  # set: sysinv's ZeroMQ RPC on 127.0.0.1:zmq_port, no broker

    @property
    def in_process(self) -> bool:
        return self.zmq_port is None and self.transport_url.startswith("fake:")

    def defaults(self) -> dict[str, str]:
        """The [DEFAULT] section both services get."""
        values = {"transport_url": self.transport_url, "control_exchange": self.exchange}
        if self.zmq_port is not None:
            values.update(rpc_backend_zeromq="true", rpc_zeromq_conductor_bind_ip="127.0.0.1",
                          rpc_zeromq_conductor_bind_port=str(self.zmq_port))
        return values


def _write_ini(path: Path, sections: dict[str, dict[str, str]]) -> Path:
    parser = configparser.ConfigParser(interpolation=None)
    for section, options in sections.items():
        if section != "DEFAULT":
            parser.add_section(section)
        for key, value in options.items():
            parser.set(section, key, value)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as handle:
        parser.write(handle)
    os.replace(tmp, path)
    return path


def conductor_conf(path: Path, msg: Messaging, *, host: str, enabled_kube_plugins: Path,
                   kubeconfig: Path, database: Path, audit_interval: int = 5,
                   metrics_address: str = "") -> Path:
    return _write_ini(path, {
        "DEFAULT": {**msg.defaults(), "metrics_address": metrics_address},
        "conductor": {"topic": msg.topic, "host": host, "state_path": str(database.parent),
                      "enabled_kube_plugins": str(enabled_kube_plugins),
                      "audit_interval": str(audit_interval)},
        "kubernetes": {"kubeconfig": str(kubeconfig)},
        "database": {"connection": f"sqlite:///{database}"},
    })


def agent_conf(path: Path, msg: Messaging, *, sysfs_root: Path, report_interval: int = 1,
               payload_format: str = "2023", metrics_address: str = "") -> Path:
    """host_uuid is left unset on purpose: the agent reads it from the fake DMI product_uuid.

    Short intervals and timeouts so that the demo notices changes within seconds; no udev (the
    fake sysfs sends no events, the periodic rescan finds them)."""
    return _write_ini(path, {
        "DEFAULT": {**msg.defaults(), "metrics_address": metrics_address},
        "agent": {"sysfs_root": str(sysfs_root), "report_interval": str(report_interval),
                  "conductor_topic": msg.topic, "payload_format": payload_format,
                  "rpc_timeout": "5", "retry_backoff_max": "2", "udev_events": "false"},
    })


def bootstrap_vars(path: Path, *, platform_conf_dir: Path, kubeconfig: Path, manifest_dir: Path,
                   python: str, kubectl: str = "/usr/bin/kubectl",
                   plugins: list[str] | None = None) -> Path:
    """Extra vars for playbooks/bootstrap.yml, like a StarlingX localhost.yml override file."""
    overrides = {
        "import_plugins": True,
        "kube_plugins": plugins or ["intel-gpu-plugin"],
        "platform_conf_dir": str(platform_conf_dir),
        "kubeconfig": str(kubeconfig),
        "kubectl_cmd": kubectl,
        "kube_plugin_manifest_dir": str(manifest_dir),
        # the fake API server serves no /openapi: kubectl must not validate client-side
        "bringup_kubemaster_kubectl_validate": False,
        "ansible_python_interpreter": python,
    }
    path.write_text(json.dumps(overrides, indent=2))
    return path
