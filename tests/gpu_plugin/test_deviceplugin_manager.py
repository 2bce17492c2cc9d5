"""Manager: tree diffs, server life cycle via the server_factory seam, scanner failures, and one
end-to-end run with real servers against the emulated kubelet (tests/fakes/kubelet.py). No GPU code."""
from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpu_plugin.deviceplugin import api
from gpu_plugin.deviceplugin.manager import Manager, TreeDiff, diff_trees
from tests.fakes.kubelet import FakeKubelet

H = api.DeviceInfo()
U = api.DeviceInfo(health=api.Health.UNHEALTHY)


@pytest.mark.parametrize("old,new,expected", [
    ({}, {"a": {"a0": H}}, TreeDiff(added={"a": {"a0": H}})),
    ({}, {"a": {}}, TreeDiff()),
    ({"a": {"a0": H}}, {"a": {"a0": H}}, TreeDiff()),
    ({"a": {"a0": H}}, {"a": {"a0": U}}, TreeDiff(updated={"a": {"a0": U}})),
    ({"a": {"a0": H}}, {"a": {"a0": H, "a1": H}}, TreeDiff(updated={"a": {"a0": H, "a1": H}})),
    ({"a": {"a0": H}}, {}, TreeDiff(removed=frozenset({"a"}))),
    ({"a": {"a0": H}}, {"a": {}}, TreeDiff(removed=frozenset({"a"}))),
    ({"a": {"a0": H}, "b": {"b0": H}}, {"b": {"b0": U}, "c": {"c0": H}},
     TreeDiff(added={"c": {"c0": H}}, updated={"b": {"b0": U}}, removed=frozenset({"a"}))),
], ids=["added", "empty-type-ignored", "unchanged", "health-updated", "device-added", "type-removed",
        "type-emptied", "mixed"])
def test_diff_trees(old, new, expected) -> None:
    assert diff_trees(old, new) == expected


class StubServer:
    """Records what the manager does with a server."""

    def __init__(self, log: list, rtype: str, fail_start: bool, kwargs: dict) -> None:
        self.log, self.rtype, self.fail_start, self.kwargs = log, rtype, fail_start, kwargs

    def update(self, devices) -> None:
        self.log.append(("update", self.rtype, sorted(devices)))

    def start(self) -> None:
        if self.fail_start:
            raise OSError("cannot bind")
        self.log.append(("start", self.rtype))

    def stop(self) -> None:
        self.log.append(("stop", self.rtype))


class StubFactory:
    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.log: list = []
        self.fail = set(fail)
        self.created: list[tuple] = []

    def __call__(self, namespace, rtype, kubelet_dir, **kwargs) -> StubServer:
        self.created.append((namespace, rtype, str(kubelet_dir)))
        return StubServer(self.log, rtype, rtype in self.fail, kwargs)


def manager(factory: StubFactory, **kw) -> Manager:
    return Manager("example.com", scanner=None, kubelet_dir="/kdir", server_factory=factory, **kw)  # type: ignore[arg-type]


def test_manager_starts_updates_and_stops_servers() -> None:
    factory = StubFactory()
    policy, allocator = object(), object()
    mgr = manager(factory, kubelet_socket="/k.sock", preferred_allocator=policy, allocator=allocator)
    mgr.notify({"a": {"a0": H}, "b": {}})
    assert factory.log == [("update", "a", ["a0"]), ("start", "a")]
    assert factory.created == [("example.com", "a", "/kdir")]
    assert mgr.servers["a"].kwargs == {"kubelet_socket": "/k.sock", "preferred_allocator": policy,
                                       "allocator": allocator}
    factory.log.clear()
    mgr.notify({"a": {"a0": H}, "b": {}})
    assert factory.log == []
    mgr.notify({"a": {"a0": U}, "b": {"b0": H}})
    assert factory.log == [("update", "b", ["b0"]), ("start", "b"), ("update", "a", ["a0"])]
    factory.log.clear()
    mgr.notify({"b": {"b0": H}})
    assert factory.log == [("stop", "a")]
    assert set(mgr.servers) == {"b"}
    factory.log.clear()
    mgr.close()
    mgr.notify({"a": {"a0": H}})
    assert factory.log == [("stop", "b")] and mgr.servers == {}


def test_failed_server_start_is_retried_with_next_snapshot() -> None:
    factory = StubFactory(fail={"a"})
    mgr = manager(factory)
    mgr.notify({"a": {"a0": H}})
    assert mgr.servers == {}
    factory.fail.clear()
    mgr.notify({"a": {"a0": H}})
    assert set(mgr.servers) == {"a"} and ("start", "a") in factory.log


class ListScanner:
    """Sends the given trees one by one, then waits for stop (or raises ``error``)."""

    def __init__(self, trees: list[api.DeviceTree], error: Exception | None = None) -> None:
        self.trees = trees
        self.error = error
        self.step = threading.Semaphore(0)

    def scan(self, notifier: api.Notifier, stop: threading.Event) -> None:
        for tree in self.trees:
            notifier.notify(tree)
            while not self.step.acquire(timeout=0.02):  # the test releases the next snapshot
                if stop.is_set():
                    return
        if self.error:
            raise self.error
        stop.wait()


def test_scanner_failure_is_raised_in_run_and_servers_stop() -> None:
    factory = StubFactory()
    scanner = ListScanner([{"a": {"a0": H}}], error=RuntimeError("sysfs vanished"))
    mgr = Manager("example.com", scanner, "/kdir", server_factory=factory)
    scanner.step.release()
    stop = threading.Event()
    with pytest.raises(api.ScannerError, match="sysfs vanished"):
        mgr.run(stop)
    assert factory.log == [("update", "a", ["a0"]), ("start", "a"), ("stop", "a")]
    assert not stop.is_set()


@pytest.fixture
def kdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dpm-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_manager_end_to_end_with_fake_kubelet(kdir: Path) -> None:
    trees = [
        {"w": {"w0": H, "w1": H}},
        {"w": {"w0": H, "w1": U}, "v": {"v0": H}},
        {"v": {"v0": H}},
    ]
    scanner = ListScanner(trees)
    stop = threading.Event()
    with FakeKubelet(kdir) as kubelet:
        mgr = Manager("example.com", scanner, kdir)
        runner = threading.Thread(target=mgr.run, args=(stop,))
        runner.start()
        try:
            kubelet.wait_for(lambda: kubelet.allocatable("example.com/w") == 2, what="w advertised")
            scanner.step.release()
            kubelet.wait_for(lambda: kubelet.allocatable("example.com/w") == 1
                             and kubelet.allocatable("example.com/v") == 1, what="second snapshot")
            scanner.step.release()
            kubelet.wait_for(lambda: not kubelet.connected("example.com/w")
                             and not (kdir / "example.com-w.sock").exists(), what="w server stopped")
            assert (kdir / "example.com-v.sock").exists()
            assert kubelet.allocatable("example.com/w") == 0
        finally:
            stop.set()
            runner.join(10)
        assert not runner.is_alive()
        assert sorted(p.name for p in kdir.glob("*.sock")) == ["kubelet.sock"]
        assert [r.resource_name for r in kubelet.registrations] == ["example.com/w", "example.com/v"]
