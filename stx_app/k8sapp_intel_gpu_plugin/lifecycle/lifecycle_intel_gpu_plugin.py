"""sysinv's lifecycle operator for the intel-gpu-plugin application: before apply, refuse
with one line when no host reported a GPU (saying so when sysinv-gpu-conductor is not
running) or when another GPU plugin is deployed: intel-device-plugins-operator's, or the
bootstrap role's DaemonSet (``checks``).

Loaded by sysinv through the ``systemconfig.app_lifecycle`` entry point only.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as kube_client
from kubernetes.client.exceptions import ApiException
from oslo_log import log as logging
from sysinv.common import constants as sysinv_constants
from sysinv.common import exception
from sysinv.helm import lifecycle_base as base
from sysinv.helm.lifecycle_constants import LifecycleConstants

from k8sapp_intel_gpu_plugin import checks, sysinv_view
from k8sapp_intel_gpu_plugin.checks import apply_check
from k8sapp_intel_gpu_plugin.common import constants

LOG = logging.getLogger(__name__)


class IntelGpuPluginAppLifecycleOperator(base.AppLifecycleOperator):  # type: ignore[misc]
    def app_lifecycle_actions(self, context: Any, conductor_obj: Any, app_op: Any, app: Any,
                              hook_info: Any) -> None:
        if (
            hook_info.lifecycle_type == LifecycleConstants.APP_LIFECYCLE_TYPE_SEMANTIC_CHECK
            and hook_info.operation == sysinv_constants.APP_APPLY_OP
            and hook_info.relative_timing == LifecycleConstants.APP_LIFECYCLE_TIMING_PRE
        ):
            self.pre_apply_check(conductor_obj, app_op)
        super().app_lifecycle_actions(context, conductor_obj, app_op, app, hook_info)

    def pre_apply_check(self, conductor_obj: Any, app_op: Any) -> None:
        kube = app_op._kube
        dbapi = getattr(conductor_obj, "dbapi", None) or app_op._dbapi
        hosts = sysinv_view.hosts(dbapi, kube.kube_get_nodes())
        lease, lease_error = None, None
        try:
            api = kube_client.CoordinationV1Api(kube._get_kubernetesclient_core().api_client)
            lease = sysinv_view.lease(
                api.read_namespaced_lease(constants.CONDUCTOR_LEASE_NAME, constants.CONDUCTOR_LEASE_NAMESPACE)
            )
        except ApiException as err:
            if err.status != 404:
                lease_error = f"HTTP {err.status} {err.reason}"
        bootstrap = True
        try:
            namespace, name = checks.BOOTSTRAP_DAEMONSET.split("/")
            # only whether it exists: no model built from it
            kube._get_kubernetesclient_apps_v1_api().read_namespaced_daemon_set(
                name, namespace, _preload_content=False).release_conn()
        except ApiException as err:
            bootstrap = False
            if err.status != 404:
                LOG.warning(
                    "%s: could not check for %s: HTTP %s %s",
                    constants.APP_NAME,
                    checks.BOOTSTRAP_DAEMONSET,
                    err.status,
                    err.reason,
                )
        plugins = (
            kube.list_custom_resources(
                constants.OPERATOR_CR_GROUP, constants.OPERATOR_CR_VERSION, constants.OPERATOR_CR_PLURAL
            )
            or []
        )
        verdict = apply_check(
            hosts,
            lease,
            sysinv_view.utcnow(),
            lease_error=lease_error,
            gpu_device_plugins=[p["metadata"]["name"] for p in plugins],
            bootstrap_daemonset=bootstrap,
        )
        for warning in verdict.warnings:
            LOG.warning("%s: %s", constants.APP_NAME, warning)
        if not verdict.allowed:
            raise exception.LifecycleSemanticCheckException(verdict.message)
        LOG.info(verdict.message)
