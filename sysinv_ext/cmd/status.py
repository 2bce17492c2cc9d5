"""``sysinv-gpu-status --config-file conductor.conf [--json]``: is every GPU labelled and allocatable?

Reads what the conductor recorded (its database, through ``db.api``, never written) and the nodes
(one LIST through ``status.kube``), prints one row per host (``status.rows``), and exits 0 when
every row is consistent, 1 naming each inconsistent row on stderr, 2 on a bad command line, 3
when the database or the Kubernetes API cannot be read. Uses the conductor's own config file.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from oslo_config import cfg

from sysinv_ext.cmd import UsageError, parse_args, usage_exit
from sysinv_ext.common import exception
from sysinv_ext.conf import register_conductor_opts
from sysinv_ext.conf.conductor import database_url
from sysinv_ext.status.rows import RecordedHost

PROG = "sysinv-gpu-status"
PROJECT = "sysinv-gpu"
EXIT_INCONSISTENT = 1
EXIT_UNREADABLE = 3

cli_opts = [cfg.BoolOpt("json", default=False, help="Print JSON instead of a table.")]


def register(conf: cfg.ConfigOpts) -> None:
    register_conductor_opts(conf)
    conf.register_cli_opts(cli_opts)


def recorded_hosts(url: str) -> list[RecordedHost]:
    """The hosts in the conductor's database (read only; a missing SQLite file is an error):
    desired labels (None = recorded as absent: the host reported no GPU) and last report time."""
    from sysinv_ext.db import api as db_api
    from sysinv_ext.db.readonly import open_existing

    engine = open_existing(url)
    try:
        states = db_api.host_state_get_all(engine)
    finally:
        engine.dispose()
    return [RecordedHost(uuid, dict(state.labels), state.reported_at)
            for uuid, state in sorted(states.items())]


def run(conf: cfg.ConfigOpts) -> int:
    from sysinv_ext.conductor.plugins import PluginsFile
    from sysinv_ext.status import kube, rows

    try:
        hosts = recorded_hosts(database_url(conf))
        nodes = kube.list_nodes(conf.kubernetes.kubeconfig, context=conf.kubernetes.context,
                                timeout=conf.kubernetes.request_timeout)
    except exception.SysinvExtException as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_UNREADABLE
    table = rows.build_rows(hosts, nodes, PluginsFile(conf.conductor.enabled_kube_plugins).current())
    sys.stdout.write(rows.render_json(table) if conf.json else rows.render_table(table))
    bad = [row for row in table if not row.consistent]
    for row in bad:
        for problem in row.problems:
            print(f"{PROG}: host {row.host_uuid} (node {row.node or '-'}): {problem}", file=sys.stderr)
    return EXIT_INCONSISTENT if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    conf = cfg.ConfigOpts()  # a one-shot command: no global state needed
    try:
        parse_args(conf, argv, prog=PROG, project=PROJECT, register=register, setup_logging=False)
    except UsageError as err:
        return usage_exit(err)
    return run(conf)


if __name__ == "__main__":
    sys.exit(main())
