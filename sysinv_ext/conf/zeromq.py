"""sysinv's ZeroMQ RPC options in ``[DEFAULT]`` under sysinv's own names; our CURVE ones in ``[zeromq]``.

sysinv (openstack/common/rpc/__init__.py) defines ``rpc_backend_zeromq`` (default true there),
``rpc_zeromq_conductor_bind_ip`` ('::') and ``rpc_zeromq_conductor_bind_port`` (9501). We keep
the names, so one line of sysinv.conf reads the same here, but two defaults are our own: the
port (9501 belongs to sysinv-conductor, and an agent pointed at 9501 talks to sysinv's) and the
address, loopback, because the RPC changes node labels and has no authentication unless
``[zeromq]`` CURVE keys are set (possible only between our own agent and conductor: sysinv's
agent and conductor speak plain zerorpc).
"""
from __future__ import annotations

from oslo_config import cfg

SYSINV_CONDUCTOR_PORT = 9501  # sysinv-conductor's (rpc_zeromq_conductor_bind_port default)
SYSINV_AGENT_PORT = 9502  # sysinv-agent's (rpc_zeromq_agent_bind_port default)
DEFAULT_PORT = 9511  # sysinv-gpu-conductor's
DEFAULT_BIND_IP = "127.0.0.1"
LOOPBACK = ("127.0.0.1", "::1", "localhost")

opts = [
    cfg.BoolOpt("rpc_backend_zeromq", default=False,
                help="Use sysinv's ZeroMQ RPC (zerorpc in StarlingX's 4-item dialect, no broker) "
                     "between agent and conductor instead of AMQP over [DEFAULT]transport_url. "
                     "sysinv itself defaults to ZeroMQ since 2022 and uses nothing else since "
                     "2025; set true to reach such a sysinv-conductor (port 9501)."),
    cfg.StrOpt("rpc_zeromq_conductor_bind_ip", default=DEFAULT_BIND_IP,
               help="Conductor: the address its ZeroMQ RPC server binds. The default is "
                    "loopback, so only agents on the same host can call it; to serve the "
                    "agents of other hosts, set the management address (StarlingX: the "
                    "controller's management floating address), never a public one, and "
                    "consider [zeromq] CURVE keys. '::' binds every address, as sysinv does. "
                    "Agent: the address of the conductor it calls; '::' means the host "
                    "'controller' (StarlingX's name of the active controller), as sysinv's "
                    "agent does."),
    cfg.PortOpt("rpc_zeromq_conductor_bind_port", default=DEFAULT_PORT,
                help="TCP port of the conductor's ZeroMQ RPC server (bound by the conductor, "
                     "called by the agent; 0 = any free port, conductor only). The default is "
                     "this project's own: 9501 is sysinv-conductor's, so an agent set to 9501 "
                     "reports to sysinv's own conductor."),
]

curve_group = cfg.OptGroup(
    "zeromq", title="ZeroMQ CURVE authentication",
    help="Optional CurveZMQ (libzmq's authenticated encryption) between our agent and our "
         "conductor. Only for sysinv-gpu-agent -> sysinv-gpu-conductor: sysinv's own agent "
         "and conductor speak plain zerorpc and cannot use it. Create key pairs with "
         "sysinv_ext.common.zmq_curve.create_key_pair (NAME.key public, NAME.key_secret 0600).")

curve_opts: list[cfg.Opt] = [
    cfg.StrOpt("curve_secret_key_file",
               help="This service's CURVE certificate with its secret key (NAME.key_secret), "
                    "readable by its owner only (mode 0600; a file others may read is refused). "
                    "Set on the conductor, it turns CURVE on: only agents whose public key is "
                    "in curve_allowed_clients_dir are served, and no plain caller is. Set on "
                    "the agent, it calls with this key (and needs curve_server_key_file)."),
    cfg.StrOpt("curve_allowed_clients_dir",
               help="Conductor: directory of the public key files (NAME.key) of the agents "
                    "allowed to call; re-read when its content changes, so removing a file "
                    "revokes that agent (for its next connection). Required with curve_secret_key_file."),
    cfg.StrOpt("curve_server_key_file",
               help="Agent: the conductor's public key file (NAME.key). Required with "
                    "curve_secret_key_file."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the [DEFAULT] and [zeromq] options on ``conf`` (again is harmless)."""
    conf.register_opts(opts)
    # a fresh OptGroup per ConfigOpts: a registered group object keeps that ConfigOpts' options
    # (and their overrides), so sharing one would leak them between ConfigOpts
    conf.register_group(cfg.OptGroup(curve_group.name, title=curve_group.title,
                                     help=curve_group.help))
    conf.register_opts(curve_opts, group=curve_group.name)


def list_opts() -> list[tuple[str | cfg.OptGroup, list[cfg.Opt]]]:
    return [("DEFAULT", opts), (curve_group, curve_opts)]


def is_loopback(ip: str) -> bool:
    return ip.strip().lower() in LOOPBACK or ip.strip().startswith("127.")
