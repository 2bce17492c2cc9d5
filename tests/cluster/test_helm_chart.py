"""The Helm chart and the StarlingX application's check on the real local cluster (issue 18's
LocalCluster; ``make test-cluster``). One module, so that it needs one cluster at most.

- every values file we ship passes the API server's own validation (``kubectl apply
  --dry-run=server --validate=strict`` of ``helm template``), NodeFeatureRule aside (no NFD CRD);
- ``helm install`` puts the plugin pod only on the node labelled intelgpu=enabled: the real
  kubelet node is labelled, an API-only node is not, and the DaemonSet controller and scheduler
  decide;
- ``helm uninstall`` leaves nothing of the release: no DaemonSet, pods, ServiceAccount, RBAC
  or release Secret.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any, TypeVar

import pytest
import yaml

localcluster = pytest.importorskip("localcluster")  # the launcher of issue 18 (on main)

from tests.cluster.shared import kube_cluster_fixture  # noqa: E402,F401  (the kube_cluster fixture)
from tests.fakes import sysinv_app  # noqa: E402
from tests.helm.chart import CHART, helm_binary  # noqa: E402
from tests.stx_app.conftest import STX_APP  # noqa: E402
from tests.stx_app.test_sysinv_glue import WORKER_XE, hook, run_hook  # noqa: E402

if str(STX_APP) not in sys.path:
    sys.path.insert(0, str(STX_APP))

NAMESPACE = "gpu-chart-test"
RELEASE = "intel-gpu-plugin"
UNLABELLED = "worker-nogpu"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90) -> T:
    return localcluster.wait_for(what, probe, timeout, interval=0.25)


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


def run_helm(helm: str, cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, "--kubeconfig", str(cluster.kubeconfig), *args], capture_output=True, text=True, timeout=300
    )


def objects(
    cluster: Any, kind: str, namespace: str | None = NAMESPACE, selector: str = ""
) -> list[dict[str, Any]]:
    args = ["get", kind, "-o", "json"] + (["-n", namespace] if namespace else [])
    args += ["-l", selector] if selector else []
    return list(json.loads(cluster.kubectl(*args).stdout)["items"])


@pytest.fixture(scope="module")
def labelled(kube_cluster: Any) -> Iterator[Any]:
    """The kubelet node labelled intelgpu=enabled, an API-only node without it, our namespace."""
    cluster = kube_cluster
    cluster.kubectl("label", "node", cluster.node_name, "intelgpu=enabled", "--overwrite")
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": UNLABELLED,
                    "labels": {"kubernetes.io/arch": "amd64", "kubernetes.io/hostname": UNLABELLED},
                },
            }
        ),
    )
    cluster.kubectl("create", "namespace", NAMESPACE)
    yield cluster
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
    cluster.kubectl("delete", "node", UNLABELLED, check=False)
    cluster.kubectl("label", "node", cluster.node_name, "intelgpu-", check=False)


@pytest.mark.parametrize("values_file", sorted(p.name for p in (CHART / "ci").glob("*.yaml")))
def test_server_side_validation(helm: str, labelled: Any, values_file: str) -> None:
    out = run_helm(
        helm,
        labelled,
        "template",
        RELEASE,
        str(CHART),
        "-n",
        NAMESPACE,
        "--values",
        str(CHART / "ci" / values_file),
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] != "NodeFeatureRule"]
    applied = labelled.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        input=yaml.safe_dump_all(docs),
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("(server dry run)") == len(docs)


def assert_uninstall_leaves_nothing(helm: str, cluster: Any) -> None:
    uninstalled = run_helm(
        helm, cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s"
    )
    assert uninstalled.returncode == 0, uninstalled.stderr
    wait_for(
        "the plugin pods gone", lambda: not objects(cluster, "pods", selector="app=intel-gpu-plugin") or None
    )
    assert not objects(cluster, "daemonsets")
    assert [a["metadata"]["name"] for a in objects(cluster, "serviceaccounts")] == ["default"]
    assert not [s for s in objects(cluster, "secrets") if s["metadata"]["name"].startswith("sh.helm.release")]
    for kind in ("clusterroles", "clusterrolebindings"):
        assert not [
            o
            for o in objects(cluster, kind, namespace=None)
            if o["metadata"]["name"] == "intel-gpu-plugin-resource-manager"
        ]


def test_install_runs_only_on_the_labelled_node_and_uninstall_leaves_nothing(
    helm: str, labelled: Any
) -> None:
    cluster = labelled
    # tolerating every taint (the API-only node is tainted not-ready): only the selector keeps it off
    installed = run_helm(helm, cluster, "install", RELEASE, str(CHART), "-n", NAMESPACE,
                         "--set-json", 'tolerations=[{"operator": "Exists"}]')  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    try:
        pods = wait_for(
            "the plugin pod scheduled",
            lambda: [
                p
                for p in objects(cluster, "pods", selector="app=intel-gpu-plugin")
                if p["spec"].get("nodeName")
            ],
        )
        status = wait_for(
            "DaemonSet status",
            lambda: (
                objects(cluster, "daemonsets")[0]["status"].get("desiredNumberScheduled")
                and objects(cluster, "daemonsets")[0]["status"]
            ),
        )
        assert status["desiredNumberScheduled"] == 1  # the labelled node only, not the API-only one
        assert [p["spec"]["nodeName"] for p in pods] == [cluster.node_name]
        assert not [p for p in objects(cluster, "pods") if p["spec"].get("nodeName") == UNLABELLED]
        # kubelet on the labelled node started the pod (the fake runtime's RunPodSandbox); its
        # containers depend on the fake runtime's image service, not on the chart
        pod_name = pods[0]["metadata"]["name"]
        assert wait_for(
            "kubelet running the pod's sandbox",
            lambda: [
                r
                for r in cluster.cri_records("RunPodSandbox")
                if pod_name in json.dumps(r.get("request", {}))
            ],
        )
    finally:
        assert_uninstall_leaves_nothing(helm, cluster)


def test_resource_manager_rbac_and_the_unlabelled_node_is_selectable(helm: str, labelled: Any) -> None:
    """resourceManager's RBAC, installed and uninstalled; the selector picks the API-only node
    (tolerating its not-ready taints), which shows the DaemonSet would have used it had it been
    labelled: the first test's "not there" is the selector's doing. No kubelet runs there, so no
    host path of this machine is mounted."""
    cluster = labelled
    installed = run_helm(
        helm, cluster, "install", RELEASE, str(CHART), "-n", NAMESPACE,
        "--set", "resourceManager=true", "--set", "sharedDevNum=2",
        "--set-json", f'nodeSelector={{"kubernetes.io/hostname": "{UNLABELLED}"}}',
        "--set-json", 'tolerations=[{"operator": "Exists"}]',
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    try:
        bindings = objects(cluster, "clusterrolebindings", namespace=None,
                           selector=f"app.kubernetes.io/instance={RELEASE}")  # fmt: skip
        assert [b["subjects"] for b in bindings] == [
            [{"kind": "ServiceAccount", "name": "intel-device-plugin", "namespace": NAMESPACE}]
        ]
        pods = wait_for(
            "a pod for the API-only node", lambda: objects(cluster, "pods", selector="app=intel-gpu-plugin")
        )
        terms = pods[0]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [UNLABELLED]
    finally:
        run_helm(helm, cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait=false")
        # no kubelet on that node confirms the pod's deletion: remove it as its node's kubelet would
        cluster.kubectl("delete", "pods", "-n", NAMESPACE, "-l", "app=intel-gpu-plugin", "--force",
                        "--grace-period=0", check=False)  # fmt: skip
    wait_for(
        "the plugin pods gone", lambda: not objects(cluster, "pods", selector="app=intel-gpu-plugin") or None
    )
    assert not objects(cluster, "daemonsets")
    assert not [s for s in objects(cluster, "secrets") if s["metadata"]["name"].startswith("sh.helm.release")]
    for kind in ("clusterroles", "clusterrolebindings"):
        assert not [
            o
            for o in objects(cluster, kind, namespace=None)
            if o["metadata"]["name"] == "intel-gpu-plugin-resource-manager"
        ]


# -- the application's pre-apply check against the real API server ------------------------------
# (the emulated one in tests/stx_app/test_sysinv_glue.py is a double: where they differ, the
# double is wrong). It reads the real node's labels, a real coordination.k8s.io/v1 Lease and a
# real DaemonSet with the official client, as sysinv's KubeOperator does on a controller.


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
def node(kube_cluster: Any) -> Iterator[Any]:
    """The real node as sysinv's host with an xe GPU in sysinv's inventory, first without the
    intelgpu label (its label is restored afterwards) and without a conductor Lease (one that an
    earlier test on this cluster left would make the check see a stale conductor)."""
    cluster = kube_cluster
    cluster.kubectl("-n", "kube-system", "delete", "lease", "sysinv-gpu-conductor", "--ignore-not-found")
    label = (
        json.loads(cluster.kubectl("get", "node", cluster.node_name, "-o", "json").stdout)["metadata"]
        .get("labels", {})
        .get("intelgpu")
    )
    cluster.kubectl("label", "node", cluster.node_name, "intelgpu-")
    yield cluster
    restore = f"intelgpu={label}" if label else "intelgpu-"
    cluster.kubectl("label", "node", cluster.node_name, restore, "--overwrite", check=False)
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
