"""sysinv's FluxCD kustomize operator for the intel-gpu-plugin application: removes the
HelmRelease from the manifest while its chart is disabled (decision in ``releases``).

Loaded by sysinv through the ``systemconfig.fluxcd.kustomize_ops`` entry point only.
"""

from __future__ import annotations

from typing import Any

from oslo_log import log as logging
from sysinv.common import utils as cutils
from sysinv.helm import kustomize_base as base

from k8sapp_intel_gpu_plugin.common import constants
from k8sapp_intel_gpu_plugin.releases import releases_to_remove

LOG = logging.getLogger(__name__)


class IntelGpuPluginFluxCDKustomizeOperator(base.FluxCDKustomizeOperator):  # type: ignore[misc]
    APP = constants.APP_NAME

    def platform_mode_kustomize_updates(self, dbapi: Any, mode: Any) -> None:
        enabled = cutils.is_chart_enabled(dbapi, constants.APP_NAME, constants.CHART, constants.NAMESPACE)
        for release in releases_to_remove({constants.HELM_RELEASE: enabled}):
            LOG.info(
                "%s: chart disabled, HelmRelease %s removed from the manifest", constants.APP_NAME, release
            )
            self.helm_release_resource_delete(release)
