"""Level-Zero health client over real gRPC on a unix socket.

Most cases talk to a small scripted ``Levelzero`` server defined here (answers set per test);
the last ones run H3's real sidecar (``gpu_plugin.levelzero.server``) over a FakeSysfs tree.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from gpu_plugin import scan as gs
from gpu_plugin.deviceplugin.api import Health
from gpu_plugin.health import LevelZeroHealth, TempLimits
from gpu_plugin.levelzero._api import levelzero_pb2 as pb
from gpu_plugin.levelzero._api import levelzero_pb2_grpc as pb_grpc
from tests.fakes.sysfs import FakeSysfs

BDF = "0000:03:00.0"


def card(bdf: str | None = BDF) -> gs.GpuCard:
    return gs.GpuCard("card0", "/sys/class/drm/card0", bdf, bdf, "i915", "0x56c0", None, 0, ("card0",))


@dataclass
class Script:
    """What the scripted server answers, and what it was asked."""

    memory_ok: bool = True
    bus_ok: bool = True
    soc_ok: bool = True
    health_error: int = 0
    temps: tuple[float, float, float] = (35.0, 35.0, 35.0)  # global, gpu, memory
    temp_error: int = 0
    fail_temps: bool = False
    asked: list[str] = field(default_factory=list)


class ScriptedLevelzero(pb_grpc.LevelzeroServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def GetDeviceHealth(self, request: pb.DeviceId, context: Any) -> pb.DeviceHealth:
        s = self.script
        s.asked.append(f"health {request.bdfAddress}")
        return pb.DeviceHealth(
            memory_ok=s.memory_ok,
            bus_ok=s.bus_ok,
            soc_ok=s.soc_ok,
            error=pb.Error(errorcode=s.health_error, description="scripted"),
        )

    def GetDeviceTemperature(self, request: pb.DeviceId, context: Any) -> pb.DeviceTemperature:
        s = self.script
        s.asked.append(f"temps {request.bdfAddress}")
        if s.fail_temps:
            context.abort(grpc.StatusCode.INTERNAL, "scripted failure")
        reply = pb.DeviceTemperature(
            gpu=s.temps[1], memory=s.temps[2], error=pb.Error(errorcode=s.temp_error)
        )
        setattr(reply, "global", s.temps[0])
        return reply


def _serve(script: Script, sock: str) -> grpc.Server:
    server = grpc.server(ThreadPoolExecutor(2))
    pb_grpc.add_LevelzeroServicer_to_server(ScriptedLevelzero(script), server)
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    return server


@pytest.fixture
def lz(tmp_path: Path) -> Iterator[tuple[Script, str]]:
    script, sock = Script(), str(tmp_path / "server.sock")
    server = _serve(script, sock)
    yield script, sock
    server.stop(None).wait()


CASES = [
    # (id, script changes, limits, expected)
    ("all ok", {}, TempLimits(), Health.HEALTHY),
    ("memory not ok", {"memory_ok": False}, TempLimits(), Health.UNHEALTHY),
    ("bus not ok", {"bus_ok": False}, TempLimits(), Health.UNHEALTHY),
    ("soc not ok", {"soc_ok": False}, TempLimits(), Health.UNHEALTHY),
    ("gpu above default limit", {"temps": (35.0, 101.0, 35.0)}, TempLimits(), Health.UNHEALTHY),
    ("global above default limit", {"temps": (101.0, 35.0, 35.0)}, TempLimits(), Health.UNHEALTHY),
    ("memory above default limit", {"temps": (35.0, 35.0, 101.0)}, TempLimits(), Health.UNHEALTHY),
    ("exactly at limit is healthy", {"temps": (100.0, 100.0, 100.0)}, TempLimits(), Health.HEALTHY),
    ("fraction truncated as upstream", {"temps": (100.9, 100.9, 100.9)}, TempLimits(), Health.HEALTHY),
    ("gpu above custom limit", {"temps": (35.0, 91.0, 35.0)}, TempLimits(gpu=90), Health.UNHEALTHY),
    ("memory above custom limit", {"temps": (35.0, 35.0, 81.0)}, TempLimits(memory=80), Health.UNHEALTHY),
    ("global above custom limit", {"temps": (71.0, 35.0, 35.0)}, TempLimits(global_=70), Health.UNHEALTHY),
    (
        "in-band health error means no information",
        {"memory_ok": False, "health_error": 0x78000001},
        TempLimits(),
        Health.HEALTHY,
    ),
    (
        "in-band temperature error means no information",
        {"temps": (0.0, 150.0, 0.0), "temp_error": 1},
        TempLimits(),
        Health.HEALTHY,
    ),
    ("temperature rpc failure means no information", {"fail_temps": True}, TempLimits(), Health.HEALTHY),
]


@pytest.mark.parametrize("changes,limits,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_upstream_health_rules(
    lz: tuple[Script, str], changes: dict, limits: TempLimits, expected: Health
) -> None:
    script, sock = lz
    for key, value in changes.items():
        setattr(script, key, value)
    health = LevelZeroHealth(sock, limits)
    try:
        assert health(card()) is expected
    finally:
        health.close()
    assert script.asked[0] == f"health {BDF}"


def test_unhealthy_bus_skips_the_temperature_call(lz: tuple[Script, str]) -> None:
    script, sock = lz
    script.bus_ok = False
    health = LevelZeroHealth(sock)
    assert health(card()) is Health.UNHEALTHY
    assert script.asked == [f"health {BDF}"]
    health.close()


def test_card_without_bdf_is_healthy_without_asking(lz: tuple[Script, str]) -> None:
    script, sock = lz
    assert LevelZeroHealth(sock)(card(bdf=None)) is Health.HEALTHY
    assert script.asked == []


def test_absent_sidecar_means_healthy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    health = LevelZeroHealth(str(tmp_path / "nothing.sock"), timeout=1.0)
    start = time.monotonic()
    with caplog.at_level("DEBUG", logger="gpu_plugin.health"):
        assert [health(card()) for _ in range(3)] == [Health.HEALTHY] * 3
    assert time.monotonic() - start < 3.5
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "treating devices as healthy" in warnings[0].getMessage()
    health.close()


def test_sidecar_restart_does_not_flap(tmp_path: Path) -> None:
    """Unhealthy stays Unhealthy while the sidecar answers; while it is gone: Healthy (no information)."""
    sock = str(tmp_path / "server.sock")
    script = Script(memory_ok=False)
    server = _serve(script, sock)
    health = LevelZeroHealth(sock, timeout=1.0)
    try:
        assert health(card()) is Health.UNHEALTHY
        server.stop(None).wait()
        assert health(card()) is Health.HEALTHY
        server = _serve(script, sock)
        deadline = time.monotonic() + 5  # the client reconnects within its 2 s max backoff
        while health(card()) is not Health.UNHEALTHY:
            assert time.monotonic() < deadline, "no answer after the sidecar came back"
            time.sleep(0.1)
    finally:
        health.close()
        server.stop(None).wait()


# -- against H3's real sidecar ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "temperatures,expected",
    [({"pkg": 55, "vram": 61}, Health.HEALTHY), ({"pkg": 105, "vram": 61}, Health.UNHEALTHY)],
    ids=["cool", "package-too-hot"],
)
def test_real_sidecar_through_scan(tmp_path: Path, temperatures: dict[str, int], expected: Health) -> None:
    from gpu_plugin.levelzero.server import serve
    from gpu_plugin.levelzero.sources import SysfsSource

    fs = FakeSysfs(tmp_path / "host")
    fs.add_gpu(BDF, card=0, render=128, driver="xe", temperatures=temperatures)
    sock = str(tmp_path / "lz" / "server.sock")
    server = serve(SysfsSource(fs.sysfs_root), sock)
    health = LevelZeroHealth(sock)
    try:
        tree = gs.scan(fs.sysfs_root, fs.devfs_root, health=health)
    finally:
        health.close()
        server.stop(None).wait()
    assert tree["xe"]["card0-0"].health is expected


# upstream's TestScanWithHealth: (id, pci address link?, script changes or None = no health source, expected)
SCAN_WITH_HEALTH = [
    ("one device with no symlink", False, None, Health.HEALTHY),
    ("one device with proper symlink", True, {}, Health.HEALTHY),
    ("one device with failure on temp reading", True, {"fail_temps": True}, Health.HEALTHY),
    (
        "one unhealthy device with proper symlink",
        True,
        {"memory_ok": False, "bus_ok": False, "soc_ok": False},
        Health.UNHEALTHY,
    ),
    ("one device with proper symlink returns error", True, "down", Health.HEALTHY),
]


@pytest.mark.parametrize(
    "link,changes,expected", [c[1:] for c in SCAN_WITH_HEALTH], ids=[c[0] for c in SCAN_WITH_HEALTH]
)
def test_upstream_scan_with_health(
    tmp_path: Path, lz: tuple[Script, str], link: bool, changes: Any, expected: Health
) -> None:
    from tests.gpu_plugin.conftest import UpstreamCase, create_upstream_files

    script, sock = lz
    sysfs, devfs = create_upstream_files(
        tmp_path / "up",
        UpstreamCase(
            pci_addresses={BDF: "card0"} if link else {},
            sysfsdirs=["card0/device/drm/card0", "card0/device/drm/controlD64"],
            sysfsfiles={"card0/device/vendor": "0x8086"},
            devfsdirs=["card0", f"by-path/pci-{BDF}-card", f"by-path/pci-{BDF}-render"],
        ),
    )
    health = None
    if changes is not None:
        for key, value in changes.items() if isinstance(changes, dict) else ():
            setattr(script, key, value)
        health = LevelZeroHealth(str(tmp_path / "absent.sock") if changes == "down" else sock, timeout=1.0)
    try:
        tree = gs.scan(sysfs, devfs, health=health)
    finally:
        if health is not None:
            health.close()
    assert {res: len(d) for res, d in tree.items()} == {"i915": 1}
    assert tree["i915"]["card0-0"].health is expected
    if changes not in (None, "down"):
        assert script.asked[0] == f"health {BDF}"
