"""``sysinv-gpu-agent --config-file FILE``: the agent service (threads, no eventlet).

Parses config and sets up oslo.log (shared ``parse_args``), builds the RPC transport and
ConductorAPI, starts udev events where available, and runs the detect/report loop in a worker
thread. SIGTERM or SIGINT stop it; only the main thread decides the exit code.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg
from oslo_log import log as logging

# sysinv_ext.cmd (imported first) keeps eventlet out (threads_only) before oslo.messaging loads.
from sysinv_ext.agent.manager import AgentManager
from sysinv_ext.agent.metrics import NO_AGENT_METRICS, agent_metrics
from sysinv_ext.agent.udev import UdevWatcher
from sysinv_ext.cmd import UsageError, parse_args, start_metrics, stop_on_signals, usage_exit
from sysinv_ext.common import fdlimit, rpc
from sysinv_ext.conductor.rpcapi import ConductorAPI
from sysinv_ext.conf import agent as agent_conf

LOG = logging.getLogger(__name__)
PROG = "sysinv-gpu-agent"
PROJECT = "sysinv-gpu"
STOP_GRACE = 5.0


def register(conf: cfg.ConfigOpts) -> None:
    agent_conf.register_opts(conf)
    rpc.register_opts(conf)


class AgentService:
    """Transport + ConductorAPI + udev watcher around one AgentManager."""

    def __init__(self, conf: cfg.ConfigOpts, stop: threading.Event | None = None) -> None:
        self.conf = conf
        self.stop_event = stop or threading.Event()

    def run(self) -> int:
        conf = self.conf
        transport, api = conductor_api(conf)
        registry, endpoint = start_metrics(conf, PROG)
        manager = AgentManager(conf, api, metrics=NO_AGENT_METRICS if registry is None
                               else agent_metrics(registry))
        watcher = UdevWatcher(manager.wake)
        if conf.agent.udev_events:
            watcher.start()
        worker = threading.Thread(target=manager.run, name="agent-loop", daemon=True)
        worker.start()
        if transport is None:
            LOG.info("Agent reporting over ZeroMQ to %s (payload format %s, host uuid from %s)",
                     api.topic, conf.agent.payload_format, conf.agent.host_uuid_source)
        else:
            LOG.info("Agent reporting to topic %s on exchange %s (payload format %s, host uuid "
                     "from %s)", conf.agent.conductor_topic, conf.control_exchange,
                     conf.agent.payload_format, conf.agent.host_uuid_source)
        try:
            while not self.stop_event.wait(1.0):
                if not worker.is_alive():  # run() never returns on its own; be safe anyway
                    LOG.error("Agent loop ended unexpectedly; restarting it")
                    worker = threading.Thread(target=manager.run, name="agent-loop", daemon=True)
                    worker.start()
        finally:
            LOG.info("Agent stopping")
            manager.stop()
            watcher.stop()
            worker.join(STOP_GRACE)
            if worker.is_alive():
                # e.g. blocked creating oslo.messaging's reply queue while the broker is down:
                # that holds the driver lock transport.cleanup() needs; the OS closes sockets.
                LOG.warning("Report still in flight after %.0f s; exiting anyway", STOP_GRACE)
            elif transport is not None:
                transport.cleanup()
            else:
                api.close()
            if endpoint is not None:
                endpoint.close()
        return 0


def conductor_api(conf: cfg.ConfigOpts) -> tuple[Any, Any]:
    """(oslo transport or None, conductor client): AMQP, or ZeroMQ with rpc_backend_zeromq."""
    agent = conf.agent
    if conf.rpc_backend_zeromq:
        from sysinv_ext.conductor import rpcapizmq

        endpoint = rpcapizmq.conductor_endpoint(conf.rpc_zeromq_conductor_bind_ip,
                                                conf.rpc_zeromq_conductor_bind_port)
        return None, rpcapizmq.ZmqConductorAPI(endpoint, timeout=agent.rpc_timeout,
                                               payload_format=agent.payload_format,
                                               curve=curve_client_keys(conf))
    transport = rpc.get_transport(conf)
    return transport, ConductorAPI(transport, agent.conductor_topic, timeout=agent.rpc_timeout,
                                   retry=agent.rpc_retry, payload_format=agent.payload_format)


def curve_client_keys(conf: cfg.ConfigOpts) -> Any:
    """``[zeromq]`` CURVE keys of the agent (ClientKeys), or None when CURVE is off.

    :raises: ValueError (zmq_curve.CurveKeyError): a usage error at start.
    """
    group = conf.zeromq
    if not group.curve_secret_key_file:
        return None
    from sysinv_ext.common import zmq_curve

    if not group.curve_server_key_file:
        raise zmq_curve.CurveKeyError("[zeromq]curve_secret_key_file needs "
                                      "[zeromq]curve_server_key_file (the conductor's public key)")
    return zmq_curve.load_client_keys(group.curve_secret_key_file, group.curve_server_key_file)


def check(conf: cfg.ConfigOpts) -> None:
    """Start-time checks that make a usage error (exit 2, one line)."""
    if conf.rpc_backend_zeromq:
        curve_client_keys(conf)


def main(argv: Sequence[str] | None = None) -> int:
    conf = cfg.CONF
    try:
        parse_args(conf, argv, prog=PROG, project=PROJECT, register=register, check=check)
    except UsageError as err:
        return usage_exit(err)
    fdlimit.raise_nofile_limit()  # many peers: see sysinv_ext.common.fdlimit
    stop = stop_on_signals()
    return AgentService(conf, stop).run()


if __name__ == "__main__":
    sys.exit(main())
