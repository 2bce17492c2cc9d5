"""Wire compatibility with sysinv's ZeroMQ RPC (zerorpc, StarlingX's 4-item dialect), no broker.

The sysinv side is tests/fakes/sysinv_zmq.py (written from sysinv's zmq_rpc/serializer.py and
StarlingX's zerorpc patches, sharing no code with sysinv_ext). Our side is real:
``start_rpc_servers`` of sysinv-gpu-conductor with a real ConductorManager (emulated Kubernetes
API, SQLite) and the agent's ZmqConductorAPI. Every port is picked by the OS (bind to 0).
Covers both directions, both payload forms, errors both ways, stock zerorpc's 3-item request.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import oslo_messaging as messaging
import pytest
from oslo_config import cfg
from oslo_context import context as oslo_context

from sysinv_ext.cmd import conductor as conductor_cmd
from sysinv_ext.common import context as our_context
from sysinv_ext.conductor.manager import ConductorManager
from sysinv_ext.conductor.rpcapizmq import ZmqConductorAPI, conductor_endpoint
from tests.fakes.kube_api import FakeKubeAPI
from tests.fakes.sysinv_zmq import (
    SysinvRequestContext,
    SysinvZmqClient,
    SysinvZmqServer,
    ZerorpcRemoteError,
    ZerorpcTimeoutExpired,
)
from tests.sysinv.conftest import GPU_PLUGINS_2019, HOST_A

METHOD = "device_plugin_labels_update_by_ihost"
NODE = "worker-0"


@pytest.fixture
def zmq_conductor(conductor_conf: cfg.ConfigOpts, manager: ConductorManager, fake_kube: FakeKubeAPI,
                  write_plugins: Any) -> Iterator[SysinvZmqClient]:
    """Our conductor's ZeroMQ server (as the service starts it) and a sysinv-style client."""
    conductor_conf.set_override("rpc_backend_zeromq", True)
    conductor_conf.set_override("rpc_zeromq_conductor_bind_ip", "127.0.0.1")
    conductor_conf.set_override("rpc_zeromq_conductor_bind_port", 0)
    write_plugins(GPU_PLUGINS_2019)
    fake_kube.add_node(NODE, HOST_A)
    stop = threading.Event()
    servers = conductor_cmd.start_rpc_servers(conductor_conf, manager, stop)
    assert servers.started.wait(10), "ZeroMQ server did not bind"
    port = int(servers.endpoint.rsplit(":", 1)[1])
    client = SysinvZmqClient("127.0.0.1", port, timeout=10)
    yield client
    client.close()
    conductor_cmd.stop_rpc_servers(servers)


def admin_context() -> oslo_context.RequestContext:
    """sysinv's agent: ``context.get_admin_context()`` (oslo.context) -> b'base_request'."""
    return oslo_context.RequestContext(is_admin=True)


@pytest.mark.parametrize("args", [
    {"host_uuid": HOST_A, "device_plugins": ["intelgpu"]},
    {"host_uuid": HOST_A, "device_plugin_labels": [{"label_key": "intelgpu", "label_value": "enabled"}]},
], ids=["2023", "2019"])
def test_sysinv_client_labels_through_our_conductor(zmq_conductor: SysinvZmqClient, fake_kube: FakeKubeAPI,
                                                    args: dict[str, Any]) -> None:
    result = zmq_conductor.call(admin_context(), {"method": METHOD, "args": args}, timeout=10)
    assert result["node"] == NODE and result["labels"] == {"intelgpu": "enabled"}
    assert fake_kube.node_labels(NODE)["intelgpu"] == "enabled"
    # the reply is a 4-item event on the request's channel, as the patched zerorpc expects
    header, name, reply_args, kwargs = zmq_conductor.replies[-1]
    assert name == "OK" and kwargs == {} and header["v"] == 3 and header["response_to"]
    # GPU gone: an empty list removes the label
    empty = {"host_uuid": HOST_A, next(k for k in args if k != "host_uuid"): []}
    zmq_conductor.call(admin_context(), {"method": METHOD, "args": empty})
    assert "intelgpu" not in fake_kube.node_labels(NODE)


def test_sysinv_request_context_type_is_accepted(zmq_conductor: SysinvZmqClient) -> None:
    ctx = SysinvRequestContext({"request_id": "req-sysinv-1", "is_admin": True})
    result = zmq_conductor.invoke(METHOD, ctx, host_uuid=HOST_A, device_plugins=["intelgpu"])
    assert result["labels"] == {"intelgpu": "enabled"}


