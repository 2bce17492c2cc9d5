"""Client side of the conductor RPC API over sysinv's ZeroMQ RPC (as sysinv's ``rpcapizmq.py``).

Same method and keyword arguments as :mod:`sysinv_ext.conductor.rpcapi` (the 2019/2023 payloads
come from ``ConductorAPI.make_payload``); the request is sysinv's ``ZmqRpcClient.call``: method
name, ``[context]``, kwargs ``host_uuid`` + the payload keyword, nothing else (a sysinv server
passes kwargs straight to the method). Failures are raised as oslo.messaging's, like the AMQP
client's, so the agent handles both transports alike.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import oslo_messaging as messaging

from sysinv_ext.common import zmq_rpc
from sysinv_ext.conductor.rpcapi import RPC_TIMEOUT, ConductorAPI, HostUUID, PayloadFormat

METHOD = "device_plugin_labels_update_by_ihost"
#: sysinv's agent, given rpc_zeromq_conductor_bind_ip '::', calls the controller by this name
CONTROLLER_HOSTNAME = "controller"


def conductor_endpoint(ip: str, port: int) -> str:
    """``tcp://[ip]:port`` of the conductor; a wildcard address means ``controller``."""
    host = CONTROLLER_HOSTNAME if ip.strip() in zmq_rpc.WILDCARDS else ip.strip()
    return zmq_rpc.tcp_endpoint(host, port)


class ZmqConductorAPI:
    """The agent's conductor client over ZeroMQ (one call at a time).

    API version history: as :class:`sysinv_ext.conductor.rpcapi.ConductorAPI` (ZeroMQ carries
    no version: sysinv's ZeroMQ client sends none). ``curve``: our conductor's CURVE keys
    (``zmq_curve.ClientKeys``), never for sysinv's own conductor.
    """

    def __init__(self, endpoint: str, *, timeout: float = RPC_TIMEOUT,
                 payload_format: PayloadFormat = "2023", curve: Any = None) -> None:
        if payload_format not in ("2023", "2019"):
            raise ValueError(f"payload_format must be '2023' or '2019', not {payload_format!r}")
        self.endpoint = endpoint
        self.topic = endpoint  # what the agent's log lines name
        self.payload_format = payload_format
        self.client = zmq_rpc.ZmqRpcClient(endpoint, timeout=timeout, curve=curve)

    def device_plugin_labels_update_by_ihost(self, context: Any, host_uuid: HostUUID,
                                             labels: Mapping[str, str]) -> Any:
        """Synchronously report the device plugins this host supports; may be empty.

        :raises: oslo_messaging.MessagingTimeout (no reply in time), RemoteError (the
            conductor rejected the call), MessageDeliveryFailure (anything else on the wire)
        """
        kwargs = ConductorAPI.make_payload(labels, self.payload_format)
        try:
            return self.client.call(METHOD, context, host_uuid=host_uuid, **kwargs)
        except zmq_rpc.TimeoutExpired as err:
            raise messaging.MessagingTimeout(str(err)) from err
        except zmq_rpc.RemoteError as err:
            raise messaging.RemoteError(err.name, err.msg, err.traceback) from err
        except zmq_rpc.ZmqRpcError as err:
            raise messaging.MessageDeliveryFailure(str(err)) from err

    def close(self) -> None:
        self.client.close()
