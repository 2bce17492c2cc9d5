"""Test double of the part of sysinv an application plugin is loaded into, written from
starlingx/config b62963d4 (sysinv/helm/base.py, kustomize_base.py, lifecycle_base.py,
lifecycle_constants.py, common/constants.py, exception.py, utils.is_chart_enabled).

Only the names and signatures k8sapp_intel_gpu_plugin's entry-point classes use:
``BaseHelm(operator)`` with ``dbapi``, ``FluxCDBaseHelm``; ``FluxCDKustomizeOperator`` with
``helm_release_resource_delete`` (recorded in ``deleted``); ``AppLifecycleOperator``
(``app_lifecycle_actions`` recorded in ``base_calls``); the lifecycle constants; the
exceptions; ``utils.is_chart_enabled`` (reads ``dbapi.charts_enabled``). Put ``PATH`` on
sys.path to make ``import sysinv`` find it; never imported by production code.
"""
from pathlib import Path

PATH = str(Path(__file__).resolve().parent)
