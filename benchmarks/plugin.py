"""``python -m benchmarks plugin``: figures of the GPU device plugin against the emulated kubelet.

Scan time over a fake sysfs (tests/fakes/sysfs.py), then real ``python -m gpu_plugin`` processes
serving real gRPC on unix sockets to the fake kubelet (tests/fakes/kubelet.py): Allocate and
GetPreferredAllocation latency, hotplug → ListAndWatch update with periodic rescans only (no udev
here), re-registration after a kubelet restart, and idle RSS / CPU read from /proc.
Emulated: sysfs/devfs (plain files), kubelet (the fake); everything else is the real plugin.
"""
from __future__ import annotations

import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import Result, median, percentile
from gpu_plugin import policies
from gpu_plugin import scan as gpuscan
from gpu_plugin.deviceplugin._api import api_pb2 as pb
from tests.fakes.kubelet import FakeKubelet, PluginClient
from tests.fakes.sysfs import FakeSysfs

SUITE = "plugin"
I915 = "gpu.intel.com/i915"
ROOT = Path(__file__).resolve().parent.parent


def _fake_node(root: Path, pfs: int, vfs: int) -> FakeSysfs:
    """``pfs`` i915 cards on their own PCI buses, each with ``vfs`` SR-IOV VFs (0 = plain cards)."""
    fake = FakeSysfs(root)
    for k in range(pfs):
        fake.add_gpu(f"0000:{0x10 + k:02x}:00.0", card=k * 64, render=128 + k * 64, vfs=vfs, numa=k % 2)
    return fake


