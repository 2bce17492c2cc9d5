"""Upstream's TestScanWsl (cmd/gpu_plugin/gpu_plugin_test.go), ported: ``-wsl`` devices from Level-Zero.

Upstream injects a mock Level-Zero service returning the indices; here a real gRPC ``Levelzero``
server on a unix socket returns them and the plugin's WslScanner asks it as in production.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from gpu_plugin.deviceplugin.api import DeviceTree
from gpu_plugin.levelzero._api import levelzero_pb2 as lzpb
from gpu_plugin.levelzero._api import levelzero_pb2_grpc as lzpb_grpc
from gpu_plugin.plugin import WslScanner


class Indices(lzpb_grpc.LevelzeroServicer):
    """upstream's mockL0Service: GetIntelIndices answers ``indices``."""

    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = list(indices)

    def GetIntelIndices(self, request: Any, context: Any) -> lzpb.DeviceIndices:
        return lzpb.DeviceIndices(indices=self.indices)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short path: unix socket names are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="gpuwsl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _scan_once(socket: str, indices: Sequence[int]) -> DeviceTree:
    server = grpc.server(ThreadPoolExecutor(2))
    lzpb_grpc.add_LevelzeroServicer_to_server(Indices(indices), server)
    server.add_insecure_port(f"unix:{socket}")
    server.start()
    trees: list[DeviceTree] = []
    stop = threading.Event()

    class Recorder:
        def notify(self, tree: DeviceTree) -> None:
            trees.append(tree)
            stop.set()

    try:
        # upstream's test: sharedDevNum 0 -> 1
        WslScanner(socket, "/dev", shared_dev_num=1, scan_interval=0.1).scan(Recorder(), stop)
    finally:
        server.stop(None).wait()
    (tree,) = trees
    return tree


@pytest.mark.parametrize("indices,expected_dxg", [([0], 1), ([0, 1, 2, 3], 4)],
                         ids=["one wsl device", "four wsl device"])
def test_upstream_scan_wsl(short_dir: Path, indices: list[int], expected_dxg: int) -> None:
    tree = _scan_once(f"{short_dir}/lz.sock", indices)
    assert list(tree) == ["dxg"]  # no i915/xe/monitoring resources in WSL mode
    assert len(tree["dxg"]) == expected_dxg
    assert sorted(tree["dxg"]) == [f"card{i}-0" for i in indices]
    assert [dict(info.envs)["ZE_AFFINITY_MASK"] for _, info in sorted(tree["dxg"].items())] == \
        [str(i) for i in indices]
