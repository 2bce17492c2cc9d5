"""Whether ``system application-apply intel-gpu-plugin`` may go ahead: one verdict, one line.

Inputs come from the Kubernetes API, what decides where the DaemonSet runs:
- the nodes' labels (``intelgpu=enabled``, set by sysinv-gpu-conductor when a host's agent
  reported an Intel GPU);
- sysinv-gpu-conductor's leader election Lease: renewed within its duration = the conductor
  runs. No Lease = not running (or running with leader election off, which we cannot see);
- GpuDevicePlugin objects of intel-device-plugins-operator, and the bootstrap role's
  DaemonSet kube-system/intel-gpu-plugin: two GPU plugins on one node register the same
  resources with kubelet, so apply is refused while either exists.
Chosen over reading sysinv-gpu-conductor's database because sysinv knows nothing of that
database (its URL lives in the conductor's own config) while it always has the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from k8sapp_intel_gpu_plugin.common import constants
from k8sapp_intel_gpu_plugin.hosts import Host, names

LEASE = f"{constants.CONDUCTOR_LEASE_NAMESPACE}/{constants.CONDUCTOR_LEASE_NAME}"
BOOTSTRAP_DAEMONSET = "kube-system/intel-gpu-plugin"  #: what roles/bringup_kubemaster applies


@dataclass(frozen=True)
class Lease:
    holder: str
    renew_time: datetime | None
    duration_seconds: float


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    message: str  #: one line: why refused, or what was found
    warnings: tuple[str, ...] = ()


def conductor_down(lease: Lease | None, now: datetime, lease_error: str | None = None) -> str | None:
    """None when sysinv-gpu-conductor runs, else why we think it does not."""
    if lease_error is not None:
        return f"its Lease {LEASE} could not be read ({lease_error[:200]})"
    if lease is None:
        return (
            f"no Lease {LEASE} (not running, or running with [conductor]leader_election = false, "
            "which this check cannot see)"
        )
    if lease.renew_time is None or not lease.holder:
        return f"Lease {LEASE} has no holder"
    silent = now - lease.renew_time
    if silent > timedelta(seconds=lease.duration_seconds):
        return f"Lease {LEASE} not renewed for {int(silent.total_seconds())} s (holder {lease.holder[:64]})"
    return None


def apply_check(
    hosts: Iterable[Host],
    lease: Lease | None,
    now: datetime,
    *,
    gpu_device_plugins: Sequence[str] = (),
    lease_error: str | None = None,
    bootstrap_daemonset: bool = False,
) -> Verdict:
    hosts = list(hosts)
    if bootstrap_daemonset:
        return Verdict(
            False,
            (
                f"{constants.APP_NAME}: refused: the bootstrap role's DaemonSet {BOOTSTRAP_DAEMONSET} "
                "is deployed and would run beside this application's on every labelled node: delete it first "
                f"(kubectl -n {BOOTSTRAP_DAEMONSET.replace('/', ' delete daemonset ')})"
            ),
        )
    if gpu_device_plugins:
        return Verdict(
            False,
            (
                f"{constants.APP_NAME}: refused: {constants.OPERATOR_APP_NAME}'s GPU plugin is deployed "
                f"(GpuDevicePlugin {', '.join(n[:64] for n in sorted(gpu_device_plugins)[:3])}); "
                "two GPU plugins on one node register the same resources with kubelet: disable its GPU chart "
                f"(system helm-chart-attribute-modify --enabled false {constants.OPERATOR_APP_NAME} ...) "
                "and re-apply it first"
            ),
        )
    down = conductor_down(lease, now, lease_error)
    reported = [h for h in hosts if h.reported_gpu]
    if not reported:
        line = (
            f"{constants.APP_NAME}: refused: no host has reported an Intel GPU "
            f"(no node labelled {constants.GPU_LABEL_KEY}={constants.GPU_LABEL_VALUE})"
        )
        if down:
            line += f", and sysinv-gpu-conductor is not running: {down}"
        unlabelled = [h for h in hosts if h.gpu_drivers]
        if unlabelled:
            line += (
                f"; sysinv's inventory has Intel GPUs on {names(unlabelled)}: is sysinv-gpu-agent "
                "running there?"
            )
        return Verdict(False, line)
    warnings: tuple[str, ...] = ()
    if down:
        warnings = (
            f"sysinv-gpu-conductor is not running ({down}): {constants.GPU_LABEL_KEY} labels "
            "will not follow GPUs that come or go",
        )
    return Verdict(
        True,
        f"{constants.APP_NAME}: {len(reported)} host(s) reported an Intel GPU: {names(reported)}",
        warnings,
    )