@pytest.mark.parametrize(("method", "kwargs", "error"), [
    (METHOD, {"host_uuid": HOST_A, "device_plugins": "intelgpu"}, "InvalidPayload"),
    (METHOD, {"host_uuid": HOST_A}, "InvalidPayload"),
    (METHOD, {"host_uuid": HOST_A, "device_plugins": [], "bogus": 1}, "TypeError"),
    ("ihost_update", {"host_uuid": HOST_A}, "NameError"),
    ("report", {"host_uuid": HOST_A}, "NameError"),  # public on the manager, not exposed
    ("audit", {}, "NameError"),
])
def test_rejected_call_is_remote_error_at_once_and_server_keeps_serving(
        zmq_conductor: SysinvZmqClient, fake_kube: FakeKubeAPI, method: str, kwargs: dict[str, Any],
        error: str) -> None:
    started = time.monotonic()
    with pytest.raises(ZerorpcRemoteError) as info:
        zmq_conductor.invoke(method, admin_context(), **kwargs)
    assert time.monotonic() - started < 5  # an ERR reply, not a timeout
    assert info.value.name == error
    assert "intelgpu" not in fake_kube.node_labels(NODE)
    ok = zmq_conductor.invoke(METHOD, admin_context(), host_uuid=HOST_A, device_plugins=["intelgpu"])
    assert ok["labels"] == {"intelgpu": "enabled"}


def test_zerorpc_introspection(zmq_conductor: SysinvZmqClient) -> None:
    """sysinv's ``check_connection`` calls ``_zerorpc_list``."""
    assert zmq_conductor.invoke("_zerorpc_list") == [METHOD]
    assert zmq_conductor.invoke("_zerorpc_ping")[0] == "pong"


def test_stock_zerorpc_event_is_never_executed(zmq_conductor: SysinvZmqClient, fake_kube: FakeKubeAPI,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Stock zerorpc sends 3 items (no kwargs). As sysinv's patched zerorpc, we refuse it: it
    used to run (the label was set), and the stock client, unable to read our 4-item reply,
    retried, changing the label again each time. Now: not run, not answered, one log line."""
    for _ in range(3):  # the stock client's retries
        with pytest.raises(ZerorpcTimeoutExpired):
            zmq_conductor.send_stock(METHOD, {"is_admin": True}, HOST_A, ["intelgpu"], timeout=1)
    assert zmq_conductor.invoke("_zerorpc_ping")[0] == "pong"  # served after them, in order
    assert "intelgpu" not in fake_kube.node_labels(NODE)
    refused = [r for r in caplog.records if "invalid msg format" in r.getMessage()]
    assert 1 <= len(refused) <= 3 and all(len(r.getMessage()) < 300 for r in refused)


# -- our agent -> a sysinv-style conductor ------------------------------------------------------


class SysinvConductorStub:
    """What sysinv's ConductorManager method does with the call: records it, may raise."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def device_plugin_labels_update_by_ihost(self, context: Any, host_uuid: str,
                                             device_plugins: Any = None,
                                             device_plugin_labels: Any = None) -> Any:
        self.calls.append({"host_uuid": host_uuid, "device_plugins": device_plugins,
                           "device_plugin_labels": device_plugin_labels})
        if host_uuid == "unknown-host":
            raise LookupError(f"Host {host_uuid} could not be found")
        return None


@pytest.fixture
def sysinv_conductor() -> Iterator[SysinvZmqServer]:
    server = SysinvZmqServer(SysinvConductorStub()).start()
    yield server
    server.stop()


def _api(server: SysinvZmqServer, payload_format: Any = "2023", timeout: float = 10) -> ZmqConductorAPI:
    return ZmqConductorAPI(conductor_endpoint(server.host, server.port), timeout=timeout,
                           payload_format=payload_format)


