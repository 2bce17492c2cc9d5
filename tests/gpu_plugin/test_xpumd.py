"""xpumd health client (``-xpumd-endpoint``) over real gRPC on a unix socket.

The server is :class:`tests.fakes.xpumd.FakeXpumd`: a real ``deviceinfo.DeviceInfo`` gRPC server
whose health data is scripted (emulated: XPU Manager's telemetry). Upstream's
xpumd_service_test.go cases come first, then the update rules, the reconnect behaviour (with
upstream's limits shrunk through :class:`Timing`), and the ``card -> Health`` adapter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from gpu_plugin import scan as gs
from gpu_plugin.deviceplugin.api import Health
from gpu_plugin.xpumd import DEFAULT_SOCKET_PATH, NoHealthData, Timing, XpumdHealth, XpumdService
from gpu_plugin.xpumd._api import deviceinfo_pb2 as pb
from tests.fakes.xpumd import CRITICAL, FAILED, OK, WARNING, FakeXpumd, device

UNKNOWN = pb.SEVERITY_LEVEL_UNKNOWN
#: upstream's limits, shrunk: 3 connect attempts 0.1 s apart, 2 receive errors 0.1 s apart
FAST = Timing(connect_attempts_max=3, connect_attempt_interval=0.1, arbitrary_error_delay=0.1,
              max_arbitrary_errors=2, backoff_cap=0.3)
LOGGER = "gpu_plugin.xpumd.client"


def create_health_response(bdf: str, severity: int, reason: str) -> pb.DeviceHealthResponse:
    """upstream's createHealthResponse"""
    return pb.DeviceHealthResponse(devices=[device(bdf, ("memory", severity, reason))])


