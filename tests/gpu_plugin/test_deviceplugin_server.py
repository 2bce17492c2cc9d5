"""DevicePluginServer over real gRPC on unix sockets, against the emulated kubelet (tests/fakes/kubelet.py).

No GPU code: devices are hand-made DeviceInfo records.
"""
from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from gpu_plugin.deviceplugin import api
from gpu_plugin.deviceplugin._api import api_pb2_grpc as pb_grpc
from gpu_plugin.deviceplugin.devices import DeviceState
from gpu_plugin.deviceplugin.server import AllocationLog, DevicePluginServer
from gpu_plugin.deviceplugin.watch import ANY, Backoff, DirWatcher
from tests.fakes.kubelet import FakeKubelet, PluginClient

NS = "example.com"
RES = f"{NS}/widget"
ENDPOINT = f"{NS}-widget.sock"


def dev(health: api.Health = api.Health.HEALTHY, numa: tuple[int, ...] = (), n: int = 0,
        **kw: object) -> api.DeviceInfo:
    nodes = (api.DeviceSpec(f"/dev/w{n}", f"/host/dev/w{n}"),)
    return api.DeviceInfo(health=health, numa_nodes=numa, nodes=nodes, **kw)  # type: ignore[arg-type]


def eventually(predicate, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (the server works in its own thread)."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return True
        pause.wait(0.02)
    return bool(predicate())


@pytest.fixture
def kdir() -> Iterator[Path]:
    """A short socket dir (unix socket paths are limited to 107 bytes; pytest's tmp_path can be long)."""
    path = Path(tempfile.mkdtemp(prefix="dp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def kubelet(kdir: Path) -> Iterator[FakeKubelet]:
    with FakeKubelet(kdir) as k:
        yield k


@pytest.fixture
def make_server(kdir: Path) -> Iterator:
    servers: list[DevicePluginServer] = []

    def make(devices: dict | None = None, **kw: object) -> DevicePluginServer:
        srv = DevicePluginServer(NS, "widget", kdir, backoff=(0.02, 0.2), **kw)  # type: ignore[arg-type]
        srv.update(devices if devices is not None else {"w0": dev(numa=(0,)), "w1": dev(n=1, numa=(1,))})
        srv.start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def test_registration_content(kubelet: FakeKubelet, make_server) -> None:
    make_server()
    reg = kubelet.wait_for_registration(RES)
    assert (reg.version, reg.endpoint, reg.resource_name) == ("v1beta1", ENDPOINT, RES)
    assert (reg.pre_start_required, reg.get_preferred_allocation_available) == (False, True)
    kubelet.wait_for(lambda: kubelet.options(RES) is not None)
    assert kubelet.options(RES).get_preferred_allocation_available is True


def test_initial_list_carries_health_and_topology(kubelet: FakeKubelet, make_server) -> None:
    make_server({"w0": dev(numa=(0,)), "w1": dev(api.Health.UNHEALTHY, numa=(0, 1), n=1), "w2": dev(n=2)})
    kubelet.wait_for(lambda: len(kubelet.devices(RES)) == 3)
    devices = kubelet.devices(RES)
    assert devices["w0"].health == "Healthy" and devices["w0"].numa_nodes == (0,)
    assert devices["w1"].health == "Unhealthy" and devices["w1"].numa_nodes == (0, 1)
    assert devices["w2"].numa_nodes == ()
    assert kubelet.allocatable(RES) == 2


BASE = {"w0": dev(numa=(0,)), "w1": dev(n=1)}


@pytest.mark.parametrize("new,sends", [
    ({"w0": dev(numa=(0,)), "w1": dev(n=1)}, False),
    ({"w0": dev(numa=(0,)), "w1": dev(n=1, envs={"X": "1"})}, False),
    ({"w0": dev(numa=(0,)), "w1": dev(n=1), "w2": dev(n=2)}, True),
    ({"w0": dev(numa=(0,))}, True),
    ({"w0": dev(numa=(0,)), "w1": dev(api.Health.UNHEALTHY, n=1)}, True),
    ({"w0": dev(numa=(1,)), "w1": dev(n=1)}, True),
], ids=["identical", "allocation-only-change", "device-added", "device-removed", "health-change",
        "numa-change"])
def test_list_and_watch_sends_only_visible_changes(kubelet: FakeKubelet, make_server, new, sends) -> None:
    srv = make_server(dict(BASE))
    kubelet.wait_for(lambda: kubelet.updates(RES) == 1)
    srv.update(new)
    if sends:
        kubelet.wait_for(lambda: kubelet.updates(RES) == 2, what="update for the change")
    else:
        threading.Event().wait(0.1)  # give a wrong update time to arrive before the marker
    # A marker change afterwards: the stream is FIFO, so the count tells whether `new` was sent.
    marker = dict(new, zz=dev(n=9))
    srv.update(marker)
    kubelet.wait_for(lambda: "zz" in kubelet.devices(RES))
    assert kubelet.updates(RES) == (3 if sends else 2)
    assert set(kubelet.devices(RES)) == set(marker)


@pytest.mark.parametrize("new,changed", [
    ({"w0": dev(numa=(0,)), "w1": dev(n=1)}, False),
    ({"w0": dev(numa=(0,)), "w1": dev(n=1, mounts=(api.Mount("/m", "/h/m"),))}, False),
    ({"w1": dev(n=1), "w0": dev(numa=(0,))}, False),
    ({"w0": dev(numa=(0,)), "w1": dev(api.Health.UNHEALTHY, n=1)}, True),
    ({}, True),
], ids=["identical", "allocation-only", "reordered", "health", "emptied"])
def test_device_state_versions_only_visible_changes(new, changed) -> None:
    state = DeviceState(api.ResourceType("widget"), 1)
    assert state.update(dict(BASE)) is True
    version, snapshot = state.wait_change(-1, lambda: True)
    assert [d[0] for d in snapshot] == ["w0", "w1"]
    assert state.update(new) is changed
    assert state.devices() == new
    assert (state.wait_change(-1, lambda: True)[0] != version) is changed


def test_device_state_orders_ids_naturally() -> None:
    state = DeviceState(api.ResourceType("widget"), 1)
    state.update({f"card{i}-0": dev() for i in (10, 2, 1)})
    assert [d[0] for d in state.wait_change(-1, lambda: True)[1]] == ["card1-0", "card2-0", "card10-0"]


def test_allocate_default_merge(kubelet: FakeKubelet, make_server) -> None:
    shared = api.Mount("/dev/dri/by-path", "/host/by-path", read_only=True)
    make_server({
        "a": api.DeviceInfo(nodes=(api.DeviceSpec("/dev/dri/card0", "/h/card0"),
                                   api.DeviceSpec("/dev/dri/renderD128", "/h/renderD128")),
                            mounts=(shared,), envs={"E": "a", "A": "1"}, annotations={"k": "a"},
                            cdi_devices=("intel.com/gpu=card0",)),
        "b": api.DeviceInfo(nodes=(api.DeviceSpec("/dev/dri/card0", "/h/card0"),),
                            mounts=(shared,), envs={"E": "b"}, annotations={"j": "b"},
                            cdi_devices=("intel.com/gpu=card0", "intel.com/gpu=card1")),
    })
    kubelet.wait_for_registration(RES)
    with kubelet.client(RES) as client:
        resp = client.allocate(["a", "b"], ["b"])
    first, second = resp.container_responses
    assert [(d.container_path, d.host_path, d.permissions) for d in first.devices] == [
        ("/dev/dri/card0", "/h/card0", "rw"), ("/dev/dri/renderD128", "/h/renderD128", "rw")]
    assert [(m.container_path, m.read_only) for m in first.mounts] == [("/dev/dri/by-path", True)]
    assert dict(first.envs) == {"E": "b", "A": "1"}
    assert dict(first.annotations) == {"k": "a", "j": "b"}
    assert [c.name for c in first.cdi_devices] == ["intel.com/gpu=card0", "intel.com/gpu=card1"]
    assert [d.host_path for d in second.devices] == ["/h/card0"]


@pytest.mark.parametrize("ids,needle", [
    (["w0", "ghost"], "ghost"),
    (["bad"], "unhealthy"),
    ([], "without device IDs"),
], ids=["unknown-id", "unhealthy-id", "empty-request"])
def test_allocate_refusals_keep_server_serving(kubelet: FakeKubelet, make_server, ids, needle) -> None:
    make_server({"w0": dev(), "bad": dev(api.Health.UNHEALTHY, n=1)})
    kubelet.wait_for_registration(RES)
    with kubelet.client(RES) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.allocate(ids)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in err.value.details()
        ok = client.allocate(["w0"]).container_responses[0]
        assert [d.host_path for d in ok.devices] == ["/host/dev/w0"]


class RecordingAllocator:
    def __init__(self, result: api.ContainerAllocation | None) -> None:
        self.result = result
        self.calls: list[tuple[str, list[str], set[str]]] = []

    def allocate(self, resource, device_ids, tree):
        self.calls.append((resource, list(device_ids), set(tree)))
        return self.result


@pytest.mark.parametrize("result,expected_paths", [
    (api.ContainerAllocation(devices=(api.DeviceSpec("/dev/custom", "/h/custom", "r"),), envs={"P": "1"}),
     ["/h/custom"]),
    (None, ["/host/dev/w0"]),
], ids=["allocator-result", "allocator-falls-back"])
def test_allocate_uses_allocator(kubelet: FakeKubelet, make_server, result, expected_paths) -> None:
    allocator = RecordingAllocator(result)
    make_server(allocator=allocator)
    kubelet.wait_for_registration(RES)
    with kubelet.client(RES) as client:
        resp = client.allocate(["w0"])
    assert [d.host_path for d in resp.container_responses[0].devices] == expected_paths
    assert allocator.calls == [("widget", ["w0"], {"w0", "w1"})]


class Policy:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple] = []

    def preferred_allocation(self, resource, available, must_include, size):
        self.calls.append((resource, list(available), list(must_include), size))
        if self.error:
            raise self.error
        return list(reversed(available))[:size]


def test_preferred_allocation_via_policy(kubelet: FakeKubelet, make_server) -> None:
    policy = Policy()
    make_server(preferred_allocator=policy)
    kubelet.wait_for_registration(RES)
    with kubelet.client(RES) as client:
        assert client.preferred(["w0", "w1"], ["w0"], 1) == ["w1"]
    assert policy.calls == [("widget", ["w0", "w1"], ["w0"], 1)]


@pytest.mark.parametrize("error", [api.AllocationError("only 2 available"),
                                   api.UnknownDeviceError("widget", "w7")],
                         ids=["allocation-error", "unknown-device-error"])
def test_preferred_allocation_errors_map_to_invalid_argument(kubelet, make_server, error) -> None:
    make_server(preferred_allocator=Policy(error))
    kubelet.wait_for_registration(RES)
    with kubelet.client(RES) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.preferred(["w0", "w1"], [], 2)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(error) in err.value.details()
        assert client.options().get_preferred_allocation_available  # still serving


@pytest.mark.parametrize("available,must,size,expected", [
    (["w1", "w0"], [], 1, ["w1"]),
    (["w0", "w1"], ["w1"], 1, ["w1"]),
    (["w0", "w1"], [], 3, None),
    (["w0", "nope"], [], 1, None),
], ids=["first-available", "must-include-first", "too-many", "unknown-id"])
def test_preferred_allocation_default(kubelet, make_server, available, must, size, expected) -> None:
    make_server()
    kubelet.wait_for_registration(RES)
    with kubelet.client(RES) as client:
        if expected is None:
            with pytest.raises(grpc.RpcError) as err:
                client.preferred(available, must, size)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        else:
            assert client.preferred(available, must, size) == expected


def test_prestart_container_is_refused(kubelet: FakeKubelet, make_server) -> None:
    make_server()
    kubelet.wait_for_registration(RES)
    with kubelet.client(RES) as client, pytest.raises(grpc.RpcError) as err:
        client.pre_start(["w0"])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "should not be called" in err.value.details()


def test_socket_mode_is_0600(kubelet: FakeKubelet, make_server, kdir: Path) -> None:
    make_server()
    kubelet.wait_for_registration(RES)
    mode = os.stat(kdir / ENDPOINT).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_stale_socket_is_removed(kubelet: FakeKubelet, make_server, kdir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(kdir / ENDPOINT))  # bound, never listening, closed: what a killed plugin leaves
    stale.close()
    make_server()
    kubelet.wait_for_registration(RES)
    kubelet.wait_for(lambda: kubelet.allocatable(RES) == 2)


def test_live_socket_is_refused_then_taken_over(kubelet: FakeKubelet, make_server, kdir: Path) -> None:
    other = grpc.server(ThreadPoolExecutor(2))
    pb_grpc.add_DevicePluginServicer_to_server(pb_grpc.DevicePluginServicer(), other)
    other.add_insecure_port(f"unix:{kdir / ENDPOINT}")
    other.start()
    try:
        srv = make_server()
        eventually(lambda: isinstance(srv.last_error, api.SocketInUseError))
        assert isinstance(srv.last_error, api.SocketInUseError), srv.last_error
        assert "already in use" in str(srv.last_error)
        assert kubelet.registered(RES) == []
        with PluginClient(kdir / ENDPOINT) as client, pytest.raises(grpc.RpcError) as err:
            client.options()  # the other server still owns the socket
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        other.stop(0).wait()
    kubelet.wait_for_registration(RES, timeout=5)
    assert srv.wait_registered(5) and srv.last_error is None


def test_registers_once_kubelet_appears(kdir: Path, make_server) -> None:
    srv = make_server()
    assert eventually(lambda: isinstance(srv.last_error, api.RegistrationError))
    with FakeKubelet(kdir) as kubelet:
        kubelet.wait_for_registration(RES, timeout=3)
        kubelet.wait_for(lambda: kubelet.allocatable(RES) == 2)
        assert srv.wait_registered(5)  # kubelet has the request; wait until the plugin has the reply
    assert srv.registrations == 1
    assert eventually(lambda: not srv.wait_registered(0))  # kubelet.sock is gone again


@pytest.mark.parametrize("use_inotify", [True, False], ids=["inotify", "polling"])
def test_reregisters_after_kubelet_restart(kubelet: FakeKubelet, make_server, use_inotify) -> None:
    srv = make_server(use_inotify=use_inotify, poll_interval=0.05)
    kubelet.wait_for(lambda: kubelet.allocatable(RES) == 2)
    for round_ in range(1, 3):
        kubelet.restart()
        assert kubelet.generation == round_
        kubelet.wait_for_registration(RES, timeout=5)
        kubelet.wait_for(lambda: kubelet.allocatable(RES) == 2, what="devices after restart")
        # The next restart must find this registration complete on the plugin's side too.
        assert eventually(lambda n=round_ + 1: srv.registrations == n), srv.registrations
    assert srv.registrations == 3
    assert len(kubelet.registrations) == 3


@pytest.mark.parametrize("use_inotify", [True, False], ids=["inotify", "polling"])
def test_own_socket_removed_while_registering_is_served_again_at_once(kdir: Path, make_server,
                                                                      use_inotify) -> None:
    """A kubelet restart that wipes the plugin's socket between the plugin's last look and its
    Register: kubelet's Register dials that socket (10 s, retrying). The plugin cancels the call
    and serves again, so kubelet's dial finds the socket; it used to wait out its own 5 s
    Register timeout first while kubelet's dial failed (seen once in CI)."""
    wiped: list[int] = []

    def wipe_plugin_socket(resource: str) -> None:
        if not wiped:
            wiped.append(1)
            (kdir / ENDPOINT).unlink()

    with FakeKubelet(kdir, before_dial=wipe_plugin_socket) as kubelet:
        srv = make_server(use_inotify=use_inotify, poll_interval=0.05, register_timeout=30.0)
        kubelet.wait_for_registration(RES, timeout=10)
        kubelet.wait_for(lambda: kubelet.allocatable(RES) == 2)
        assert wiped and kubelet.rejected == []  # kubelet's dial did not fail
        assert srv.wait_registered(10) and srv.last_error is None


def test_reregisters_when_only_kubelet_sock_is_recreated(kdir: Path, make_server) -> None:
    srv = make_server()
    with FakeKubelet(kdir) as first:
        first.wait_for_registration(RES)
        # The fake kubelet records the request before the reply reaches the plugin: stopping it
        # now could cancel the call (UNAVAILABLE), a failed registration that is retried.
        assert eventually(lambda: srv.registrations == 1), srv.last_error
    assert (kdir / ENDPOINT).exists()  # no wipe this time: only kubelet.sock comes and goes
    with FakeKubelet(kdir) as second:
        second.wait_for_registration(RES, timeout=5)
        second.wait_for(lambda: second.allocatable(RES) == 2)
        assert eventually(lambda: srv.registrations == 2), srv.last_error
    assert srv.registrations == 2


def test_missing_kubelet_dir_is_retried_not_fatal(kdir: Path) -> None:
    missing = kdir / "later"
    srv = DevicePluginServer(NS, "widget", missing, backoff=(0.02, 0.1), poll_interval=0.02)
    srv.update({"w0": dev()})
    srv.start()
    try:
        assert eventually(lambda: "cannot listen" in str(srv.last_error)), srv.last_error
        missing.mkdir()
        with FakeKubelet(missing) as kubelet:
            kubelet.wait_for(lambda: kubelet.allocatable(RES) == 1, timeout=5)
    finally:
        srv.stop()


def test_too_long_socket_path_is_a_clear_error(kdir: Path) -> None:
    deep = kdir / ("d" * 100)
    deep.mkdir()
    srv = DevicePluginServer(NS, "widget", deep, backoff=(0.02, 0.1))
    srv.start()
    try:
        assert eventually(lambda: "longer than 107 bytes" in str(srv.last_error)), srv.last_error
    finally:
        srv.stop()


def test_stop_removes_socket_and_ends_stream(kubelet: FakeKubelet, kdir: Path) -> None:
    srv = DevicePluginServer(NS, "widget", kdir)
    srv.update({"w0": dev()})
    srv.start()
    kubelet.wait_for(lambda: kubelet.allocatable(RES) == 1)
    srv.stop()
    assert not (kdir / ENDPOINT).exists()
    kubelet.wait_for(lambda: not kubelet.connected(RES), what="stream end")
    assert kubelet.allocatable(RES) == 0


def test_streams_do_not_starve_unary_calls(kubelet: FakeKubelet, make_server, kdir: Path) -> None:
    make_server(max_streams=3, unary_workers=2)
    kubelet.wait_for(lambda: kubelet.connected(RES) and kubelet.updates(RES) == 1)
    with PluginClient(kdir / ENDPOINT) as client:
        calls = [client.list_and_watch() for _ in range(2)]  # kubelet's stream + 2 = the limit
        try:
            for call in calls:
                assert len(next(call).devices) == 2
            extra = client.list_and_watch()
            with pytest.raises(grpc.RpcError) as err:
                next(extra)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            for _ in range(5):
                assert client.allocate(["w0"]).container_responses
        finally:
            for call in calls:
                call.cancel()


def test_dir_watcher_reports_changes(kdir: Path) -> None:
    for use_inotify in (True, False):
        watcher = DirWatcher(kdir, poll_interval=0.02, use_inotify=use_inotify)
        try:
            assert watcher.uses_inotify is use_inotify
            (kdir / "kubelet.sock").touch()
            assert "kubelet.sock" in watcher.wait(2) | _drain(watcher)
            (kdir / "kubelet.sock").unlink()
            assert "kubelet.sock" in watcher.wait(2) | _drain(watcher)
            watcher.wake()
            assert watcher.wait(2) == set()
        finally:
            watcher.close()


def _drain(watcher: DirWatcher) -> set[str]:
    names = set()
    while changed := watcher.wait(0.05):
        names |= changed
    return names - {ANY}


def test_backoff_doubles_and_caps() -> None:
    backoff = Backoff(0.1, 0.5)
    assert [backoff.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.next() == 0.1


def test_repeated_allocate_follows_device_updates(kubelet: FakeKubelet, make_server) -> None:
    """Allocate answers are reused only while the device map is unchanged: after update() the
    same IDs get the new nodes (also when the new map is equal but freshly built)."""
    server = make_server({"a": api.DeviceInfo(nodes=(api.DeviceSpec("/dev/dri/card0", "/old/card0"),))})
    kubelet.wait_for_registration(RES)
    with kubelet.client(RES) as client:
        for _ in range(3):
            (resp,) = client.allocate(["a"]).container_responses
            assert [d.host_path for d in resp.devices] == ["/old/card0"]
        server.update({"a": api.DeviceInfo(nodes=(api.DeviceSpec("/dev/dri/card0", "/new/card0"),))})
        for _ in range(2):
            (resp,) = client.allocate(["a"]).container_responses
            assert [d.host_path for d in resp.devices] == ["/new/card0"]
        (resp,) = client.allocate(["a", "a"]).container_responses
        assert [d.host_path for d in resp.devices] == ["/new/card0"]


def test_allocation_log_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    """Each Allocate is one log line: INFO for a burst, then DEBUG; the next INFO line counts them."""
    now = [100.0]
    log = AllocationLog("gpu.intel.com/i915", burst=3, rate=1.0, clock=lambda: now[0])
    with caplog.at_level("DEBUG", logger="gpu_plugin.deviceplugin.server"):
        for n in range(5):
            log.allocated([f"card{n}-0"])
        now[0] += 1.0  # one token back
        log.allocated(["card9-0", "card9-1"])
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("INFO", "gpu.intel.com/i915: allocated card0-0"),
        ("INFO", "gpu.intel.com/i915: allocated card1-0"),
        ("INFO", "gpu.intel.com/i915: allocated card2-0"),
        ("DEBUG", "gpu.intel.com/i915: allocated card3-0"),
        ("DEBUG", "gpu.intel.com/i915: allocated card4-0"),
        ("INFO", "gpu.intel.com/i915: allocated card9-0,card9-1 "
                 "(2 earlier Allocate calls logged at DEBUG only: rate limit)"),
    ]