def _clock(fn: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def bench_scan(tmp: Path, fake: FakeSysfs) -> list[Result]:
    tree = gpuscan.scan(fake.sysfs_root, fake.devfs_root)
    count = sum(len(d) for d in tree.values())
    if count != 16 * 63:
        raise RuntimeError(f"fake tree advertises {count} devices, expected {16 * 63}")
    samples = _clock(lambda: gpuscan.scan(fake.sysfs_root, fake.devfs_root), 7)
    cards = gpuscan.discover_cards(fake.sysfs_root)
    discovery = _clock(lambda: gpuscan.discover_cards(fake.sysfs_root), 7)
    building = _clock(lambda: gpuscan.device_tree(cards, fake.devfs_root, gpuscan.ScanOptions()), 7)
    return [Result(SUITE, "full scan, 16 PFs x 63 VFs (1,008 devices), median", median(samples), "ms", 150),
            Result(SUITE, "  of which: card discovery (sysfs reads), median", median(discovery), "ms"),
            Result(SUITE, "  of which: device tree building, median", median(building), "ms")]


class PluginProcess:
    """``python -m gpu_plugin`` on a fake node, registered with its own fake kubelet."""

    def __init__(self, tmp: Path, name: str, fake: FakeSysfs, *flags: str) -> None:
        self.kubelet_dir = Path(tempfile.mkdtemp(prefix=f"k{name}-", dir="/tmp"))  # short socket paths
        self.kubelet = FakeKubelet(self.kubelet_dir).start()
        self.log = open(tmp / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "gpu_plugin", "-sysfs-root", fake.sysfs_root, "-devfs-root",
               fake.devfs_root, "-kubelet-dir", str(self.kubelet_dir), "-cdi-dir", str(tmp / f"{name}-cdi"),
               *flags]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.started_at = time.monotonic()  #: just before the process is spawned
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def wait_advertised(self, count: int, timeout: float = 30.0) -> None:
        try:
            self.kubelet.wait_for(
                lambda: self.proc.poll() is not None or self.kubelet.allocatable(I915) == count,
                timeout, f"{count} devices advertised")
        finally:
            if self.proc.poll() is not None:
                raise RuntimeError(f"plugin exited with {self.proc.returncode}; see {self.log.name}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.kubelet.stop()
        self.log.close()
        shutil.rmtree(self.kubelet_dir, ignore_errors=True)


@contextmanager
def plugin(tmp: Path, name: str, fake: FakeSysfs, *flags: str) -> Iterator[PluginProcess]:
    proc = PluginProcess(tmp, name, fake, *flags)
    try:
        yield proc
    finally:
        proc.stop()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError("no Threads")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def bench_allocate(tmp: Path, fake: FakeSysfs) -> list[Result]:
    ids = [f"card{k * 64 + i}-0" for k in range(16) for i in range(1, 64)]
    with plugin(tmp, "alloc", fake, "-scan-interval", "60") as proc:
        proc.wait_advertised(len(ids))
        with proc.kubelet.client(I915) as client:
            for dev in ids[:50]:
                client.allocate([dev])  # warm-up (first Allocate of a device also writes its CDI spec)
            cpu0 = _cpu_seconds(proc.proc.pid)
            samples = _time_allocates(client, ids[:50], 2000)
            server_cpu = (_cpu_seconds(proc.proc.pid) - cpu0) / 2000 * 1000
        rss_big = _rss_mb(proc.proc.pid)
    return [
        Result(SUITE, "Allocate over unix socket, 2,000 calls, p50", percentile(samples, 50), "ms", 1),
        Result(SUITE, "Allocate over unix socket, 2,000 calls, p99", percentile(samples, 99), "ms", 3),
        Result(SUITE, "Allocate: plugin process CPU per call", server_cpu, "ms"),
        Result(SUITE, "RSS with 1,008 devices advertised", rss_big, "MB"),
    ]


_FLOOR_SERVER = """
import sys
from concurrent.futures import ThreadPoolExecutor
import grpc
from gpu_plugin.deviceplugin._api import api_pb2 as pb, api_pb2_grpc as pbg
class Fixed(pbg.DevicePluginServicer):
    def Allocate(self, request, context):
        spec = pb.DeviceSpec(container_path="/dev/dri/card0", host_path="/dev/dri/card0", permissions="rw")
        return pb.AllocateResponse(container_responses=[pb.ContainerAllocateResponse(devices=[spec])])
server = grpc.server(ThreadPoolExecutor(12))
pbg.add_DevicePluginServicer_to_server(Fixed(), server)
server.add_insecure_port("unix:" + sys.argv[1])
server.start()
sys.stdin.read()
"""


def _time_allocates(client: PluginClient, ids: list[str], calls: int) -> list[float]:
    """Client-side latency of ``calls`` Allocate calls (the client's GC paused: kubelet is Go)."""
    samples = []
    gc.disable()
    try:
        for n in range(calls):
            t0 = time.perf_counter()
            client.allocate([ids[n % len(ids)]])
            samples.append((time.perf_counter() - t0) * 1000)
    finally:
        gc.enable()
    return samples


def bench_grpc_floor(tmp: Path) -> list[Result]:
    """The same 2,000 calls against a bare grpcio server returning a fixed answer: the floor
    this machine and grpcio set, to read the plugin's figures against."""
    sock = Path(tempfile.mkdtemp(prefix="floor-", dir="/tmp")) / "floor.sock"
    proc = subprocess.Popen([sys.executable, "-c", _FLOOR_SERVER, str(sock)], stdin=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        with PluginClient(sock) as client:
            client.stub.Allocate(pb.AllocateRequest(), timeout=30, wait_for_ready=True)
            samples = _time_allocates(client, ["x"], 2000)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(sock.parent, ignore_errors=True)
    return [Result(SUITE, "floor: bare grpcio unary call, p50", percentile(samples, 50), "ms"),
            Result(SUITE, "floor: bare grpcio unary call, p99", percentile(samples, 99), "ms")]


def _metrics_url(proc: PluginProcess, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"serving Prometheus metrics on (http://\S+/metrics)",
                          Path(proc.log.name).read_text())
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise RuntimeError(f"plugin logged no metrics URL; see {proc.log.name}")


def bench_metrics_overhead(tmp: Path, fake: FakeSysfs, rounds: int = 9, calls: int = 4000) -> list[Result]:
    """Allocate latency of two plugin processes on the same node, one with -metrics-address (and
    scraped once a second meanwhile, far more often than Prometheus would), one without. Calls
    alternate between the two one by one, so the machine's load (other processes) hits both alike;
    the on/off ratios are the median over ``rounds`` blocks of ``calls`` calls each, so one block
    hit by a load spike does not decide the figure."""
    ids = [f"card{k * 64 + i}-0" for k in range(16) for i in range(1, 64)]
    blocks: list[dict[str, list[float]]] = [{"off": [], "on": []} for _ in range(rounds)]
    scraped = [0]
    stop = threading.Event()
    with plugin(tmp, "m-off", fake, "-scan-interval", "60") as off, \
            plugin(tmp, "m-on", fake, "-scan-interval", "60", "-metrics-address", "127.0.0.1:0") as on:
        off.wait_advertised(len(ids))
        on.wait_advertised(len(ids))
        url = _metrics_url(on)

        def scrape() -> None:
            while not stop.wait(1.0):
                with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - local
                    response.read()
                scraped[0] += 1

        scraper = threading.Thread(target=scrape, daemon=True)
        with off.kubelet.client(I915) as c_off, on.kubelet.client(I915) as c_on:
            clients = {"off": c_off, "on": c_on}
            for client in clients.values():
                for dev in ids[:50]:
                    client.allocate([dev])  # warm-up (CDI specs written)
            scraper.start()
            try:
                gc.disable()  # the client's GC paused, as in _time_allocates
                for n in range(rounds * calls):  # call by call, in alternating order
                    for name in (("off", "on") if n % 2 == 0 else ("on", "off")):
                        dev = [ids[n % 50]]
                        t0 = time.perf_counter()
                        clients[name].allocate(dev)
                        blocks[n // calls][name].append((time.perf_counter() - t0) * 1000)
            finally:
                gc.enable()
                stop.set()
                scraper.join(5)
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - local
            text = response.read().decode()
        counted = re.search(r'deviceplugin_allocate_duration_seconds_count\{resource="gpu.intel.com/i915"\} '
                            r"(\S+)", text)
        if counted is None or float(counted.group(1)) < rounds * calls:
            raise RuntimeError("the metrics-on plugin did not count its Allocate calls")
    total = rounds * calls
    pooled = {k: [x for block in blocks for x in block[k]] for k in ("off", "on")}
    p50 = {k: percentile(v, 50) for k, v in pooled.items()}
    p99 = {k: percentile(v, 99) for k, v in pooled.items()}
    ratio = {pct: median([100 * percentile(b["on"], pct) / percentile(b["off"], pct) for b in blocks])
             for pct in (50, 99)}
    share = "Allocate p{} with metrics on, % of metrics off, median of " + f"{rounds} blocks"
    return [
        Result(SUITE, f"Allocate p50, metrics off ({total:,} calls each, interleaved)", p50["off"], "ms"),
        Result(SUITE, "Allocate p50, -metrics-address on, scraped every 1 s", p50["on"], "ms"),
        Result(SUITE, share.format(50), ratio[50], "%", 105),
        Result(SUITE, "Allocate p99, metrics off", p99["off"], "ms"),
        Result(SUITE, "Allocate p99, -metrics-address on, scraped every 1 s", p99["on"], "ms"),
        Result(SUITE, share.format(99), ratio[99], "%", 105),
        Result(SUITE, f"  scrapes of /metrics during the run ({scraped[0]})", float(scraped[0]), "n"),
    ]


def bench_preferred(tmp: Path) -> list[Result]:
    fake = _fake_node(tmp / "pref", 64, 0)
    ids = [f"card{k * 64}-{i}" for k in range(64) for i in range(8)]
    with plugin(tmp, "pref", fake, "-scan-interval", "60", "-shared-dev-num", "8",
                "-allocation-policy", "balanced") as proc:
        proc.wait_advertised(len(ids))
        time.sleep(1.0)
        idle_rss = _rss_mb(proc.proc.pid)
        with proc.kubelet.client(I915) as client:
            got = client.preferred(ids, [], 8)
            if len({d.split("-")[0] for d in got}) != 8:
                raise RuntimeError(f"balanced policy did not spread: {got}")
            samples = _clock(lambda: client.preferred(ids, [], 8), 500)
    alone = _clock(lambda: policies.balanced(ids, [], 8), 500)
    return [Result(SUITE, "idle RSS, plugin process with 64 cards x 8 IDs", idle_rss, "MB", 45),
            Result(SUITE, "GetPreferredAllocation, 512 IDs (64 cards x 8), balanced, p50",
                   percentile(samples, 50), "ms", 2),
            Result(SUITE, "  of which: balanced policy alone (in process), p50", percentile(alone, 50), "ms")]


def bench_hotplug(tmp: Path) -> list[Result]:
    fake = _fake_node(tmp / "hot", 1, 0)
    samples = []
    with plugin(tmp, "hot", fake, "-scan-interval", "0.5") as proc:
        proc.wait_advertised(1)
        for n, offset in enumerate((0.05, 0.15, 0.25, 0.35, 0.45), start=1):
            time.sleep(offset)  # hotplug at different points of the 0.5 s rescan period
            t0 = time.perf_counter()
            fake.add_gpu(f"0000:{0x40 + n:02x}:00.0", card=64 * n, render=128 + 64 * n)
            proc.kubelet.wait_for(lambda n=n: proc.kubelet.allocatable(I915) == n + 1, 10, "hotplugged GPU")
            samples.append((time.perf_counter() - t0) * 1000)
    return [Result(SUITE, "hotplug -> ListAndWatch update, rescan 0.5 s (no udev), median",
                   median(samples), "ms")]


def bench_idle_and_restart(tmp: Path) -> list[Result]:
    fake = _fake_node(tmp / "idle", 2, 0)
    with plugin(tmp, "idle", fake) as proc:  # default flags: -scan-interval 5
        proc.wait_advertised(2)
        time.sleep(1.0)
        pid = proc.proc.pid
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        time.sleep(5.0)
        cpu_pct = (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100
        rss = _rss_mb(pid)
        samples = []
        for _ in range(20):
            t0 = time.monotonic()
            proc.kubelet.restart()
            reg = proc.kubelet.wait_for_registration(I915, timeout=10)
            samples.append((reg.received_at - t0) * 1000)
            proc.kubelet.wait_for(lambda: proc.kubelet.allocatable(I915) == 2, 10, "devices re-advertised")
    return [
        Result(SUITE, "idle RSS, plugin process with 2 GPUs", rss, "MB", 40),
        Result(SUITE, "idle CPU over 5 s (one rescan included)", cpu_pct, "%"),
        Result(SUITE, "kubelet restart -> re-registered, p50 of 20", percentile(samples, 50), "ms", 100),
        Result(SUITE, "kubelet restart -> re-registered, p99 of 20", percentile(samples, 99), "ms"),
    ]


def bench_start(tmp: Path, big: FakeSysfs, runs: int = 5) -> list[Result]:
    """From spawning ``python -m gpu_plugin`` (``-shared-dev-num 8``) to its registration and to the
    first ListAndWatch response the fake kubelet receives, for one card and for 16 PFs x 63 VFs
    (8,064 IDs); the difference is what the 1,008 VFs cost a starting plugin (scan, device tree,
    the response), interpreter start and imports being the same in both."""
    one = _fake_node(tmp / "one", 1, 0)
    registered: list[float] = []
    listed: dict[str, list[float]] = {"one": [], "big": []}
    for n in range(runs):
        for name, fake, count in (("one", one, 8), ("big", big, 16 * 63 * 8)):
            flags = ("-scan-interval", "60", "-shared-dev-num", "8")
            with plugin(tmp, f"start-{name}-{n}", fake, *flags) as proc:
                reg = proc.kubelet.wait_for_registration(I915, timeout=30)
                proc.wait_advertised(count)
                updated = proc.kubelet.updated_at(I915)
                if updated is None:
                    raise RuntimeError("no ListAndWatch response recorded")
                listed[name].append((updated - proc.started_at) * 1000)
                if name == "one":
                    registered.append((reg.received_at - proc.started_at) * 1000)
    return [
        Result(SUITE, f"plugin start -> registered with kubelet (1 GPU), p50 of {runs}",
               percentile(registered, 50), "ms", 500),
        Result(SUITE, "plugin start -> first ListAndWatch, 1 card x 8 IDs, median",
               median(listed["one"]), "ms"),
        Result(SUITE, "plugin start -> first ListAndWatch, 8,064 IDs (1,008 VFs x 8), median",
               median(listed["big"]), "ms"),
        Result(SUITE, "1,008-VF scan from the process's start (8,064 IDs minus 1 card)",
               median(listed["big"]) - median(listed["one"]), "ms", 150),
    ]


def bench_metrics_slow_connections(tmp: Path, connections: int = 2000, hold: float = 3.0) -> list[Result]:
    """``-metrics-address`` under ``connections`` slow clients (each sends half a request line and
    holds the connection ``hold`` seconds): the plugin's RSS and threads at their peak vs idle."""
    import resource
    import socket

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < connections + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, connections + 256), hard))
    fake = _fake_node(tmp / "slowhttp", 2, 0)
    socks: list[socket.socket] = []
    with plugin(tmp, "slowhttp", fake, "-metrics-address", "127.0.0.1:0") as proc:
        proc.wait_advertised(2)
        url = _metrics_url(proc)
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - local
            response.read()  # the endpoint and the registry warmed up
        time.sleep(1.0)
        pid = proc.proc.pid
        idle, idle_threads = _rss_mb(pid), _threads(pid)
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        peak, peak_threads = idle, idle_threads
        try:
            for n in range(connections):
                try:
                    sock = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
                    sock.sendall(b"GET /metrics HTTP/1.0\r\n")
                    socks.append(sock)
                except OSError:
                    pass  # a refusal that reset the connection before the send: counted by the server
                if n % 100 == 0:
                    peak, peak_threads = max(peak, _rss_mb(pid)), max(peak_threads, _threads(pid))
            end = time.monotonic() + hold
            while time.monotonic() < end:
                peak, peak_threads = max(peak, _rss_mb(pid)), max(peak_threads, _threads(pid))
                time.sleep(0.1)
        finally:
            for sock in socks:
                sock.close()
        if proc.proc.poll() is not None:
            raise RuntimeError(f"plugin died under slow metrics connections; see {proc.log.name}")
    return [
        Result(SUITE, "metrics endpoint: idle RSS (2 GPUs, -metrics-address)", idle, "MB"),
        Result(SUITE, f"metrics endpoint: RSS growth under {connections:,} slow connections, peak",
               peak - idle, "MB", 10),
        Result(SUITE, f"metrics endpoint: threads at peak (idle {idle_threads})", float(peak_threads), "n"),
    ]


def run() -> list[Result]:
    # Fake sysfs on tmpfs like the real one (on a busy ext4 disk, building 1,008 devices takes 30 s).
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    tmp = Path(tempfile.mkdtemp(prefix="bench-plugin-", dir=shm))
    try:
        big = _fake_node(tmp / "big", 16, 63)
        results = bench_scan(tmp, big) + bench_start(tmp, big) + bench_allocate(tmp, big) \
            + bench_metrics_overhead(tmp, big) + bench_grpc_floor(tmp)
        for bench in (bench_preferred, bench_hotplug, bench_idle_and_restart, bench_metrics_slow_connections):
            results += bench(tmp)
        return results
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
