"""Conductor options: registration on a private ConfigOpts, defaults, bounds, the effective
database URL, oslo-config-generator entry points, and that the committed sample is current.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from oslo_config import cfg

from sysinv_ext.conf import conductor as conductor_conf
from sysinv_ext.conf import opts, register_conductor_opts

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "etc" / "sysinv-gpu" / "conductor.conf.sample"


@pytest.fixture
def conf() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    register_conductor_opts(conf)
    return conf


def test_defaults(conf: cfg.ConfigOpts) -> None:
    conf([], default_config_files=[])
    # its own topic, never sysinv-conductor's queue (which would split sysinv's calls)
    assert conf.conductor.topic == "sysinv_gpu.conductor_manager" != "sysinv.conductor_manager"
    assert conf.conductor.enabled_kube_plugins == "/etc/platform/enabled_kube_plugins"
    assert conf.conductor.audit_interval == 60
    assert conf.conductor.host
    assert conf.kubernetes.kubeconfig == "/etc/kubernetes/admin.conf"
    assert conf.kubernetes.retry_attempts == 3
    assert conf.database.connection is None
    assert conductor_conf.database_url(conf) == "sqlite:////var/lib/sysinv-gpu/conductor.sqlite"


def test_config_file_and_effective_db_url(conf: cfg.ConfigOpts, tmp_path: Path) -> None:
    path = tmp_path / "conductor.conf"
    path.write_text(f"[conductor]\naudit_interval = 5\nstate_path = {tmp_path}/state\n"
                    "[kubernetes]\nkubeconfig = /tmp/kc\n")
    conf(["--config-file", str(path)], default_config_files=[])
    assert conf.conductor.audit_interval == 5
    assert conductor_conf.database_url(conf) == f"sqlite:///{tmp_path}/state/conductor.sqlite"
    conf.set_override("connection", "postgresql+psycopg2://u@h/db", "database")
    assert conductor_conf.database_url(conf) == "postgresql+psycopg2://u@h/db"


@pytest.mark.parametrize(("group", "line"), [
    ("conductor", "audit_interval = 0"),
    ("conductor", "audit_interval = soon"),
    ("kubernetes", "retry_attempts = 0"),
    ("kubernetes", "retry_attempts = 11"),
    ("kubernetes", "request_timeout = 0"),
])
def test_bounds_are_enforced(conf: cfg.ConfigOpts, tmp_path: Path, group: str, line: str) -> None:
    path = tmp_path / "bad.conf"
    path.write_text(f"[{group}]\n{line}\n")
    conf(["--config-file", str(path)], default_config_files=[])
    name = line.split(" =")[0]
    with pytest.raises(cfg.ConfigFileValueError):
        getattr(getattr(conf, group), name)


def test_conductor_namespace_lists_every_group() -> None:
    listed = {(getattr(g, "name", g) or "DEFAULT"): [o.name for o in o_list]
              for g, o_list in opts.list_conductor_opts()}
    assert set(listed) == {"DEFAULT", "conductor", "database", "kubernetes", "zeromq"}
    assert {"transport_url", "control_exchange", "metrics_address"} <= set(listed["DEFAULT"])
    assert {"topic", "host", "enabled_kube_plugins", "audit_interval"} <= set(listed["conductor"])
    assert "connection" in listed["database"]
    control_exchange = next(o for g, ol in opts.list_conductor_opts() if g == "DEFAULT"
                            for o in ol if o.name == "control_exchange")
    assert control_exchange.default == "sysinv"


def test_agent_namespace_loads() -> None:
    groups = [getattr(g, "name", g) for g, _ in opts.list_agent_opts()]
    assert "DEFAULT" in groups and "agent" in groups
    default = next(o_list for g, o_list in opts.list_agent_opts() if g == "DEFAULT")
    assert "metrics_address" in [o.name for o in default]


def test_committed_sample_is_current(tmp_path: Path) -> None:
    out = tmp_path / "conductor.conf.sample"
    subprocess.run([sys.executable, "-m", "oslo_config.generator", "--namespace", "sysinv_ext.conductor",
                    "--output-file", str(out)], check=True, capture_output=True, cwd=ROOT)
    assert out.read_text() == SAMPLE.read_text(), (
        "etc/sysinv-gpu/conductor.conf.sample is stale; regenerate with: oslo-config-generator "
        "--namespace sysinv_ext.conductor --output-file etc/sysinv-gpu/conductor.conf.sample")


def test_override_on_one_config_does_not_leak_into_another() -> None:
    first, second = cfg.ConfigOpts(), cfg.ConfigOpts()
    for conf in (first, second):
        register_conductor_opts(conf)
        conf([], default_config_files=[])
    first.set_override("audit_interval", 5, "conductor")
    first.set_override("kubeconfig", "/tmp/kc", "kubernetes")
    assert (first.conductor.audit_interval, first.kubernetes.kubeconfig) == (5, "/tmp/kc")
    assert (second.conductor.audit_interval, second.kubernetes.kubeconfig) == (
        60, "/etc/kubernetes/admin.conf")
