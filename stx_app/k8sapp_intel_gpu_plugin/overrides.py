"""System overrides of the intel-gpu-plugin chart: what sysinv puts into
intel-gpu-plugin-system-overrides.yaml for the hosts it knows.

- image from the system's local registry (registry.local:9001) with sysinv's pull secret;
- nodeSelector intelgpu=enabled: the label sysinv-gpu-conductor sets for i915 and xe hosts
  alike, so no driver-specific selector;
- on all-in-one systems, tolerations for the controllers' NoSchedule taints, or the plugin
  would never run on the only hosts there are.
The user's own overrides (system helm-override-update) still win over these, as in any
StarlingX application.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from k8sapp_intel_gpu_plugin.common import constants
from k8sapp_intel_gpu_plugin.hosts import Host


def controller_tolerations() -> list[dict[str, str]]:
    return [
        {"key": key, "operator": "Exists", "effect": "NoSchedule"} for key in constants.CONTROLLER_TAINT_KEYS
    ]


def system_overrides(hosts: Iterable[Host], registry: str = constants.LOCAL_REGISTRY) -> dict[str, Any]:
    """The chart values sysinv sets for this system."""
    hosts = list(hosts)
    overrides: dict[str, Any] = {
        "image": {"hub": f"{registry.rstrip('/')}/{constants.IMAGE_REPOSITORY}"},
        "imagePullSecrets": [{"name": constants.LOCAL_REGISTRY_SECRET}],
        "nodeSelector": {constants.GPU_LABEL_KEY: constants.GPU_LABEL_VALUE, "kubernetes.io/arch": "amd64"},
    }
    if any(h.all_in_one for h in hosts):
        overrides["tolerations"] = controller_tolerations()
    return overrides
