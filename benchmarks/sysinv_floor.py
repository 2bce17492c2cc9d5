"""The floor of the scale bench's burst: the conductor's RPC servers around a method that does
nothing. Run as ``python -m benchmarks.sysinv_floor CONFIG`` by benchmarks/sysinv_scale.py.

It serves with cmd/conductor's ``start_rpc_servers`` (the same oslo.messaging server or ZeroMQ
server, in a process set up like the conductor's: ``sysinv_ext.cmd`` is imported first, so the
threads-only setup applies), prints one line once it serves, and stops when its stdin closes.
"""
from __future__ import annotations

import sys
import threading
from typing import Any

from sysinv_ext.cmd import conductor as cmd  # first: threads_only() before oslo.messaging loads
from sysinv_ext.cmd import parse_args

READY = "floor serving"


class EmptyConductor:
    """The conductor's RPC method, doing nothing."""

    def __init__(self) -> None:
        import oslo_messaging as messaging

        self.target = messaging.Target(version="1.1")

    def device_plugin_labels_update_by_ihost(self, context: Any, host_uuid: Any, device_plugins: Any = None,
                                             device_plugin_labels: Any = None) -> dict[str, Any]:
        return {"node": None, "labels": {}, "removed": []}


def main(argv: list[str]) -> int:
    from oslo_config import cfg

    from sysinv_ext.common import rpc

    conf = cfg.CONF  # oslo.messaging registers some of its options on the global one only
    parse_args(conf, ["--config-file", argv[0]], prog="bench-floor", project=cmd.PROJECT,
               register=cmd.register, setup_logging=False)
    rpc.register_opts(conf)
    term = threading.Event()
    servers = cmd.start_rpc_servers(conf, EmptyConductor(), term)
    if not servers.started.wait(120):
        return 1
    print(READY, flush=True)
    sys.stdin.read()  # until the bench closes it
    term.set()
    cmd.stop_rpc_servers(servers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
