"""A ListAndWatch stream that dies is noticed: the server registers again, kubelet reconnects.

Real gRPC on unix sockets against the emulated kubelet (tests/fakes/kubelet.py), which — like
kubelet's device manager — marks a resource's devices Unhealthy when its stream ends and opens a
new one only when the plugin registers again.  Issue 11, item 7: a device list that can't be
encoded killed the stream for good; now a bad NUMA node is left out and any other dead stream is
followed by a new registration.  Threads and file descriptors are counted across the abuse.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpu_plugin.deviceplugin import api
from gpu_plugin.deviceplugin.server import DevicePluginServer
from tests.fakes.kubelet import FakeKubelet

NS = "example.com"
RES = f"{NS}/widget"


def dev(n: int, numa: tuple[int, ...] = (0,)) -> api.DeviceInfo:
    return api.DeviceInfo(nodes=(api.DeviceSpec(f"/dev/w{n}", f"/host/dev/w{n}"),), numa_nodes=numa)


GOOD = {api.DeviceID(f"w{i}"): dev(i) for i in range(4)}


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def kdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def served(kdir: Path) -> Iterator[tuple[FakeKubelet, DevicePluginServer]]:
    with FakeKubelet(kdir) as kubelet:
        server = DevicePluginServer(NS, "widget", kdir, backoff=(0.02, 0.2), stream_grace=(0.1, 0.4))
        server.update(GOOD)
        server.start()
        try:
            kubelet.wait_for(lambda: kubelet.allocatable(RES) == 4, 10, "4 healthy devices")
            yield kubelet, server
        finally:
            server.stop()


def _healthy_again(kubelet: FakeKubelet, registrations: int) -> None:
    kubelet.wait_for(lambda: len(kubelet.registered(RES)) > registrations and kubelet.connected(RES)
                     and kubelet.allocatable(RES) == 4, 10, "registered again, 4 healthy devices")


def _drop(kubelet: FakeKubelet, server: DevicePluginServer) -> None:
    kubelet.drop_stream(RES)


def _unencodable(kubelet: FakeKubelet, server: DevicePluginServer) -> None:
    server.update({**GOOD, api.DeviceID("w\udc80"): dev(9)})  # not UTF-8: the response can't be built
    kubelet.wait_for(lambda: not kubelet.connected(RES), 10, "stream ended")
    server.update(GOOD)


@pytest.mark.parametrize("kill", [_drop, _unencodable], ids=["kubelet drops the stream",
                                                               "device list cannot be encoded"])
def test_dead_list_and_watch_stream_is_registered_again(
        served: tuple[FakeKubelet, DevicePluginServer],
        kill: Callable[[FakeKubelet, DevicePluginServer], None], caplog: pytest.LogCaptureFixture) -> None:
    kubelet, server = served
    before = len(kubelet.registered(RES))
    with caplog.at_level(logging.WARNING):
        kill(kubelet, server)
        _healthy_again(kubelet, before)
    assert "no new one came; registering again" in caplog.text


def test_stream_lost_before_the_register_reply_is_registered_again(kdir: Path) -> None:
    """kubelet opens the stream while the plugin still waits for the Register reply; a stream lost
    in that window is lost all the same (it was once taken for "registered again since")."""
    dropped = threading.Event()

    def drop_first_stream(resource: str) -> None:
        if not dropped.is_set():
            kubelet.wait_for(lambda: kubelet.allocatable(resource) == 4, 10, "first stream")
            kubelet.drop_stream(resource)
            dropped.set()

    with FakeKubelet(kdir, before_reply=drop_first_stream) as kubelet:
        server = DevicePluginServer(NS, "widget", kdir, backoff=(0.02, 0.2), stream_grace=(0.1, 0.4))
        server.update(GOOD)
        server.start()
        try:
            _healthy_again(kubelet, 1)
            assert dropped.is_set()
            kubelet.wait_for(lambda: server.registrations == 2, 5, "the plugin has the second reply")
        finally:
            server.stop()


def test_streams_dying_over_and_over_leave_threads_and_fds_bounded(
        served: tuple[FakeKubelet, DevicePluginServer]) -> None:
    kubelet, server = served
    kubelet.drop_stream(RES)  # warm up: first re-registration creates the channels it reuses
    _healthy_again(kubelet, 1)
    threads, fds = threading.active_count(), _fds()
    for _ in range(15):
        before = len(kubelet.registered(RES))
        kubelet.drop_stream(RES)
        _healthy_again(kubelet, before)
    assert len(kubelet.registered(RES)) == 17
    assert threading.active_count() <= threads + 2 and _fds() <= fds + 4, (threading.active_count(), _fds())


@pytest.mark.parametrize("numa", [(2**63,), (-5,), (2**64 + 7, 1)], ids=["past int64", "negative",
                                                                       "one of two bad"])
def test_bad_numa_node_is_left_out_and_the_stream_lives(
        served: tuple[FakeKubelet, DevicePluginServer], numa: tuple[int, ...],
        caplog: pytest.LogCaptureFixture) -> None:
    kubelet, server = served
    updates = kubelet.updates(RES)
    with caplog.at_level(logging.WARNING):
        server.update({**GOOD, api.DeviceID("w2"): dev(2, numa)})
        kubelet.wait_for(lambda: kubelet.updates(RES) > updates, 10, "the update")
    devices = kubelet.devices(RES)
    assert devices["w2"].numa_nodes == tuple(n for n in numa if 0 <= n < 2**63)
    assert [devices[f"w{i}"].numa_nodes for i in (0, 1, 3)] == [(0,), (0,), (0,)]
    assert kubelet.connected(RES) and kubelet.allocatable(RES) == 4 and len(kubelet.registered(RES)) == 1
    assert "left out of their topology" in caplog.text


def test_device_list_over_kubelets_limit_is_named_then_recovered(
        served: tuple[FakeKubelet, DevicePluginServer], caplog: pytest.LogCaptureFixture) -> None:
    """kubelet (here: grpcio's same 4 MiB default) can't read a ListAndWatch response over 4 MiB and
    drops the stream; the plugin says why, and registers again once the list fits."""
    kubelet, server = served
    info = dev(0)
    with caplog.at_level(logging.WARNING):
        server.update({api.DeviceID(f"card{i // 1000}-{i % 1000}"): info for i in range(160_000)})  # ~4.4 MB
        kubelet.wait_for(lambda: not kubelet.connected(RES), 20, "kubelet dropped the oversized list")
        server.update(GOOD)
        _healthy_again(kubelet, 1)
    assert "over kubelet's 4194304-byte limit" in caplog.text
