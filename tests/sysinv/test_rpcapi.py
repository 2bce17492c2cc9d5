"""ConductorAPI and sysinv_ext.common.rpc through oslo.messaging's in-process ``fake:/`` driver.

Nothing of ConductorAPI is mocked: a recording endpoint on a real RPC server receives exactly the
keyword names that would go on the wire (2023 ``device_plugins`` / 2019 ``device_plugin_labels``),
only at version 1.0 (as sysinv sends), and our exception types come back typed.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from sysinv_ext.common import context, exception, rpc
from sysinv_ext.conductor import rpcapi


class Recorder:
    """Accepts only version 1.0 requests (target version 1.0): proves what we send."""

    target = messaging.Target(version="1.0")

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def device_plugin_labels_update_by_ihost(self, ctxt: dict[str, Any], **kwargs: Any) -> Any:
        self.calls.append((ctxt, kwargs))
        if kwargs["host_uuid"] == "unknown":
            raise exception.HostNotFound(host_uuid=kwargs["host_uuid"])
        if kwargs["host_uuid"] == "bad":
            raise exception.InvalidPayload(host_uuid="bad", reason="not a list")
        if kwargs["host_uuid"] == "crash":
            raise KeyError("internal")
        return None


@pytest.fixture(scope="module")
def conf() -> cfg.ConfigOpts:
    c = cfg.ConfigOpts()
    rpc.register_opts(c)
    c([], project="sysinv-test")
    c.set_override("transport_url", "fake:/")
    return c


@pytest.fixture(scope="module")
def transport(conf: cfg.ConfigOpts) -> Iterator[messaging.Transport]:
    t = rpc.get_transport(conf)
    yield t
    t.cleanup()


@pytest.fixture(scope="module")
def _served(conf: cfg.ConfigOpts, transport: messaging.Transport) -> Iterator[Recorder]:
    rec = Recorder()
    server = rpc.get_server(conf, messaging.Target(topic=rpcapi.MANAGER_TOPIC, server="c0"), [rec],
                            transport=transport)
    server.start()
    yield rec
    rpc.stop_server(server, cleanup_transport=False)


@pytest.fixture
def recorder(_served: Recorder) -> Recorder:
    _served.calls.clear()
    return _served


def test_control_exchange_defaults_to_sysinv(conf: cfg.ConfigOpts) -> None:
    assert conf.control_exchange == "sysinv"


@pytest.mark.parametrize(("payload_format", "expected"), [
    ("2023", {"device_plugins": ["intelgpu"]}),
    ("2019", {"device_plugin_labels": [{"label_key": "intelgpu", "label_value": "enabled"}]}),
])
def test_wire_keywords(transport: messaging.Transport, recorder: Recorder, payload_format: str,
                       expected: dict[str, Any]) -> None:
    api = rpcapi.ConductorAPI(transport, timeout=5, payload_format=payload_format)  # type: ignore[arg-type]
    assert api.device_plugin_labels_update_by_ihost(
        context.get_admin_context(), rpcapi.HostUUID("uuid-1"), {"intelgpu": "enabled"}) is None
    ctxt, kwargs = recorder.calls[0]
    assert kwargs == {"host_uuid": "uuid-1", **expected}
    assert ctxt["is_admin"] is True and ctxt["request_id"].startswith("req-")


@pytest.mark.parametrize("payload_format", ["2023", "2019"])
def test_empty_report_is_sent(transport: messaging.Transport, recorder: Recorder,
                              payload_format: str) -> None:
    api = rpcapi.ConductorAPI(transport, timeout=5, payload_format=payload_format)  # type: ignore[arg-type]
    api.device_plugin_labels_update_by_ihost({}, rpcapi.HostUUID("uuid-2"), {})
    (_, kwargs), = recorder.calls
    assert kwargs in ({"host_uuid": "uuid-2", "device_plugins": []},
                      {"host_uuid": "uuid-2", "device_plugin_labels": []})


def test_payload_is_sorted_and_deterministic() -> None:
    labels = {"intelqat": "enabled", "intelgpu": "enabled"}
    assert rpcapi.ConductorAPI.make_payload(labels, "2023") == {
        "device_plugins": ["intelgpu", "intelqat"]}
    assert rpcapi.ConductorAPI.make_payload(labels, "2019")["device_plugin_labels"][0] == {
        "label_key": "intelgpu", "label_value": "enabled"}


def test_plain_dict_context_accepted(transport: messaging.Transport, recorder: Recorder) -> None:
    api = rpcapi.ConductorAPI(transport, timeout=5)
    api.device_plugin_labels_update_by_ihost({"user": "admin", "tenant": "admin"},
                                             rpcapi.HostUUID("u"), {"intelgpu": "enabled"})
    assert recorder.calls[0][0] == {"user": "admin", "tenant": "admin"}


@pytest.mark.parametrize(("host", "exc_type"), [
    ("unknown", exception.HostNotFound),
    ("bad", exception.InvalidPayload),
])
def test_conductor_errors_come_back_typed(transport: messaging.Transport, recorder: Recorder,
                                          host: str, exc_type: type[Exception]) -> None:
    api = rpcapi.ConductorAPI(transport, timeout=5)
    with pytest.raises(exc_type) as err:
        api.device_plugin_labels_update_by_ihost({}, rpcapi.HostUUID(host), {})
    assert host in str(err.value)


def test_unexpected_conductor_error_is_builtin_type(transport: messaging.Transport,
                                                    recorder: Recorder) -> None:
    api = rpcapi.ConductorAPI(transport, timeout=5)
    with pytest.raises(KeyError):
        api.device_plugin_labels_update_by_ihost({}, rpcapi.HostUUID("crash"), {})


def test_explicit_timeout_and_retry(transport: messaging.Transport) -> None:
    api = rpcapi.ConductorAPI(transport, "nobody.listens", timeout=1, retry=0)
    assert api.client.timeout == 1 and api.client.retry == 0
    assert api.client.target.version == "1.0" and api.client.version_cap == "1.1"
    started = time.monotonic()
    with pytest.raises(messaging.MessagingTimeout):
        api.device_plugin_labels_update_by_ihost({}, rpcapi.HostUUID("u"), {})
    assert time.monotonic() - started < 5


def test_bad_payload_format_rejected(transport: messaging.Transport) -> None:
    with pytest.raises(ValueError, match="payload_format"):
        rpcapi.ConductorAPI(transport, payload_format="2020")  # type: ignore[arg-type]


def test_history_docstring_lists_versions() -> None:
    doc = rpcapi.ConductorAPI.__doc__ or ""
    assert "1.0 - Initial version." in doc and "1.1 - device_plugin_labels_update_by_ihost" in doc
    assert rpcapi.ConductorAPI.RPC_API_VERSION == "1.1"


def test_context_serializer_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="RPC context"):
        context.DictContextSerializer().serialize_context(object())
