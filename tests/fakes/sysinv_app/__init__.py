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

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

PATH = str(Path(__file__).resolve().parent)
#: the k8sapp_intel_gpu_plugin modules that import sysinv (its entry-point classes)
GLUE = {
    "helm": "k8sapp_intel_gpu_plugin.helm.intel_gpu_plugin",
    "kustomize": "k8sapp_intel_gpu_plugin.kustomize.kustomize_intel_gpu_plugin",
    "lifecycle": "k8sapp_intel_gpu_plugin.lifecycle.lifecycle_intel_gpu_plugin",
    "exception": "sysinv.common.exception",
    "lifecycle_base": "sysinv.helm.lifecycle_base",
}


@contextlib.contextmanager
def loaded() -> Iterator[dict[str, ModuleType]]:
    """The glue modules imported against this stand-in (k8sapp_intel_gpu_plugin must be on
    sys.path), unloaded again afterwards so no other test sees a ``sysinv``."""
    sys.path.insert(0, PATH)
    try:
        modules = {key: importlib.import_module(name) for key, name in GLUE.items()}
        modules["lifecycle_base"].AppLifecycleOperator.base_calls.clear()
        yield modules
    finally:
        sys.path.remove(PATH)
        for name in [n for n in sys.modules if n.split(".")[0] == "sysinv" or n in GLUE.values()]:
            del sys.modules[name]