def retrieve_device_health(bdf: str, svc: XpumdService, timeout: float = 5.0) -> bool:
    """upstream's retrieveDeviceHealth: poll until data for ``bdf`` arrives."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return svc.get_device_health(bdf)
        except NoHealthData:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.02)


@pytest.fixture
def xpumd() -> Iterator[FakeXpumd]:
    with FakeXpumd() as fake:
        yield fake


@pytest.fixture
def service(xpumd: FakeXpumd) -> Iterator[XpumdService]:
    svc = XpumdService(xpumd.socket_path, FAST).start()
    yield svc
    svc.close()


# -- upstream's xpumd_service_test.go ----------------------------------------------------------------

UPSTREAM = [
    # (id, bdf, severity, reason, severity limit, healthy)
    ("TestGetDeviceHealth_Healthy", "0000:03:00.0", OK, "", "critical", True),
    ("TestGetDeviceHealth_Unhealthy (limit warning)", "0000:04:00.0", WARNING, "ecc", "warning", False),
    ("TestGetDeviceHealth_CriticalUnhealthy", "0000:05:00.0", CRITICAL, "pcie-error", "critical", False),
    ("ours: FAILED is unhealthy", "0000:06:00.0", FAILED, "lost", "critical", False),
    ("ours: UNKNOWN is below WARNING", "0000:07:00.0", UNKNOWN, "", "warning", True),
]


@pytest.mark.parametrize("bdf,severity,reason,limit,healthy", [c[1:] for c in UPSTREAM],
                         ids=[c[0] for c in UPSTREAM])
def test_upstream_get_device_health(bdf: str, severity: int, reason: str, limit: str, healthy: bool) -> None:
    with FakeXpumd(upstream_mock=[create_health_response(bdf, severity, reason)]) as mock:
        svc = XpumdService(mock.socket_path, severity_limit=limit).start()  # upstream's own timing
        try:
            assert retrieve_device_health(bdf, svc) is healthy
        finally:
            svc.close()


def test_upstream_no_data_yet() -> None:
    """TestGetDeviceHealth_NoDataYet: nothing received -> NoHealthData (upstream's ErrNoHealthData)."""
    svc = XpumdService("/tmp/nonexistent-xpumd.sock")
    with pytest.raises(NoHealthData, match="no health data available yet: 0000:00:00.0"):
        svc.get_device_health("0000:00:00.0")


def test_default_socket_is_upstreams() -> None:
    assert DEFAULT_SOCKET_PATH == "/run/xpumd/intelxpuinfo.sock"


# -- applyDeviceHealthUpdate --------------------------------------------------------------------------

A, B = "0000:03:00.0", "0000:04:00.0"
NO_INFO = pb.DeviceHealth(health=[pb.HealthStatus(name="memory", severity=CRITICAL)])
NO_PCI = pb.DeviceHealth(info=pb.DeviceInformation(uuid="x"), health=[pb.HealthStatus(severity=CRITICAL)])
UPDATES = [
    # (id, messages (each a list of devices), expected: bdf -> healthy, None = no data)
    ("all domains ok", [[device(A, ("memory", OK, ""), ("pcie", OK, ""))]], {A: True}),
    ("no health entries is healthy", [[device(A)]], {A: True}),
    ("one critical among ok domains", [[device(A, ("memory", OK, ""), ("pcie", CRITICAL, "aer"))]],
     {A: False}),
    ("two devices in one message", [[device(A, ("memory", OK, "")), device(B, ("soc", CRITICAL, "x"))]],
     {A: True, B: False}),
    ("device without info is skipped", [[NO_INFO]], {A: None}),
    ("device without pci is skipped", [[NO_PCI, device(B)]], {A: None, B: True}),
    ("a later message replaces the value", [[device(A, ("memory", CRITICAL, ""))], [device(A)]], {A: True}),
    ("a device missing from a later message keeps its value (upstream)",
     [[device(A, ("memory", CRITICAL, "")), device(B)], [device(B)]], {A: False, B: True}),
]


@pytest.mark.parametrize("messages,expected", [c[1:] for c in UPDATES], ids=[c[0] for c in UPDATES])
def test_apply_device_health_update(messages: list, expected: dict) -> None:
    svc = XpumdService("/tmp/unused-xpumd.sock")
    for devices in messages:
        svc.apply_device_health_update(devices)
    for bdf, healthy in expected.items():
        if healthy is None:
            with pytest.raises(NoHealthData):
                svc.get_device_health(bdf)
        else:
            assert svc.get_device_health(bdf) is healthy, bdf


# -- the severity limit (-xpumd-severity-limit; upstream PR #2318) ----------------------------------

LIMITS = [  # (limit, severity, healthy)
    ("failed", CRITICAL, True), ("failed", FAILED, False),
    ("critical", WARNING, True), ("critical", CRITICAL, False), ("critical", FAILED, False),
    ("warning", OK, True), ("warning", WARNING, False), ("warning", FAILED, False),
]


@pytest.mark.parametrize("limit,severity,healthy", LIMITS,
                         ids=[f"{lim}-{pb.SeverityLevel.Name(sev)}" for lim, sev, _ in LIMITS])
def test_severity_limit(limit: str, severity: int, healthy: bool) -> None:
    svc = XpumdService("/tmp/unused-xpumd.sock", severity_limit=limit)
    svc.apply_device_health_update([device(A, ("memory", OK, ""), ("memory_ecc", severity, "x"))])
    assert svc.get_device_health(A) is healthy


def test_an_ecc_disabled_warning_does_not_make_the_device_unhealthy_by_default() -> None:
    """Upstream's default moved from warning to critical: a warning such as "ECC disabled" is no fault."""
    svc = XpumdService("/tmp/unused-xpumd.sock")
    svc.apply_device_health_update([device(A, ("memory_ecc", WARNING, "ecc disabled"))])
    assert svc.get_device_health(A) is True


def test_unknown_severity_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown xpumd severity limit 'fatal'"):
        XpumdService("/tmp/unused-xpumd.sock", severity_limit="fatal")


# -- the stream, as xpumd serves it -------------------------------------------------------------------


def test_live_updates_flip_health(xpumd: FakeXpumd, service: XpumdService) -> None:
    xpumd.wait_for_clients(1)
    with pytest.raises(NoHealthData):  # xpumd has no data yet: it sends nothing
        service.get_device_health(A)
    xpumd.publish({A: CRITICAL, B: OK})
    wait_until(lambda: retrieve_device_health(A, service) is False, what="A unhealthy")
    assert service.get_device_health(B) is True
    xpumd.publish({A: OK, B: OK})
    wait_until(lambda: service.get_device_health(A) is True, what="A healthy again")


def test_graceful_restart_reconnects_and_keeps_last_known(
    xpumd: FakeXpumd, service: XpumdService, caplog: pytest.LogCaptureFixture
) -> None:
    xpumd.publish({A: CRITICAL})
    wait_until(lambda: retrieve_device_health(A, service) is False, what="A unhealthy")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        xpumd.stop()  # streams end with OK: the client sees EOF
        wait_until(lambda: "stream closed by remote" in caplog.text, what="EOF logged")
        assert service.get_device_health(A) is False  # no flapping while xpumd is away
        xpumd.start()
        xpumd.wait_for_clients(1, connections=2)
    xpumd.publish({A: OK})
    wait_until(lambda: service.get_device_health(A) is True, what="update over the new stream")


def test_abrupt_stop_is_a_receive_error_then_reconnects(
    xpumd: FakeXpumd, service: XpumdService, caplog: pytest.LogCaptureFixture
) -> None:
    xpumd.publish({A: OK})
    retrieve_device_health(A, service)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        xpumd.stop(graceful=False)
        wait_until(lambda: "error receiving data" in caplog.text, what="receive error logged")
        xpumd.start()
        xpumd.publish({A: CRITICAL})
        wait_until(lambda: service.get_device_health(A) is False, what="update after the restart")
    assert xpumd.connections == 2


def test_keeps_retrying_after_upstreams_connect_attempts(caplog: pytest.LogCaptureFixture) -> None:
    """Upstream gives up after connectAttemptsMax; we say so and go on with capped backoff."""
    fake = FakeXpumd()  # not started yet
    svc = XpumdService(fake.socket_path, FAST)
    try:
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            svc.start()
            wait_until(lambda: "upstream gives up here" in caplog.text, what="give-up point passed")
            time.sleep(0.4)  # a few backoff rounds
            fake.start()
            fake.publish({A: CRITICAL})
            assert retrieve_device_health(A, svc) is False
        attempts = [r.getMessage() for r in caplog.records if "WatchDeviceHealth attempt" in r.getMessage()]
        assert attempts[:3] == [f"xpumd: WatchDeviceHealth attempt {n}/3 failed (UNAVAILABLE at "
                                f"{fake.socket_path})" for n in (1, 2, 3)]
        assert len(attempts) == 3 and sum("upstream gives up here" in r.getMessage()
                                          and r.levelname == "ERROR" for r in caplog.records) == 1
    finally:
        svc.close()
        fake.close()


def test_keeps_retrying_after_upstreams_receive_errors(
    xpumd: FakeXpumd, caplog: pytest.LogCaptureFixture
) -> None:
    """Upstream gives up after maxArbitraryErrors consecutive errors; we go on and recover."""
    xpumd.abort_code = grpc.StatusCode.INTERNAL
    xpumd.publish({A: CRITICAL})
    svc = XpumdService(xpumd.socket_path, FAST)
    try:
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            svc.start()
            wait_until(lambda: xpumd.connections >= 4, what="errors beyond upstream's limit")
            xpumd.abort_code = None
            assert retrieve_device_health(A, svc) is False
        errors = [r.getMessage() for r in caplog.records if "error receiving data" in r.getMessage()]
        assert errors == [f"xpumd: error receiving data (StatusCode.INTERNAL), retrying ({n}/2)"
                          for n in (1, 2)]
        assert any("2 consecutive errors (upstream gives up here" in r.getMessage() for r in caplog.records)
    finally:
        svc.close()


def test_server_closing_at_once_is_no_busy_loop() -> None:
    """A stream that ends without data counts as a failed attempt (waits the interval)."""
    with FakeXpumd(upstream_mock=[]) as mock:  # upstream's mock with nothing to send: EOF after 0.1 s
        svc = XpumdService(mock.socket_path, Timing(connect_attempt_interval=0.3)).start()
        try:
            time.sleep(1.2)
        finally:
            svc.close()
        assert 2 <= mock.connections <= 4  # one per 0.1 s stream + 0.3 s wait


@pytest.mark.parametrize("started", [False, True], ids=["while connecting", "while streaming"])
def test_close_is_prompt_with_upstream_timing(xpumd: FakeXpumd, started: bool) -> None:
    path = xpumd.socket_path if started else xpumd.socket_path + ".absent"
    svc = XpumdService(path).start()  # 10 s attempt interval, 5 s error delay
    if started:
        xpumd.wait_for_clients(1)
    else:
        time.sleep(0.3)
    begin = time.monotonic()
    svc.close()
    assert time.monotonic() - begin < 1.0
    assert not any(t.name == "xpumd-health" and t.is_alive() for t in threading.enumerate())


# -- the plugin's health source (card -> Health) ------------------------------------------------------


def card(bdf: str | None = A, name: str = "card0") -> gs.GpuCard:
    return gs.GpuCard(name, f"/sys/class/drm/{name}", bdf, bdf, "i915", "0x56c0", None, 0, (name,))


def test_health_source_rules(xpumd: FakeXpumd, caplog: pytest.LogCaptureFixture) -> None:
    health = XpumdHealth(xpumd.socket_path, FAST).start()
    try:
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            assert [health(card()) for _ in range(3)] == [Health.HEALTHY] * 3  # no data = no information
            assert health(card(bdf=None)) is Health.HEALTHY
            warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
            assert warnings == [f"xpumd device health retrieval failed: no health data available yet: {A} "
                                "(xpumd has sent no health data yet); treating card0 and any other device "
                                "without xpumd data as healthy (said again in 300 s if still so)"]
            xpumd.publish({A: CRITICAL, B: OK})
            wait_until(lambda: health(card()) is Health.UNHEALTHY, what="card0 unhealthy")
            assert health(card(B, "card1")) is Health.HEALTHY
        infos = [r.getMessage() for r in caplog.records if r.levelname == "INFO" and "=>" in r.getMessage()]
        assert infos == [f"card0 ({A}): Healthy => Unhealthy"]
    finally:
        health.close()


# -- xpumd not ready (issue 21, item 4) ---------------------------------------------------------------

#: upstream's limits already used up and long waits: only the socket watch can make a retry prompt
SLOW = Timing(connect_attempts_max=0, connect_attempt_interval=30.0, arbitrary_error_delay=30.0,
              max_arbitrary_errors=0, backoff_cap=300.0)


def test_xpumd_appearing_after_a_long_absence_is_used_at_once(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeXpumd()  # absent: its socket does not exist yet
    svc = XpumdService(fake.socket_path, SLOW)
    try:
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            svc.start()
            wait_until(lambda: "upstream gives up here" in caplog.text, what="first failed attempt")
            reason = svc.__dict__.get("not_ready")
            fake.start()  # the next regular attempt would be 60 s away
            fake.publish({A: CRITICAL})
            assert retrieve_device_health(A, svc, timeout=5.0) is False
        assert f"xpumd: {fake.socket_path} appeared, connecting now" in caplog.text
        assert (reason, svc.not_ready) == ("is unreachable (UNAVAILABLE)", None)
    finally:
        svc.close()
        fake.close()


def test_uninitialised_xpumd_restarting_is_used_as_soon_as_it_streams(
        xpumd: FakeXpumd, caplog: pytest.LogCaptureFixture) -> None:
    """xpumd v2 on a Gen9.5 iGPU: it refuses (here FAILED_PRECONDITION), exits, is restarted."""
    xpumd.abort_code = grpc.StatusCode.FAILED_PRECONDITION
    health = XpumdHealth(xpumd.socket_path, SLOW)
    try:
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            health.start()
            wait_until(lambda: "still retrying" in caplog.text, what="a refused stream")
        assert health(card()) is Health.HEALTHY  # not ready: no information, the card stays usable
        xpumd.abort_code = None
        xpumd.publish({A: CRITICAL})
        xpumd.restart()  # the restarted xpumd re-creates its socket; the next regular try is 30 s away
        wait_until(lambda: health(card()) is Health.UNHEALTHY, what="xpumd's data used")
    finally:
        health.close()


def test_the_reason_xpumd_gives_no_data_is_named(xpumd: FakeXpumd) -> None:
    xpumd.abort_code = grpc.StatusCode.FAILED_PRECONDITION
    svc = XpumdService(xpumd.socket_path, SLOW).start()
    try:
        wait_until(lambda: svc.not_ready == "refuses the stream (FAILED_PRECONDITION)", what="the reason")
    finally:
        svc.close()


def test_devices_without_xpumd_data_are_warned_about_once_per_interval_not_per_scan(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    health = XpumdHealth("/tmp/absent-xpumd.sock", SLOW, warn_interval=300.0, clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for t in (1000.0, 1000.0, 1299.0, 1300.0, 1301.0, 1600.0):  # scans (two cards each)
            now[0] = t
            assert health(card()) is health(card(B, "card1")) is Health.HEALTHY
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 3  # at 1000, 1300 and 1600
    assert all("treating card0 and any other device without xpumd data as healthy" in w for w in warned)
