"""What one caller can make the conductor log or send back, over AMQP and ZeroMQ (issue 21,
items 16 and 17): expected rejections in one bounded line, a huge request_id bounded, a deeply
nested payload refused by the payload check instead of a RecursionError.

AMQP through oslo.messaging's in-process fake:/ driver (the same dispatcher as on RabbitMQ);
ZeroMQ through the conductor's real server and tests/fakes/sysinv_zmq.py's sysinv-style client.
"""
from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import oslo_messaging as messaging
import pytest

from sysinv_ext.common import exception
from tests.fakes.sysinv_zmq import SysinvZmqClient, ZerorpcRemoteError
from tests.sysinv.conftest import HOST_A, RpcPair
from tests.sysinv.test_sysinv_zmq import METHOD, zmq_conductor  # noqa: F401  (fixture)

LIMIT = 1000


def _in_fresh_thread(func: Any) -> Any:
    """Run ``func`` on a new thread (a shallow stack, as a server's worker has) and return or
    raise what it did: json/msgpack of a ~990-deep value must not hit the test's own depth."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = func()
        except BaseException as err:  # handed back to the test
            out["error"] = err

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(30)
    if "error" in out:
        raise out["error"]
    return out.get("value")


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("method", "kwargs", "error"), [
    ("no_such_method", {"host_uuid": HOST_A}, messaging.NoSuchMethod),
    (METHOD, {"host_uuid": HOST_A, "device_plugins": [], "bogus": 1}, TypeError),
    (METHOD, {}, TypeError),
], ids=["NoSuchMethod", "unexpected-kwarg", "missing-arg"])
def test_amqp_rejection_is_one_log_line_not_a_traceback(
        rpc_pair: RpcPair, caplog: pytest.LogCaptureFixture, method: str, kwargs: dict[str, Any],
        error: type[Exception]) -> None:
    """oslo.messaging logged each with LOG.exception: a 17-line traceback per call."""
    cctxt = rpc_pair.api.client.prepare(version="1.0")
    with caplog.at_level(logging.DEBUG):
        for _ in range(20):
            with pytest.raises(error) as info:
                cctxt.call({"request_id": "req-x"}, method, **kwargs)
            assert 'File "' not in str(info.value)  # the reply carried no server traceback
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    rejected = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert 1 <= len(rejected) <= 5 and all("\n" not in line for line in rejected)


def test_amqp_huge_request_id_is_bounded_in_the_log(rpc_pair: RpcPair,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """An 8 MB request_id in the context became an 8.4 MB log line."""
    cctxt = rpc_pair.api.client.prepare(version="1.0")
    with caplog.at_level(logging.DEBUG), pytest.raises(exception.InvalidPayload):
        cctxt.call({"request_id": "r" * 8_000_000}, METHOD, host_uuid=HOST_A, device_plugins="x")
    assert [r for r in caplog.records if "rejected" in r.getMessage()]
    assert max(len(r.getMessage()) for r in caplog.records) < LIMIT


def test_zmq_huge_request_id_is_bounded_in_the_log(zmq_conductor: SysinvZmqClient,  # noqa: F811
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(ZerorpcRemoteError) as info:
        zmq_conductor.invoke(METHOD, {"request_id": "r" * 200_000}, host_uuid=HOST_A,
                             device_plugins="x")
    assert info.value.name == "InvalidPayload"
    assert [r for r in caplog.records if "rejected" in r.getMessage()]
    assert max(len(r.getMessage()) for r in caplog.records) < LIMIT


@pytest.mark.parametrize("field", ["host_uuid", "device_plugins", "device_plugin_labels"])
def test_amqp_deeply_nested_payload_is_an_invalid_payload(rpc_pair: RpcPair, field: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Nested ~990 deep it came back as RecursionError, with an ERROR traceback logged."""
    kwargs: dict[str, Any] = {"host_uuid": HOST_A, field: nested(990)}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1500)  # the sending side (fake:/ encodes JSON) needs the headroom
    try:
        with caplog.at_level(logging.INFO), \
                pytest.raises(exception.InvalidPayload, match="nested deeper"):
            _in_fresh_thread(lambda: rpc_pair.call(**kwargs))
    finally:
        sys.setrecursionlimit(limit)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert max(len(r.getMessage()) for r in caplog.records) < LIMIT


def test_flood_of_invalid_reports_logs_a_few_lines(rpc_pair: RpcPair,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Each invalid report logged a WARNING line: one caller could write as many as it sent."""
    with caplog.at_level(logging.DEBUG):
        for i in range(50):
            with pytest.raises(exception.InvalidPayload):
                rpc_pair.call(host_uuid=HOST_A, device_plugins=f"not-a-list-{i}")
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert 1 <= len(rejected) <= 5
