"""sysinv's helm plugin for the intel-gpu-plugin chart: system overrides (``overrides``).

Loaded by sysinv through the ``systemconfig.helm_plugins.intel_gpu_plugin`` entry point only;
it subclasses sysinv's FluxCDBaseHelm, so it imports sysinv (nothing else here does).
"""

from __future__ import annotations

from typing import Any

from sysinv.common import constants as sysinv_constants
from sysinv.common import exception
from sysinv.helm import base

from k8sapp_intel_gpu_plugin import sysinv_view
from k8sapp_intel_gpu_plugin.common import constants
from k8sapp_intel_gpu_plugin.overrides import system_overrides


class IntelGpuPluginHelm(base.FluxCDBaseHelm):  # type: ignore[misc]  # sysinv is untyped
    """System overrides of the intel-gpu-plugin chart."""

    SUPPORTED_NAMESPACES = base.BaseHelm.SUPPORTED_NAMESPACES + [constants.NAMESPACE]
    SUPPORTED_APP_NAMESPACES = {
        constants.APP_NAME: base.BaseHelm.SUPPORTED_NAMESPACES + [constants.NAMESPACE],
    }
    CHART = constants.CHART
    HELM_RELEASE = constants.HELM_RELEASE
    SERVICE_NAME = constants.APP_NAME

    def get_namespaces(self) -> list[str]:
        return list(self.SUPPORTED_NAMESPACES)

    def get_overrides(self, namespace: str | None = None) -> dict[str, Any]:
        overrides = {
            constants.NAMESPACE: system_overrides(
                sysinv_view.hosts(self.dbapi), registry=sysinv_constants.DOCKER_REGISTRY_SERVER
            ),
        }
        if namespace and namespace in self.SUPPORTED_NAMESPACES:
            return dict(overrides.get(namespace, {}))
        if namespace:
            raise exception.InvalidHelmNamespace(chart=self.CHART, namespace=namespace)
        return overrides