@pytest.mark.parametrize(("payload_format", "sent"), [
    ("2023", {"device_plugins": ["intelgpu"]}),
    ("2019", {"device_plugin_labels": [{"label_key": "intelgpu", "label_value": "enabled"}]}),
])
def test_our_agent_calls_sysinv_conductor(sysinv_conductor: SysinvZmqServer, payload_format: str,
                                          sent: dict[str, Any]) -> None:
    api = _api(sysinv_conductor, payload_format)
    try:
        assert api.device_plugin_labels_update_by_ihost(
            our_context.get_admin_context(), "11111111-2222-3333-4444-555555555555",
            {"intelgpu": "enabled"}) is None
    finally:
        api.close()
    [got] = sysinv_conductor.received
    # exactly host_uuid and the payload keyword: sysinv passes kwargs straight to the method
    assert got.method == "device_plugin_labels_update_by_ihost"
    assert got.kwargs == {"host_uuid": "11111111-2222-3333-4444-555555555555", **sent}
    # the context arrives as oslo.context's admin context (b'base_request'), like sysinv's agent's
    assert isinstance(got.context, oslo_context.RequestContext)
    assert got.context.is_admin is True and got.context.request_id.startswith("req-")
    assert got.header["v"] == 3 and isinstance(got.header["message_id"], bytes)
    assert not sysinv_conductor.invalid


def test_sysinv_conductor_error_reaches_our_agent_as_remote_error(sysinv_conductor: SysinvZmqServer) -> None:
    api = _api(sysinv_conductor)
    try:
        with pytest.raises(messaging.RemoteError) as info:
            api.device_plugin_labels_update_by_ihost(our_context.get_admin_context(), "unknown-host", {})
        assert info.value.exc_type == "LookupError" and "could not be found" in info.value.value
        # the next call on the same client works
        api.device_plugin_labels_update_by_ihost(our_context.get_admin_context(), "h", {})
    finally:
        api.close()
    assert [c["host_uuid"] for c in sysinv_conductor.target.calls] == ["unknown-host", "h"]
    assert sysinv_conductor.target.calls[0]["device_plugins"] == []


def test_no_conductor_is_a_timeout_and_the_request_is_not_delivered_late() -> None:
    late = SysinvZmqServer(SysinvConductorStub())
    late.start()
    port = late.port
    late.stop()  # nothing listens on this port now
    api = ZmqConductorAPI(conductor_endpoint("127.0.0.1", port), timeout=1)
    try:
        with pytest.raises(messaging.MessagingTimeout):
            api.device_plugin_labels_update_by_ihost(our_context.get_admin_context(), "h", {})
        server = SysinvZmqServer(SysinvConductorStub(), port=port).start()
        try:
            api.client.timeout = 10
            api.device_plugin_labels_update_by_ihost(our_context.get_admin_context(), "h2", {})
            assert [r.kwargs["host_uuid"] for r in server.received] == ["h2"]
        finally:
            server.stop()
    finally:
        api.close()


def test_sysinv_server_ignores_stock_zerorpc(sysinv_conductor: SysinvZmqServer) -> None:
    """The wire fact behind all this: sysinv's patched zerorpc never answers 3-item requests."""
    client = SysinvZmqClient("127.0.0.1", sysinv_conductor.port, timeout=1)
    try:
        with pytest.raises(ZerorpcTimeoutExpired):
            client.send_stock(METHOD, {"is_admin": True}, timeout=1)
    finally:
        client.close()
    assert sysinv_conductor.invalid and "invalid msg format" in sysinv_conductor.invalid[0]


def test_bad_conductor_address_is_a_delivery_failure() -> None:
    api = ZmqConductorAPI("tcp://[not a host!]:9511", timeout=1)
    try:
        with pytest.raises(messaging.MessageDeliveryFailure, match="cannot connect"):
            api.device_plugin_labels_update_by_ihost(our_context.get_admin_context(), "h", {})
    finally:
        api.close()


@pytest.mark.parametrize(("ip", "endpoint"), [
    ("::", "tcp://[controller]:9511"), ("127.0.0.1", "tcp://[127.0.0.1]:9511"),
    ("fd00::2", "tcp://[fd00::2]:9511"), ("controller-1", "tcp://[controller-1]:9511")])
def test_conductor_endpoint_as_sysinv_builds_it(ip: str, endpoint: str) -> None:
    assert conductor_endpoint(ip, 9511) == endpoint


@pytest.mark.parametrize("client_host", ["127.0.0.1", "::1"])
def test_wildcard_bind_serves_ipv4_and_ipv6(client_host: str) -> None:
    """sysinv binds tcp://[::]:port with IPv6 on (zerorpc patch 0007); so do we."""
    from sysinv_ext.common import zmq_rpc

    server = zmq_rpc.ZmqRpcServer(SysinvConductorStub(), [METHOD], "::", 0).start()
    client = SysinvZmqClient(client_host, server.port, timeout=10)
    try:
        assert client.invoke(METHOD, admin_context(), host_uuid="h", device_plugins=[]) is None
    finally:
        client.close()
        server.stop()
