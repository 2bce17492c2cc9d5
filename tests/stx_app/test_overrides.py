"""System overrides over host lists: no GPU host, an i915 host, an xe host, an all-in-one
controller, a standard system with controllers that run no workloads."""

from __future__ import annotations

from typing import Any

import pytest
from k8sapp_intel_gpu_plugin.hosts import Host, gpu_drivers, names, subfunctions
from k8sapp_intel_gpu_plugin.overrides import system_overrides

LABEL = {"intelgpu": "enabled"}
SELECTOR = {"intelgpu": "enabled", "kubernetes.io/arch": "amd64"}
AIO_TOLERATIONS = [
    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"},
]
CONTROLLER = Host("controller-0", "controller", frozenset({"controller"}))
AIO = Host("controller-0", "controller", frozenset({"controller", "worker"}), LABEL, frozenset({"i915"}))

CASES: dict[str, tuple[list[Host], dict[str, Any]]] = {
    "no GPU host": ([CONTROLLER, Host("worker-0", subfunctions=frozenset({"worker"}))], {}),
    "an i915 host": ([CONTROLLER, Host("worker-0", labels=LABEL, gpu_drivers=frozenset({"i915"}))], {}),
    "an xe host": ([CONTROLLER, Host("worker-1", labels=LABEL, gpu_drivers=frozenset({"xe"}))], {}),
    "all-in-one controller": ([AIO], {"tolerations": AIO_TOLERATIONS}),
    "duplex, GPU on the standby": (
        [AIO, Host("controller-1", "controller", frozenset({"controller", "worker"}))],
        {"tolerations": AIO_TOLERATIONS},
    ),
    "no hosts yet": ([], {}),
}


@pytest.mark.parametrize(("hosts", "extra"), list(CASES.values()), ids=list(CASES))
def test_system_overrides(hosts: list[Host], extra: dict[str, Any]) -> None:
    assert (
        system_overrides(hosts)
        == {
            "image": {"hub": "registry.local:9001/intel"},
            "imagePullSecrets": [{"name": "default-registry-key"}],
            "nodeSelector": SELECTOR,
        }
        | extra
    )


def test_registry_comes_from_sysinv() -> None:
    assert system_overrides([], registry="registry.example:5000/")["image"] == {
        "hub": "registry.example:5000/intel"
    }


@pytest.mark.parametrize(
    ("rows", "drivers"),
    [
        ([("8086", "030000", "i915")], {"i915"}),
        ([("8086", "038000", "xe")], {"xe"}),
        ([("0x8086", "0x0300", "i915,snd_hda_intel")], {"i915"}),
        ([("10de", "030000", "nvidia")], set()),
        ([("8086", "020000", "ice")], set()),  # an Intel NIC
        ([("8086", "030000", None)], set()),  # no driver bound
        ([("8086", "030000", "vfio-pci")], set()),  # passed through to a VM
        ([(None, None, None)], set()),
    ],
    ids=[
        "i915",
        "xe",
        "0x-prefixed, two modules",
        "other vendor",
        "intel nic",
        "unbound",
        "vfio",
        "empty row",
    ],
)
def test_gpu_drivers_from_sysinv_pci_inventory(rows: list[tuple[str | None, ...]], drivers: set[str]) -> None:
    assert gpu_drivers(rows) == drivers  # type: ignore[arg-type]


def test_subfunctions_and_bounded_names() -> None:
    assert subfunctions("controller, worker,lowlatency") == {"controller", "worker", "lowlatency"}
    assert subfunctions(None) == frozenset()
    hosts = [Host(f"worker-{i:02d}") for i in range(8)]
    assert names(hosts) == "worker-00, worker-01, worker-02, worker-03, worker-04 and 3 more"
    assert names([Host("x" * 500)]) == "x" * 64
