"""The application's pre-apply check against the real API server (the emulated one in
tests/stx_app/test_sysinv_glue.py is a double: where they differ, the double is wrong).

Reads the real node's labels, a real coordination.k8s.io/v1 Lease and a real DaemonSet with the
official client, as sysinv's KubeOperator does on a StarlingX controller.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("localcluster")  # the launcher of issue 18 (on main)

from tests.fakes import sysinv_app  # noqa: E402
from tests.stx_app.conftest import STX_APP  # noqa: E402
from tests.stx_app.test_sysinv_glue import WORKER_XE, hook, run_hook  # noqa: E402

if str(STX_APP) not in sys.path:
    sys.path.insert(0, str(STX_APP))


@pytest.fixture
def sysinv() -> Iterator[dict[str, ModuleType]]:
    with sysinv_app.loaded() as modules:
        yield modules


def put_lease(cluster: Any, renewed: datetime) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "sysinv-gpu-conductor", "namespace": "kube-system"},
        "spec": {"holderIdentity": "controller-0", "leaseDurationSeconds": 15,
                 "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}))  # fmt: skip


@pytest.fixture
def node(cluster: Any) -> Iterator[Any]:
    """The real node as sysinv's host 'controller-0' with an xe GPU in sysinv's inventory."""
    yield cluster
    cluster.kubectl("label", "node", cluster.node_name, "intelgpu-", check=False)
    cluster.kubectl("-n", "kube-system", "delete", "lease", "sysinv-gpu-conductor", "--ignore-not-found")
    cluster.kubectl("-n", "kube-system", "delete", "daemonset", "intel-gpu-plugin", "--ignore-not-found")


def check(sysinv: dict[str, ModuleType], cluster: Any) -> None:
    host = (cluster.node_name, *WORKER_XE[1:])
    run_hook(sysinv, None, str(cluster.kubeconfig), [host], hook())  # type: ignore[arg-type]


def test_check_on_the_real_api_server(sysinv: dict[str, ModuleType], node: Any) -> None:
    refused = sysinv["exception"].LifecycleSemanticCheckException
    with pytest.raises(refused) as err:
        check(sysinv, node)
    assert "no host has reported an Intel GPU" in str(err.value)
    assert "no Lease kube-system/sysinv-gpu-conductor" in str(err.value)
    assert f"Intel GPUs on {node.node_name}" in str(err.value)

    node.kubectl("label", "node", node.node_name, "intelgpu=enabled", "--overwrite")
    put_lease(node, datetime.now(timezone.utc) - timedelta(seconds=1))
    check(sysinv, node)  # labelled, conductor alive: allowed

    put_lease(node, datetime.now(timezone.utc) - timedelta(minutes=10))
    check(sysinv, node)  # allowed, with a warning only

    node.kubectl("-n", "kube-system", "create", "daemonset", "intel-gpu-plugin", "--image=x/y:1", check=False)
    if node.kubectl("-n", "kube-system", "get", "daemonset", "intel-gpu-plugin", check=False).returncode:
        node.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "intel-gpu-plugin", "namespace": "kube-system"},
            "spec": {"selector": {"matchLabels": {"app": "bootstrap-gpu"}},
                     "template": {"metadata": {"labels": {"app": "bootstrap-gpu"}},
                                  "spec": {"nodeSelector": {"intelgpu": "nowhere"},
                                           "containers": [{"name": "p", "image": "x/y:1"}]}}}}))  # fmt: skip
    with pytest.raises(refused, match="bootstrap role's DaemonSet kube-system/intel-gpu-plugin"):
        check(sysinv, node)
