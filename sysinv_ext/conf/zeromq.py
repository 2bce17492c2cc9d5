"""sysinv's ZeroMQ RPC options, in ``[DEFAULT]`` under sysinv's own names.

sysinv (openstack/common/rpc/__init__.py) defines ``rpc_backend_zeromq`` (default true there),
``rpc_zeromq_conductor_bind_ip`` ('::') and ``rpc_zeromq_conductor_bind_port`` (9501). We keep
the names, so one line of sysinv.conf reads the same here, but our conductor's default port is
its own: 9501 belongs to sysinv-conductor, and an agent pointed at 9501 talks to sysinv's.
"""
from __future__ import annotations

from oslo_config import cfg

SYSINV_CONDUCTOR_PORT = 9501  # sysinv-conductor's (rpc_zeromq_conductor_bind_port default)
SYSINV_AGENT_PORT = 9502  # sysinv-agent's (rpc_zeromq_agent_bind_port default)
DEFAULT_PORT = 9511  # sysinv-gpu-conductor's

opts = [
    cfg.BoolOpt("rpc_backend_zeromq", default=False,
                help="Use sysinv's ZeroMQ RPC (zerorpc in StarlingX's 4-item dialect, no broker) "
                     "between agent and conductor instead of AMQP over [DEFAULT]transport_url. "
                     "sysinv itself defaults to ZeroMQ since 2022 and uses nothing else since "
                     "2025; set true to reach such a sysinv-conductor (port 9501)."),
    cfg.StrOpt("rpc_zeromq_conductor_bind_ip", default="::",
               help="Conductor: the address its ZeroMQ RPC server binds ('::' = every address). "
                    "Agent: the address of the conductor it calls; '::' means the host "
                    "'controller' (StarlingX's name of the active controller), as sysinv's "
                    "agent does."),
    cfg.PortOpt("rpc_zeromq_conductor_bind_port", default=DEFAULT_PORT,
                help="TCP port of the conductor's ZeroMQ RPC server (bound by the conductor, "
                     "called by the agent; 0 = any free port, conductor only). The default is "
                     "this project's own: 9501 is sysinv-conductor's, so an agent set to 9501 "
                     "reports to sysinv's own conductor."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the three [DEFAULT] options on ``conf`` (again is harmless)."""
    conf.register_opts(opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", opts)]
