"""The floor of the scale bench's burst: the conductor's RPC servers around a method that does
nothing. ``running(config)`` (used by benchmarks/sysinv_scale.py) runs it as
``python -m benchmarks.sysinv_floor CONFIG``.

The process serves with cmd/conductor's ``start_rpc_servers`` (the same oslo.messaging server or
ZeroMQ server, in a process set up like the conductor's: ``sysinv_ext.cmd`` is imported before
oslo.messaging, so the threads-only setup applies), prints one line once it serves, and stops
when its stdin closes. Importing this module imports nothing of the services.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

READY = "floor serving"
ROOT = Path(__file__).resolve().parent.parent


class EmptyConductor:
    """The conductor's RPC method, doing nothing."""

    def __init__(self) -> None:
        import oslo_messaging as messaging

        self.target = messaging.Target(version="1.1")

    def device_plugin_labels_update_by_ihost(self, context: Any, host_uuid: Any, device_plugins: Any = None,
                                             device_plugin_labels: Any = None) -> dict[str, Any]:
        return {"node": None, "labels": {}, "removed": []}


@contextmanager
def running(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The floor process serving ``config`` for the block; RuntimeError if it never serves. At
    the end its stdin is closed and its exit awaited (killed after 30 s)."""
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.sysinv_floor", str(config)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    assert server.stdout is not None and server.stdin is not None
    try:
        if server.stdout.readline().decode().strip() != READY:
            raise RuntimeError(f"the floor's empty conductor ({config}) never served")
        yield server
    finally:
        with contextlib.suppress(OSError):
            server.stdin.close()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def main(argv: list[str]) -> int:
    from oslo_config import cfg

    from sysinv_ext.cmd import conductor as cmd  # threads_only() before oslo.messaging loads
    from sysinv_ext.cmd import parse_args
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
