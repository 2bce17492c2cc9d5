"""The pre-apply check over host lists, the conductor's Lease and intel-device-plugins-operator."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from k8sapp_intel_gpu_plugin.checks import Lease, apply_check, conductor_down
from k8sapp_intel_gpu_plugin.hosts import Host
from k8sapp_intel_gpu_plugin.releases import releases_to_remove

NOW = datetime(2026, 12, 6, 22, 0, tzinfo=timezone.utc)
LIVE = Lease("controller-0", NOW - timedelta(seconds=3), 15)
STALE = Lease("controller-0", NOW - timedelta(seconds=600), 15)
LABEL = {"intelgpu": "enabled"}
I915 = Host("worker-0", labels=LABEL, gpu_drivers=frozenset({"i915"}))
XE = Host("worker-1", labels=LABEL, gpu_drivers=frozenset({"xe"}))
AIO = Host("controller-0", "controller", frozenset({"controller", "worker"}), LABEL, frozenset({"i915"}))
NO_GPU = Host("worker-2")
UNLABELLED_XE = Host("worker-3", gpu_drivers=frozenset({"xe"}))


@pytest.mark.parametrize(
    ("hosts", "lease", "allowed", "phrases"),
    [
        (
            [NO_GPU],
            LIVE,
            False,
            ["refused: no host has reported an Intel GPU (no node labelled intelgpu=enabled)"],
        ),
        (
            [NO_GPU],
            None,
            False,
            [
                "no host has reported",
                "sysinv-gpu-conductor is not running",
                "no Lease kube-system/sysinv-gpu-conductor",
            ],
        ),
        ([NO_GPU], STALE, False, ["sysinv-gpu-conductor is not running", "not renewed for 600 s"]),
        ([UNLABELLED_XE], LIVE, False, ["Intel GPUs on worker-3: is sysinv-gpu-agent running there?"]),
        ([I915, NO_GPU], LIVE, True, ["1 host(s) reported an Intel GPU: worker-0"]),
        ([XE], LIVE, True, ["1 host(s) reported an Intel GPU: worker-1"]),
        ([AIO], LIVE, True, ["controller-0"]),
        ([I915, XE, AIO], LIVE, True, ["3 host(s)", "controller-0, worker-0, worker-1"]),
        ([], LIVE, False, ["no host has reported"]),
    ],
    ids=[
        "no GPU host",
        "no GPU, no conductor",
        "no GPU, conductor stopped",
        "GPU in inventory, no label",
        "an i915 host",
        "an xe host",
        "all-in-one controller",
        "mixed",
        "no hosts",
    ],
)
def test_apply_check(hosts: list[Host], lease: Lease | None, allowed: bool, phrases: list[str]) -> None:
    verdict = apply_check(hosts, lease, NOW)
    assert verdict.allowed is allowed
    assert "\n" not in verdict.message
    for phrase in phrases:
        assert phrase in verdict.message, verdict.message


def test_labelled_hosts_without_conductor_apply_with_a_warning() -> None:
    verdict = apply_check([I915], STALE, NOW)
    assert verdict.allowed
    assert len(verdict.warnings) == 1 and "labels will not follow GPUs" in verdict.warnings[0]
    assert apply_check([I915], LIVE, NOW).warnings == ()


def test_operator_gpu_plugin_refuses_apply_even_with_gpus() -> None:
    verdict = apply_check([I915], LIVE, NOW, gpu_device_plugins=["gpudeviceplugin-sample"])
    assert not verdict.allowed
    assert (
        "intel-device-plugins-operator's GPU plugin is deployed (GpuDevicePlugin gpudeviceplugin-sample)"
        in verdict.message
    )
    assert "helm-chart-attribute-modify --enabled false intel-device-plugins-operator" in verdict.message


@pytest.mark.parametrize(
    ("lease", "error", "down"),
    [
        (LIVE, None, None),
        (Lease("controller-0", NOW - timedelta(seconds=15), 15), None, None),  # at the edge: still alive
        (Lease("controller-0", NOW - timedelta(seconds=16), 15), None, "not renewed for 16 s"),
        (Lease("", NOW, 15), None, "has no holder"),
        (Lease("controller-0", None, 15), None, "has no holder"),
        (None, "HTTP 403 Forbidden", "could not be read (HTTP 403 Forbidden)"),
    ],
)
def test_conductor_down(lease: Lease | None, error: str | None, down: str | None) -> None:
    result = conductor_down(lease, NOW, error)
    assert (result is None) if down is None else (result is not None and down in result), result


def test_hostile_names_are_bounded() -> None:
    hosts = [Host("h" * 10_000, labels=LABEL) for _ in range(1000)]
    verdict = apply_check(
        hosts, Lease("x" * 10_000, NOW - timedelta(days=1), 15), NOW, gpu_device_plugins=["p" * 10_000] * 1000
    )
    assert len(verdict.message) < 600


@pytest.mark.parametrize(
    ("enabled", "removed"),
    [
        ({"intel-gpu-plugin": True}, []),
        ({"intel-gpu-plugin": False}, ["intel-gpu-plugin"]),
        ({"b": False, "a": False, "c": True}, ["a", "b"]),
    ],
)
def test_releases_to_remove(enabled: dict[str, bool], removed: list[str]) -> None:
    assert releases_to_remove(enabled) == removed


def test_bootstrap_roles_daemonset_refuses_apply() -> None:
    verdict = apply_check([I915], LIVE, NOW, bootstrap_daemonset=True)
    assert not verdict.allowed
    assert "the bootstrap role's DaemonSet kube-system/intel-gpu-plugin is deployed" in verdict.message
    assert "kubectl -n kube-system delete daemonset intel-gpu-plugin" in verdict.message
