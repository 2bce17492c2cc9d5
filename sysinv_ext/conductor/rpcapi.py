"""Client side of the sysinv conductor RPC API, as sysinv's agent calls it.

Same topic, version numbers and method as sysinv's ``conductor/rpcapi.py``; owns the two wire
forms of the device plugin report (2019 ``device_plugin_labels``, 2023 ``device_plugins``).
The agent reaches the conductor only through this module; it never imports the manager.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NewType, TypedDict

import oslo_messaging as messaging

from sysinv_ext.common import constants, rpc

MANAGER_TOPIC = constants.MANAGER_TOPIC
RPC_TIMEOUT = 30

HostUUID = NewType("HostUUID", str)
PayloadFormat = Literal["2023", "2019"]


class DevicePluginLabel(TypedDict):
    """One entry of the 2019 payload (sysinv 023be742 ``IntelGPUdp.get_label``)."""

    label_key: str
    label_value: str


class ConductorAPI:
    """Client side of the conductor RPC API.

    API version history:

        1.0 - Initial version.
        1.1 - device_plugin_labels_update_by_ihost (Intel GPU device plugin labels;
              StarlingX 2019 ``device_plugin_labels``, 2023 ``device_plugins``).

    Like sysinv's ``RpcProxy(default_version='1.0', version_cap='1.1')`` it sends version 1.0,
    which sysinv conductors of both eras (RPC_API_VERSION 1.1) and ours accept.
    """

    RPC_API_VERSION = "1.1"
    DEFAULT_VERSION = "1.0"

    def __init__(self, transport: messaging.Transport, topic: str = MANAGER_TOPIC, *,
                 timeout: float = RPC_TIMEOUT, retry: int = 1,
                 payload_format: PayloadFormat = "2023") -> None:
        if payload_format not in ("2023", "2019"):
            raise ValueError(f"payload_format must be '2023' or '2019', not {payload_format!r}")
        self.topic = topic
        self.payload_format = payload_format
        target = messaging.Target(topic=topic, version=self.DEFAULT_VERSION)
        self.client = rpc.get_client(transport, target, timeout=timeout, retry=retry,
                                     version_cap=self.RPC_API_VERSION)

    @staticmethod
    def make_payload(labels: Mapping[str, str], payload_format: PayloadFormat) -> dict[str, Any]:
        """Keyword arguments for ``labels`` (label key -> value) in the chosen wire format."""
        if payload_format == "2019":
            entries = [DevicePluginLabel(label_key=key, label_value=labels[key])
                       for key in sorted(labels)]
            return {"device_plugin_labels": entries}
        return {"device_plugins": sorted(labels)}

    def device_plugin_labels_update_by_ihost(self, context: Any, host_uuid: HostUUID,
                                             labels: Mapping[str, str]) -> Any:
        """Synchronously report the device plugins this host supports; may be empty.

        :param context: request context (``RequestContext`` or a plain dict)
        :param host_uuid: host UUID (the node's ``systemUUID``)
        :param labels: detected plugin label key -> value, e.g. ``{"intelgpu": "enabled"}``
        :returns: whatever the conductor returns (None)
        :raises: oslo_messaging.MessagingTimeout, MessageDeliveryFailure, RemoteError, or a
            ``sysinv_ext.common.exception`` type raised by the conductor
        """
        cctxt = self.client.prepare(version=self.DEFAULT_VERSION)
        return cctxt.call(context, "device_plugin_labels_update_by_ihost",
                          host_uuid=host_uuid, **self.make_payload(labels, self.payload_format))
