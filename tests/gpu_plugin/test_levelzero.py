"""The Level-Zero health sidecar over real gRPC on a unix socket, reading a fake sysfs tree.

Emulated: the kernel's sysfs (tests/fakes/sysfs.py, plus hwmon/AER/RAS files written here) and the
Level Zero loader: FAKE_LOADER_C below is compiled with gcc into a libze_loader.so.1 with two fixed
devices (no real loader or GPU here); its struct layouts are checked against our ctypes structures.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gpu_plugin.levelzero import ZE_ERROR_UNKNOWN, Health, describe, ze_ctypes
from gpu_plugin.levelzero._api import levelzero_pb2 as pb
from gpu_plugin.levelzero._api import levelzero_pb2_grpc as pb_grpc
from gpu_plugin.levelzero.server import SocketInUseError, serve
from gpu_plugin.levelzero.sources import LevelZeroSource, SysfsSource, aer_total
from tests.fakes.sysfs import FakeSysfs
from tests.scrape import scrape, url_from_log

BDF = "0000:03:00.0"
AER_CLEAN = "Undefined 0\nDLP 0\nSDES 0\nTLP 0\nTOTAL_ERR_FATAL 0\n"


@pytest.fixture
def fs(tmp_path: Path) -> FakeSysfs:
    fs = FakeSysfs(tmp_path / "root")
    fs.add_gpu(BDF, card=0, render=128, driver="xe", tiles=2, temperatures={"pkg": 55, "vram": 61})
    fs.add_gpu("0000:00:02.0", card=1, render=129, driver="i915")  # integrated: no hwmon, no VRAM
    return fs


@pytest.fixture
def stub(fs: FakeSysfs, tmp_path: Path) -> Iterator[pb_grpc.LevelzeroStub]:
    sock = str(tmp_path / "lz" / "server.sock")
    server = serve(SysfsSource(fs.sysfs_root), sock)
    channel = grpc.insecure_channel("unix:" + sock)
    try:
        yield pb_grpc.LevelzeroStub(channel)
    finally:
        channel.close()
        server.stop(None).wait()


def _pci(fs: FakeSysfs, bdf: str, name: str) -> str:
    return f"devices/pci0000:00/{bdf}/{name}"


def test_healthy_device(stub: pb_grpc.LevelzeroStub) -> None:
    h = stub.GetDeviceHealth(pb.DeviceId(bdfAddress=BDF), timeout=5)
    assert (h.memory_ok, h.bus_ok, h.soc_ok, h.error.errorcode) == (True, True, True, 0)


@pytest.mark.parametrize("name,text,expected", [
    ("aer_dev_fatal", AER_CLEAN.replace("DLP 0", "DLP 2").replace("FATAL 0", "FATAL 2"), (True, False, True)),
    ("aer_dev_nonfatal", "TLP 1\nTOTAL_ERR_NONFATAL 1\n", (True, False, True)),
    ("aer_dev_fatal", AER_CLEAN, (True, True, True)),
    ("aer_dev_correctable", "BadTLP 7\nTOTAL_ERR_COR 7\n", (True, True, True)),
    ("drm/card0/gt/gt0/error_counter/fatal_guc", "3", (True, True, False)),
    ("tile1/gt1/error_counter/soc_fatal_hbm0_chnl0", "1", (False, True, True)),
    ("drm/card0/gt/gt0/error_counter/soc_fatal_iosf_pciaer", "1", (True, False, True)),
    ("drm/card0/gt/gt0/error_counter/gsc_nonfatal_aon_parity", "4", (True, True, True)),
    ("drm/card0/gt/gt0/error_counter/correctable_eu_grf", "5", (True, True, True)),
    ("drm/card0/gt/gt0/error_counter/fatal_tlb", "garbage", (True, True, True)),
], ids=["aer-fatal", "aer-nonfatal", "aer-clean", "aer-correctable", "ras-fatal-soc", "ras-fatal-memory",
        "ras-pci-aer", "ras-nonfatal", "ras-correctable", "ras-garbage"])
def test_health_from_error_counters(fs: FakeSysfs, stub: pb_grpc.LevelzeroStub, name: str, text: str,
                                    expected: tuple[bool, bool, bool]) -> None:
    fs.write(_pci(fs, BDF, name), text)
    h = stub.GetDeviceHealth(pb.DeviceId(bdfAddress=BDF), timeout=5)
    assert (h.memory_ok, h.bus_ok, h.soc_ok) == expected
    assert h.error.errorcode == 0


def test_temperatures_from_hwmon(stub: pb_grpc.LevelzeroStub) -> None:
    t = stub.GetDeviceTemperature(pb.DeviceId(bdfAddress=BDF), timeout=5)
    assert (getattr(t, "global"), t.gpu, t.memory, t.error.errorcode) == (61.0, 55.0, 61.0, 0)


def test_temperature_labels_and_garbage(fs: FakeSysfs, stub: pb_grpc.LevelzeroStub) -> None:
    hwmon = _pci(fs, BDF, "hwmon/hwmon0")
    fs.write(f"{hwmon}/temp3_label", "gt0")
    fs.write(f"{hwmon}/temp3_input", "72500")
    fs.write(f"{hwmon}/temp4_input", "not a number")
    t = stub.GetDeviceTemperature(pb.DeviceId(bdfAddress=BDF), timeout=5)
    assert (getattr(t, "global"), t.gpu, t.memory) == (72.5, 72.5, 61.0)


def test_missing_kind_and_missing_hwmon(fs: FakeSysfs, stub: pb_grpc.LevelzeroStub) -> None:
    os.unlink(fs.sys / _pci(fs, BDF, "hwmon/hwmon0/temp2_input"))  # vram sensor gone
    t = stub.GetDeviceTemperature(pb.DeviceId(bdfAddress=BDF), timeout=5)
    assert (getattr(t, "global"), t.gpu, t.memory) == (55.0, 55.0, -999.0)
    assert t.error.errorcode == 0  # readings that exist are not hidden behind an in-band error
    t = stub.GetDeviceTemperature(pb.DeviceId(bdfAddress="0000:00:02.0"), timeout=5)
    assert (getattr(t, "global"), t.gpu, t.memory, t.error.errorcode) == (-999.0, -999.0, -999.0, 0)


def test_unknown_bdf_is_an_in_band_error(stub: pb_grpc.LevelzeroStub) -> None:
    unknown = pb.DeviceId(bdfAddress="0000:99:00.0")
    h = stub.GetDeviceHealth(unknown, timeout=5)
    assert (h.memory_ok, h.bus_ok, h.soc_ok) == (True, True, True)  # no information = healthy, as upstream
    assert (h.error.errorcode, h.error.description) == (ZE_ERROR_UNKNOWN, "unknown (0x7FFFFFFE)")
    t = stub.GetDeviceTemperature(unknown, timeout=5)
    assert (getattr(t, "global"), t.error.errorcode) == (-999.0, ZE_ERROR_UNKNOWN)
    m = stub.GetDeviceMemoryAmount(unknown, timeout=5)
    assert (m.memory_size, m.error.errorcode) == (0, ZE_ERROR_UNKNOWN)


def test_indices_and_memory(fs: FakeSysfs, stub: pb_grpc.LevelzeroStub) -> None:
    assert list(stub.GetIntelIndices(pb.GetIntelIndicesMessage(), timeout=5).indices) == [0, 1]
    for t in (0, 1):
        fs.write(_pci(fs, BDF, f"tile{t}/physical_vram_size_bytes"), str(8 << 30))
    assert stub.GetDeviceMemoryAmount(pb.DeviceId(bdfAddress=BDF), timeout=5).memory_size == 16 << 30
    assert stub.GetDeviceMemoryAmount(pb.DeviceId(bdfAddress="0000:00:02.0"), timeout=5).memory_size == 0
    fs.remove_gpu("0000:00:02.0")
    assert list(stub.GetIntelIndices(pb.GetIntelIndicesMessage(), timeout=5).indices) == [0]


def test_i915_lmem_times_tiles(tmp_path: Path) -> None:
    fs = FakeSysfs(tmp_path)
    fs.add_gpu(BDF, driver="i915", lmem_total_bytes=4096, tiles=2)
    assert SysfsSource(fs.sysfs_root).memory(BDF).size == 8192


def test_bad_sysfs_never_crashes_the_server(fs: FakeSysfs, stub: pb_grpc.LevelzeroStub) -> None:
    fs.write(_pci(fs, BDF, "vendor"), "")  # half-written vendor file: discovery skips the card
    h = stub.GetDeviceHealth(pb.DeviceId(bdfAddress=BDF), timeout=5)
    assert h.error.errorcode == ZE_ERROR_UNKNOWN
    fs.write(_pci(fs, BDF, "vendor"), "0x8086")
    assert stub.GetDeviceHealth(pb.DeviceId(bdfAddress=BDF), timeout=5).error.errorcode == 0


def test_source_exception_becomes_in_band_error(tmp_path: Path) -> None:
    class Broken(SysfsSource):
        def health(self, bdf: str):  # type: ignore[override]
            raise RuntimeError("boom")

    sock = str(tmp_path / "s.sock")
    server = serve(Broken(str(tmp_path)), sock)
    try:
        with grpc.insecure_channel("unix:" + sock) as ch:
            h = pb_grpc.LevelzeroStub(ch).GetDeviceHealth(pb.DeviceId(bdfAddress=BDF), timeout=5)
        assert (h.bus_ok, h.error.errorcode) == (True, ZE_ERROR_UNKNOWN)
        assert h.error.description == describe(ZE_ERROR_UNKNOWN)
    finally:
        server.stop(None).wait()


def test_socket_mode_stale_socket_and_foreign_file(fs: FakeSysfs, tmp_path: Path) -> None:
    sock = str(tmp_path / "server.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock)  # a socket file nobody listens on, as a killed sidecar leaves behind
    stale.close()
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    second = serve(SysfsSource(fs.sysfs_root), sock)
    try:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
        with grpc.insecure_channel("unix:" + sock) as ch:
            assert pb_grpc.LevelzeroStub(ch).GetDeviceHealth(pb.DeviceId(bdfAddress=BDF), timeout=5).bus_ok
    finally:
        second.stop(None).wait()
    other = tmp_path / "not-a-socket"
    other.write_text("keep me")
    with pytest.raises(SocketInUseError):
        serve(SysfsSource(fs.sysfs_root), str(other))
    assert other.read_text() == "keep me"


def test_aer_total_without_total_line(tmp_path: Path) -> None:
    (tmp_path / "aer").write_text("DLP 1\nTLP 2\n")
    assert aer_total(str(tmp_path / "aer"), "TOTAL_ERR_FATAL") == 3
    assert aer_total(str(tmp_path / "missing"), "TOTAL_ERR_FATAL") == 0


def _wait_for(path: str, proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "socket never appeared"
        time.sleep(0.05)


def test_cli_falls_back_to_sysfs_and_stops_on_sigterm(fs: FakeSysfs, tmp_path: Path) -> None:
    sock = str(tmp_path / "cli.sock")
    log_path = tmp_path / "levelzero.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gpu_plugin.levelzero.server", "-socket", sock,
                                 "--sysfs-root", fs.sysfs_root, "-logtostderr", "-log_file_max_size=10",
                                 "-metrics-address", ":0"],
                                stderr=log, text=True)
    try:
        url = url_from_log(log_path, alive=lambda: proc.poll() is None)
        _wait_for(sock, proc)
        with grpc.insecure_channel("unix:" + sock) as ch:
            stub = pb_grpc.LevelzeroStub(ch)
            t = stub.GetDeviceTemperature(pb.DeviceId(bdfAddress=BDF), timeout=5)
            unknown = stub.GetDeviceHealth(pb.DeviceId(bdfAddress="0000:99:00.0"), timeout=5)
        assert t.gpu == 55.0 and unknown.error.errorcode != 0
        samples = scrape(url)
        assert samples.value("intel_gpu_levelzero_requests_total", method="GetDeviceTemperature",
                             outcome="ok") == 1
        assert samples.value("intel_gpu_levelzero_requests_total", method="GetDeviceHealth",
                             outcome="error") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    err = log_path.read_text()
    assert proc.returncode == 0, err
    # -v 0 (upstream's default) still shows klog's Info lines; per-request lines only from -v 3
    assert "not available" in err and "from the sysfs source" in err and "temperatures of" not in err
    assert "klog flags without effect here (logs always go to stderr, levels from -v only): " \
        "-log_file_max_size" in err
    assert not os.path.exists(sock)


@pytest.mark.parametrize("args,flag", [
    (["-socket"], "-socket"),
    (["-bogus"], "-bogus"),
    (["-wsl=maybe"], "-wsl"),
    (["-source", "gpu"], "-source"),
    (["-sysfs-root", "/nonexistent/sys"], "-sysfs-root"),
    (["-socket", "/tmp/" + "s" * 120], "-socket"),
    (["-metrics-address", "::1:80"], "-metrics-address"),
], ids=["missing-value", "unknown", "bad-bool", "bad-source", "missing-root", "socket-too-long",
        "bad-metrics-address"])
def test_bad_flags_exit_2_with_one_line(args: list[str], flag: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "gpu_plugin.levelzero.server", *args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and flag in proc.stderr, proc.stderr


# --- the Level Zero loader path, against a compiled fake loader -----------------------------------

FAKE_LOADER_C = r"""
/* Emulated Level Zero loader for tests: two devices with fixed readings.
 * Struct layouts follow zes_api.h / ze_api.h v1.x (only the fields read by the sidecar). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>

typedef uint8_t ze_bool_t;
typedef struct { uint32_t domain, bus, device, function; } zes_pci_address_t;
typedef struct { int32_t gen, width; int64_t maxBandwidth; } zes_pci_speed_t;
typedef struct { int stype; void *pNext; zes_pci_address_t address; zes_pci_speed_t maxSpeed;
                 ze_bool_t haveBandwidthCounters, havePacketCounters, haveReplayCounters;
} zes_pci_properties_t;
typedef struct { int stype; const void *pNext; int status; uint32_t qualityIssues, stabilityIssues;
                 zes_pci_speed_t speed; } zes_pci_state_t;
typedef struct { int stype; const void *pNext; int health; uint64_t free, size; } zes_mem_state_t;
typedef struct { int stype; void *pNext; int type; ze_bool_t onSubdevice; uint32_t subdeviceId;
                 double maxTemperature; ze_bool_t isCriticalTempSupported, isThreshold1Supported,
                 isThreshold2Supported; } zes_temp_properties_t;
typedef struct { int stype; void *pNext; int type; uint32_t vendorId; uint32_t deviceId;
} ze_device_properties_head_t;

struct mem { int health; uint64_t size; };
struct temp { int type; double value; };
struct dev { zes_pci_address_t addr; uint32_t vendor; uint32_t quality; int nmem; struct mem mem[2];
             int ntemp; struct temp temp[3]; };
static struct dev devs[2] = {
  { {0, 0x03, 0, 0}, 0x8086, 0, 2, {{1, 4ull << 30}, {1, 4ull << 30}}, 3, {{0, 50.5}, {1, 45.0}, {2, 60.0}} },
  { {0, 0x0a, 0, 1}, 0x1002, 2, 1, {{3, 1ull << 30}}, 1, {{0, 70.0}} },
};
static int driver;

static int listing(uint32_t *count, void **out, void **items, uint32_t n) {
  if (!out) { *count = n; return 0; }
  for (uint32_t i = 0; i < n && i < *count; i++) out[i] = items[i];
  return 0;
}
int zesInit(uint32_t flags) { (void)flags; return getenv("FAKE_ZE_FAIL") ? 0x78000001 : 0; }
int zeInit(uint32_t flags) { (void)flags; return 0; }
int zesDriverGet(uint32_t *count, void **out) { void *d[1] = {&driver}; return listing(count, out, d, 1); }
int zeDriverGet(uint32_t *count, void **out) { return zesDriverGet(count, out); }
int zesDeviceGet(void *drv, uint32_t *count, void **out) {
  void *d[2] = {&devs[0], &devs[1]}; (void)drv; return listing(count, out, d, 2); }
int zeDeviceGet(void *drv, uint32_t *count, void **out) { return zesDeviceGet(drv, count, out); }
int zesDevicePciGetProperties(struct dev *d, zes_pci_properties_t *p) { p->address = d->addr; return 0; }
int zeDeviceGetProperties(struct dev *d, ze_device_properties_head_t *p) {
  if (p->stype != 3) return 0x78000004;
  p->vendorId = d->vendor;
  return 0;
}
int zesDevicePciGetState(struct dev *d, zes_pci_state_t *s) { s->qualityIssues = d->quality; return 0; }
int zesDeviceEnumMemoryModules(struct dev *d, uint32_t *count, void **out) {
  void *m[2] = {&d->mem[0], &d->mem[1]}; return listing(count, out, m, d->nmem); }
int zesMemoryGetState(struct mem *m, zes_mem_state_t *s) {
  s->health = m->health; s->size = m->size; s->free = 0; return 0; }
int zesDeviceEnumTemperatureSensors(struct dev *d, uint32_t *count, void **out) {
  void *t[3] = {&d->temp[0], &d->temp[1], &d->temp[2]}; return listing(count, out, t, d->ntemp); }
int zesTemperatureGetProperties(struct temp *t, zes_temp_properties_t *p) { p->type = t->type; return 0; }
int zesTemperatureGetState(struct temp *t, double *v) { *v = t->value; return 0; }
/* layouts for the test to compare with the ctypes structures */
const uint64_t fake_layout[] = {
  sizeof(zes_pci_properties_t), offsetof(zes_pci_properties_t, address),
  offsetof(zes_pci_properties_t, haveReplayCounters),
  sizeof(zes_pci_state_t), offsetof(zes_pci_state_t, qualityIssues), offsetof(zes_pci_state_t, speed),
  sizeof(zes_mem_state_t), offsetof(zes_mem_state_t, health), offsetof(zes_mem_state_t, size),
  sizeof(zes_temp_properties_t), offsetof(zes_temp_properties_t, type),
  offsetof(zes_temp_properties_t, subdeviceId),
  offsetof(zes_temp_properties_t, maxTemperature), offsetof(ze_device_properties_head_t, vendorId),
};
"""


@pytest.fixture(scope="module")
def fake_loader(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build the fake Level Zero loader")
    d = tmp_path_factory.mktemp("ze")
    (d / "fake_ze.c").write_text(FAKE_LOADER_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(d / "libze_loader.so.1"), str(d / "fake_ze.c")],
                   check=True, capture_output=True, timeout=60)
    return str(d)


def test_ctypes_layouts_match_c(fake_loader: str) -> None:
    lib = ctypes.CDLL(os.path.join(fake_loader, "libze_loader.so.1"))
    layout = list((ctypes.c_uint64 * 14).in_dll(lib, "fake_layout"))
    ours = [ctypes.sizeof(ze_ctypes._PciProperties), ze_ctypes._PciProperties.address.offset,
            ze_ctypes._PciProperties.haveReplayCounters.offset,
            ctypes.sizeof(ze_ctypes._PciState), ze_ctypes._PciState.qualityIssues.offset,
            ze_ctypes._PciState.speed.offset,
            ctypes.sizeof(ze_ctypes._MemState), ze_ctypes._MemState.health.offset,
            ze_ctypes._MemState.size.offset,
            ctypes.sizeof(ze_ctypes._TempProperties), ze_ctypes._TempProperties.type.offset,
            ze_ctypes._TempProperties.subdeviceId.offset, ze_ctypes._TempProperties.maxTemperature.offset,
            5 * ctypes.sizeof(ctypes.c_uint32)]  # LevelZeroSource.indices reads vendorId as props[5]
    assert ours == layout


def test_loader_source_over_grpc(fake_loader: str, tmp_path: Path) -> None:
    source = LevelZeroSource.load(path=os.path.join(fake_loader, "libze_loader.so.1"))
    assert source is not None
    assert source.health("0000:99:00.0") == Health(error=ZE_ERROR_UNKNOWN)
    sock = str(tmp_path / "ze.sock")
    server = serve(source, sock)
    try:
        with grpc.insecure_channel("unix:" + sock) as ch:
            lz = pb_grpc.LevelzeroStub(ch)
            good, bad = pb.DeviceId(bdfAddress="0000:03:00.0"), pb.DeviceId(bdfAddress="0000:0a:00.1")
            h = lz.GetDeviceHealth(good, timeout=5)
            assert (h.memory_ok, h.bus_ok, h.soc_ok, h.error.errorcode) == (True, True, True, 0)
            h = lz.GetDeviceHealth(bad, timeout=5)  # critical memory module, PCIe link speed degraded
            assert (h.memory_ok, h.bus_ok, h.soc_ok) == (False, False, True)
            t = lz.GetDeviceTemperature(good, timeout=5)
            assert (getattr(t, "global"), t.gpu, t.memory, t.error.errorcode) == (50.5, 45.0, 60.0, 0)
            t = lz.GetDeviceTemperature(bad, timeout=5)
            assert (getattr(t, "global"), t.gpu, t.error.errorcode) == (70.0, -999.0, 0)
            assert list(lz.GetIntelIndices(pb.GetIntelIndicesMessage(), timeout=5).indices) == [0]
            assert lz.GetDeviceMemoryAmount(good, timeout=5).memory_size == 8 << 30
    finally:
        server.stop(None).wait()


@pytest.mark.parametrize("fail,expected", [(False, "levelzero"), (True, "sysfs")],
                         ids=["loader", "init-fails"])
def test_cli_prefers_the_loader(fake_loader: str, fs: FakeSysfs, tmp_path: Path, fail: bool,
                                expected: str) -> None:
    sock = str(tmp_path / "cli.sock")
    env = {**os.environ, "LD_LIBRARY_PATH": fake_loader}
    if fail:
        env["FAKE_ZE_FAIL"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "gpu_plugin.levelzero.server", "-socket", sock,
                             "-sysfs-root", fs.sysfs_root], stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(sock, proc)
        with grpc.insecure_channel("unix:" + sock) as ch:
            t = pb_grpc.LevelzeroStub(ch).GetDeviceTemperature(pb.DeviceId(bdfAddress=BDF), timeout=5)
        assert t.gpu == (45.0 if expected == "levelzero" else 55.0)  # BDF 0000:03:00.0 is in both
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert f"from the {expected} source" in err
    if fail:
        assert "zesInit failed: 0x78000001" in err


def test_forced_loader_missing_is_exit_1(fs: FakeSysfs, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "gpu_plugin.levelzero.server", "-socket",
                           str(tmp_path / "x.sock"), "-source", "levelzero", "-sysfs-root", fs.sysfs_root],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "LD_LIBRARY_PATH": ""})
    assert proc.returncode == 1
    assert "libze_loader.so.1 is not usable" in proc.stderr
