"""The plugin family's metrics endpoint: address parsing, localhost default, off = no metrics.

The figures themselves are checked where the flow runs (test_plugin.py scrapes a running plugin);
here the pieces that have their own rules.
"""
from __future__ import annotations

import socket

import pytest
from prometheus_client import CollectorRegistry, Counter

from gpu_plugin.common.metrics_http import MetricsAddressError, parse_address, serve
from gpu_plugin.deviceplugin.metrics import NO_METRICS, FrameworkMetrics
from tests.scrape import scrape


@pytest.mark.parametrize(("text", "want"), [
    ("9100", ("127.0.0.1", 9100)),
    (":9100", ("127.0.0.1", 9100)),
    ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("[::1]:0", ("::1", 0)),
    ("[10.1.2.3]:9433", ("10.1.2.3", 9433)),  # the DaemonSet's [$(POD_IP)]:9433 with an IPv4 pod IP
    ("node.example:1", ("node.example", 1)),
], ids=["bare-port", "colon-port", "all-interfaces", "ipv6", "bracketed-ipv4", "hostname"])
def test_parse_address(text: str, want: tuple[str, int]) -> None:
    assert parse_address(text) == want


@pytest.mark.parametrize("text", ["", "host", "host:", ":65536", ":-1", "::1:80", "a:b",
                                  "[::1:80", "::1]:80"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(MetricsAddressError):
        parse_address(text)


def test_endpoint_serves_the_registry_on_localhost() -> None:
    registry = CollectorRegistry()
    Counter("probe", "a probe", registry=registry).inc(3)
    endpoint = serve(":0", registry, "test")
    try:
        assert endpoint.url.startswith("http://127.0.0.1:")
        assert scrape(endpoint.url).value("probe_total") == 3
        port = endpoint.server.server_address[1]
        with socket.socket() as other, pytest.raises(OSError):  # the port is really taken
            other.bind(("127.0.0.1", port))
    finally:
        endpoint.close()


def test_no_metrics_records_nothing_and_costs_nothing() -> None:
    with NO_METRICS.allocate():
        pass
    NO_METRICS.devices(["Healthy"])
    NO_METRICS.registered(2)
    registry = CollectorRegistry()
    recording = FrameworkMetrics(registry).resource("example.com/widget")
    recording.devices(["Healthy", "Healthy", "Unhealthy"])
    with pytest.raises(ValueError), recording.allocate():
        raise ValueError("refused")
    assert registry.get_sample_value("deviceplugin_devices", {"resource": "example.com/widget",
                                                              "health": "Unhealthy"}) == 1
    assert registry.get_sample_value("deviceplugin_allocate_requests_total",
                                     {"resource": "example.com/widget", "outcome": "error"}) == 1


def test_a_taken_port_is_logged_and_the_program_runs_without_metrics(
        caplog: pytest.LogCaptureFixture) -> None:
    from gpu_plugin.common.metrics_http import open_endpoint

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert open_endpoint(f"127.0.0.1:{port}", "test") == (None, None)
    assert f"cannot serve metrics on 127.0.0.1:{port}" in caplog.text
    assert "running without metrics" in caplog.text
    assert open_endpoint("", "test") == (None, None)
