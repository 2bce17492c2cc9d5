"""Shared fixtures of the GPU plugin tests.

``fake_sysfs``: a kernel-layout tree from :class:`tests.fakes.sysfs.FakeSysfs`.
``upstream_tree``: lays out a test case the way upstream's ``createTestFiles``
(cmd/gpu_plugin/gpu_plugin_test.go) does, so upstream's cases run unchanged:
plain directories for ``class/drm/cardN`` and for /dev nodes, no class file.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes.sysfs import FakeSysfs


@dataclass(frozen=True)
class UpstreamCase:
    """One case of upstream's TestCaseDetails (paths relative to sys/class/drm and dev/dri)."""

    sysfsdirs: Sequence[str] = ()
    sysfsfiles: Mapping[str, str] = field(default_factory=dict)
    symlinkfiles: Mapping[str, str] = field(default_factory=dict)
    devfsdirs: Sequence[str] = ()
    pci_addresses: Mapping[str, str] = field(default_factory=dict)


def create_upstream_files(root: Path, case: UpstreamCase) -> tuple[str, str]:
    """Port of upstream's createTestFiles; returns (sysfs root, devfs root)."""
    sysfs = root / "sys" / "class" / "drm"
    devfs = root / "dev" / "dri"
    for d in case.devfsdirs:
        (devfs / d).mkdir(parents=True, exist_ok=True)
    sysfs.mkdir(parents=True, exist_ok=True)
    for pci, card in case.pci_addresses.items():
        full_pci = sysfs / ".devices" / pci
        full_pci.mkdir(parents=True, exist_ok=True)
        (sysfs / card).mkdir(parents=True, exist_ok=True)
        os.symlink(full_pci, sysfs / card / "device")
    for d in case.sysfsdirs:
        (sysfs / d).mkdir(parents=True, exist_ok=True)
    for name, body in case.sysfsfiles.items():
        (sysfs / name).write_text(body)
    for source, target in case.symlinkfiles.items():
        (sysfs / target).mkdir(parents=True, exist_ok=True)
        os.symlink(sysfs / target, sysfs / source)
    return str(root / "sys"), str(root / "dev")


@pytest.fixture
def fake_sysfs(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path / "host")


@pytest.fixture
def upstream_tree(tmp_path: Path) -> Callable[[UpstreamCase], tuple[str, str]]:
    return lambda case: create_upstream_files(tmp_path / "upstream", case)
