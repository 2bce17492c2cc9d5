"""The benchmark runner's own logic: suite selection, percentiles and verdicts (no timing here)."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.common import Result, format_table, percentile


def test_unknown_suite_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["nope"])
    assert exc.value.code == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(("samples", "pct", "expected"), [
    ([5.0], 50, 5.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
    ([float(i) for i in range(1, 101)], 99, 99.0),
    ([float(i) for i in range(1, 101)], 100, 100.0),
    ([3.0, 1.0, 2.0], 0, 1.0),
], ids=["single", "p50-even", "p99-of-100", "max", "min-unsorted"])
def test_nearest_rank_percentile(samples: list[float], pct: float, expected: float) -> None:
    assert percentile(samples, pct) == expected


@pytest.mark.parametrize(("result", "verdict", "ratio"), [
    (Result("s", "fast", 0.5, "ms", 1.0), "ok", 0.5),
    (Result("s", "slow", 3.0, "ms", 1.0), "MISS", 3.0),
    (Result("s", "throughput", 3.0, "ops", 2.0, lower_is_better=False), "ok", 1.5),
    (Result("s", "report", 3.0, "ms"), "report", None),
], ids=["meets", "misses", "higher-is-better", "report-only"])
def test_verdicts(result: Result, verdict: str, ratio: float | None) -> None:
    assert result.verdict == verdict
    assert result.ratio == ratio
    assert verdict in format_table([result])


def test_scale_rows_keep_amqp_names_and_prefix_zeromq_ones() -> None:
    from benchmarks.sysinv_scale import NODES, _Flow

    amqp, zmq = _Flow("amqp", NODES, "t"), _Flow("zmq", NODES, "t", port=40000)
    assert amqp.name("failover: x") == "failover: x"
    assert zmq.name("failover: x") == "ZeroMQ: failover: x"
    assert "BENCH_SCALE_NODES=200" in _Flow("zmq", 200, "t").name("x")
    assert "transport_url" in amqp.rpc_options() and "zeromq" not in amqp.rpc_options()
    assert "rpc_backend_zeromq = true" in zmq.rpc_options() and "= 40000" in zmq.rpc_options()


@pytest.mark.parametrize(("name", "value"), [("BENCH_SCALE_NODES", "many"), ("BENCH_SCALE_NODES", "2"),
                                             ("BENCH_SCALE_TRANSPORTS", "amqp,grpc")])
def test_scale_environment_is_checked(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    from benchmarks import sysinv_scale

    monkeypatch.setenv(name, value)
    check = sysinv_scale._nodes if name == "BENCH_SCALE_NODES" else sysinv_scale._transports
    with pytest.raises(ValueError, match=name):
        check()


def test_scale_floor_serves_the_conductor_method_and_stops_when_stdin_closes(tmp_path: Path) -> None:
    """The burst's floor (benchmarks/sysinv_floor.py) over ZeroMQ (no broker needed): an empty
    answer to the conductor's method, through the conductor's own RPC server."""
    from benchmarks import sysinv_floor
    from benchmarks.sysinv_scale import METHOD, ZMQ_IP, _Flow
    from sysinv_ext.common.context import get_admin_context
    from sysinv_ext.conductor.rpcapizmq import ZmqConductorAPI, conductor_endpoint
    from tests.fakes.rabbit import free_port

    flow = _Flow("zmq", 200, "t", port=free_port())
    config = tmp_path / "floor.conf"
    config.write_text(f"[DEFAULT]\n{flow.rpc_options()}[conductor]\nhost = floor\n")
    agent = ZmqConductorAPI(conductor_endpoint(ZMQ_IP, flow.port), timeout=30)
    try:
        with sysinv_floor.running(config) as server:
            answer = agent.client.call(METHOD, get_admin_context(), host_uuid="h",
                                       device_plugins=["intelgpu"], timeout=30)
            assert answer == {"node": None, "labels": {}, "removed": []}
    finally:
        agent.close()
    assert server.returncode == 0, "exits by itself once its stdin is closed (not killed)"
