"""intel-gpu-dra-plugin (issue 20) on a REAL Kubernetes 1.34.1 (DRA GA, on by default).

REAL: kube-apiserver (resource.k8s.io/v1, RBAC, the ValidatingAdmissionPolicy of
deployments/dra/base), kube-scheduler (its DRA plugin allocates claims from our ResourceSlice with
CEL), kube-controller-manager (DaemonSet, ResourceClaim controllers), kubelet (plugin registration,
NodePrepareResources / NodeUnprepareResources over our unix sockets, CDI device IDs into the CRI
request), the official kubernetes client in the plugin.
EMULATED: the GPUs (fake sysfs/devfs) and the container runtime (Kubernetes' fake CRI runtime,
which records CreateContainer); the plugin runs as a host process with its DaemonSet pod's token.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from gpu_plugin.dra._api import dra_v1_pb2 as v1
from gpu_plugin.dra._api import dra_v1_pb2_grpc as v1_grpc
from localcluster import LocalCluster
from localcluster.process import Program
from tests.cluster.dra_helpers import (
    DRIVER,
    REPO,
    DraPlugin,
    deploy,
    fake_machine,
    plugin_kubeconfig,
    wait,
)

pytestmark = [pytest.mark.slow]

GPU16 = "0000-03-00-0-0x56c0"
GPU8 = "0000-04-00-0-0x56c1"
VFS = ["0000-05-00-1-0x56c0", "0000-05-00-2-0x56c0"]
NS = "default"
TEMPLATES = REPO / "deployments" / "dra" / "examples" / "claim-templates.yaml"

#: Intel's DRA GPU driver's attribute names (intel-resource-drivers-for-kubernetes, gpu-v0.11.0,
#: cmd/kubelet-gpu-plugin node_state.go) -> the value type; ours must have each, same type.
INTEL_ATTRIBUTES = {
    "model": "string", "family": "string", "driver": "string", "sriov": "bool", "pciId": "string",
    "pciAddress": "string", "health": "string",
    "resource.kubernetes.io/pcieRoot": "string", "resource.kubernetes.io/pciBusID": "string",
}


@pytest.fixture(scope="module")
def plugin(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DraPlugin]:
    root = tmp_path_factory.mktemp("dra")
    pod = deploy(cluster)
    kubeconfig = plugin_kubeconfig(cluster, pod, root / "plugin.kubeconfig")
    cluster.kubectl("apply", "-n", NS, "-f", str(TEMPLATES))
    running = DraPlugin(cluster, root, kubeconfig, fake_machine(root / "machine")).start()
    try:
        yield running
    finally:
        cluster.kubectl("delete", "pods", "-n", NS, "-l", "test=dra", "--wait=true", "--timeout=60s",
                        check=False)
        running.stop()
        cluster.kubectl("delete", "-n", NS, "-f", str(TEMPLATES), "--ignore-not-found", check=False)
        cluster.kubectl("delete", "resourceclaimtemplate", "-n", NS, "nothing-matches",
                        "--ignore-not-found", check=False)
        cluster.kubectl("delete", "-k", str(REPO / "deployments" / "dra" / "base"), "--ignore-not-found",
                        "--wait=false", check=False)


def _pod(name: str, template: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"test": "dra"}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "app", "image": "registry.local:9001/busybox:1.36",
                                     "resources": {"claims": [{"name": "gpu"}]}}],
                     "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": template}]}}


def _create(cluster: LocalCluster, obj: dict[str, Any]) -> None:
    cluster.kubectl("create", "-f", "-", input=json.dumps(obj))


def _get_pod(cluster: LocalCluster, name: str) -> dict[str, Any]:
    return cluster.get_json(f"/api/v1/namespaces/{NS}/pods/{name}")


def _claim_of(cluster: LocalCluster, pod_name: str) -> dict[str, Any]:
    def claim_name() -> str | None:
        statuses = _get_pod(cluster, pod_name).get("status", {}).get("resourceClaimStatuses") or []
        return next((s.get("resourceClaimName") for s in statuses if s.get("resourceClaimName")), None)
    name = wait(f"the claim of pod {pod_name}", claim_name, 30)
    return cluster.get_json(f"/apis/resource.k8s.io/v1/namespaces/{NS}/resourceclaims/{name}")


def _running(cluster: LocalCluster, name: str, timeout: float = 60) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        pod = _get_pod(cluster, name)
        return pod if pod.get("status", {}).get("phase") == "Running" else None
    return wait(f"pod {name} Running", running, timeout)


def _create_container(cluster: LocalCluster, pod_name: str) -> dict[str, Any]:
    def record() -> dict[str, Any] | None:
        return next((r for r in cluster.cri_records("CreateContainer")
                     if r["request"].get("sandboxConfig", {}).get("metadata", {}).get("name") == pod_name),
                    None)
    return wait(f"CreateContainer of pod {pod_name}", record, 60)


def _delete_pod(cluster: LocalCluster, name: str) -> None:
    cluster.kubectl("delete", "pod", "-n", NS, name, "--wait=true", "--timeout=60s")


def test_plugin_publishes_one_slice_with_a_device_per_gpu_and_vf(plugin: DraPlugin) -> None:
    slices = wait("the node's ResourceSlice", plugin.slices, 30)
    assert len(slices) == 1
    spec = slices[0]["spec"]
    assert spec["driver"] == DRIVER and spec["pool"]["name"] == plugin.cluster.node_name
    assert plugin.device_names() == sorted([GPU16, GPU8, *VFS])
    owner = slices[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Node", plugin.cluster.node_name)
    devices = {d["name"]: d for d in spec["devices"]}
    # what we wrote (16384Mi), as the API server canonicalised it
    assert devices[GPU16]["capacity"]["memory"]["value"] == "16Gi"
    assert devices[GPU16]["attributes"]["model"] == {"string": "Flex 170"}
    assert devices[VFS[0]]["attributes"]["type"] == {"string": "vf"}


@pytest.mark.parametrize("name,kind", sorted(INTEL_ATTRIBUTES.items()), ids=sorted(INTEL_ATTRIBUTES))
def test_intel_attribute_names_as_the_api_server_stored_them(plugin: DraPlugin, name: str, kind: str) -> None:
    """The table of Intel's attribute names against ours, read back from the API server."""
    devices = wait("the node's ResourceSlice", plugin.slices, 30)[0]["spec"]["devices"]
    for device in devices:
        assert list(device["attributes"][name]) == [kind], device["name"]


def test_plugin_identity_cannot_write_another_nodes_slice(plugin: DraPlugin) -> None:
    rogue = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
             "metadata": {"name": "rogue-slice"},
             "spec": {"driver": DRIVER, "nodeName": "some-other-node", "devices": [],
                      "pool": {"name": "some-other-node", "generation": 1, "resourceSliceCount": 1}}}
    proc = plugin.cluster.kubectl("create", "-f", "-", kubeconfig=plugin.kubeconfig, check=False,
                                  input=json.dumps(rogue))
    assert proc.returncode != 0
    assert "may not write ResourceSlices of node 'some-other-node'" in proc.stderr, proc.stderr
    proc = plugin.cluster.kubectl("get", "secrets", "-n", "kube-system", kubeconfig=plugin.kubeconfig,
                                  check=False)
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower()


def test_scheduler_allocates_the_gpu_the_cel_selector_matches_and_kubelet_prepares_it(
        plugin: DraPlugin) -> None:
    cluster = plugin.cluster
    _create(cluster, _pod("dra-16gi", "gpu-16gi"))
    _running(cluster, "dra-16gi")
    claim = _claim_of(cluster, "dra-16gi")
    results = claim["status"]["allocation"]["devices"]["results"]
    assert [(r["driver"], r["pool"], r["device"]) for r in results] == [(DRIVER, cluster.node_name, GPU16)]
    uid = claim["metadata"]["uid"]
    cdi_id = f"gpu.intel.com/claim={uid}-{GPU16}"
    # kubelet called NodePrepareResources and passed our CDI device ID on to the runtime
    record = _create_container(cluster, "dra-16gi")
    assert record["request"]["config"].get("CDIDevices") == [{"name": cdi_id}], record["request"]["config"]
    spec = (plugin.cdi_dir / f"gpu.intel.com-claim_{uid}.yaml").read_text()
    assert f"{plugin.fs.devfs_root}/dri/card0" in spec and "pci-0000:03:00.0-render" in spec
    assert uid in json.loads(plugin.checkpoint.read_text())["claims"]


def test_scheduler_refuses_a_selector_nothing_matches(plugin: DraPlugin) -> None:
    cluster = plugin.cluster
    expression = 'device.capacity["gpu.intel.com"].memory.compareTo(quantity("1Ti")) >= 0'
    template = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
                "metadata": {"name": "nothing-matches", "namespace": NS},
                "spec": {"spec": {"devices": {"requests": [{"name": "gpu", "exactly": {
                    "deviceClassName": "gpu.intel.com", "selectors": [{"cel": {"expression": expression}}],
                }}]}}}}
    _create(cluster, template)
    _create(cluster, _pod("dra-1ti", "nothing-matches"))

    def unschedulable() -> dict[str, Any] | None:
        for cond in _get_pod(cluster, "dra-1ti").get("status", {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return cond
        return None
    cond = wait("pod dra-1ti Unschedulable", unschedulable, 60)
    assert "cannot allocate all claims" in cond["message"], cond
    assert not _get_pod(cluster, "dra-1ti")["spec"].get("nodeName")
    _delete_pod(cluster, "dra-1ti")


def test_a_vf_claim_gets_a_vf(plugin: DraPlugin) -> None:
    cluster = plugin.cluster
    _create(cluster, _pod("dra-vf", "one-vf"))
    _running(cluster, "dra-vf")
    results = _claim_of(cluster, "dra-vf")["status"]["allocation"]["devices"]["results"]
    assert [r["device"] for r in results][0] in VFS
    _delete_pod(cluster, "dra-vf")


def test_deleting_the_pod_unprepares_its_claim(plugin: DraPlugin) -> None:
    cluster = plugin.cluster
    uid = _claim_of(cluster, "dra-16gi")["metadata"]["uid"]
    spec = plugin.cdi_dir / f"gpu.intel.com-claim_{uid}.yaml"
    assert spec.exists()
    _delete_pod(cluster, "dra-16gi")
    wait("the claim's CDI spec removed", lambda: not spec.exists(), 60)
    assert uid not in json.loads(plugin.checkpoint.read_text())["claims"]
    assert f"Unprepared claim {NS}/" in plugin.log_text()


def test_plugin_restart_keeps_slices_and_prepares_nothing_twice(plugin: DraPlugin) -> None:
    cluster = plugin.cluster
    _create(cluster, _pod("dra-restart", "one-gpu"))
    _running(cluster, "dra-restart")
    claim = _claim_of(cluster, "dra-restart")
    uid = claim["metadata"]["uid"]
    before = plugin.slices()
    plugin.restart()
    after = wait("the slice after the restart", plugin.slices, 30)
    assert [s["metadata"]["name"] for s in after] == [s["metadata"]["name"] for s in before]
    names = [d["name"] for d in after[0]["spec"]["devices"]]
    assert names == [d["name"] for d in before[0]["spec"]["devices"]]
    assert uid in json.loads(plugin.checkpoint.read_text())["claims"]
    spec = plugin.cdi_dir / f"gpu.intel.com-claim_{uid}.yaml"
    written = spec.stat().st_mtime_ns
    # kubelet asks again for a claim it is not sure of (after its own restart, a retry): the
    # restarted plugin answers from its checkpoint, same CDI IDs, the spec not rewritten
    claim_ref = v1.Claim(namespace=NS, uid=uid, name=claim["metadata"]["name"])
    with grpc.insecure_channel(f"unix://{plugin.endpoint}") as channel:
        again = v1_grpc.DRAPluginStub(channel).NodePrepareResources(
            v1.NodePrepareResourcesRequest(claims=[claim_ref]), timeout=10).claims[uid]
    assert again.error == ""
    device = claim["status"]["allocation"]["devices"]["results"][0]["device"]
    assert [list(d.cdi_device_ids) for d in again.devices] == [[f"gpu.intel.com/claim={uid}-{device}"]]
    assert spec.stat().st_mtime_ns == written
    # deleting the pod is unprepared by the new process
    _delete_pod(cluster, "dra-restart")
    wait("the claim's CDI spec removed by the restarted plugin", lambda: not spec.exists(), 60)
    prepared = [line for line in plugin.log_text().splitlines() if "Prepared claim" in line and uid in line]
    assert len(prepared) == 1, prepared
    assert "Unprepared claim" in plugin.logs[-1].read_text()


def test_kubelet_1_34_calls_the_v1_service(plugin: DraPlugin) -> None:
    """kubelet picks the first of its supported services the plugin offers: v1.DRAPlugin."""
    text = plugin.log_text()
    assert "v1 NodePrepareResources" in text and "v1 NodeUnprepareResources" in text
    assert "v1beta1 NodePrepareResources" not in text
    # its ResourceHealthStatus gate is alpha and off in 1.34: it never opens the health stream
    assert "dra-health stream" not in text


def test_a_gpu_removed_from_sysfs_leaves_the_slice(plugin: DraPlugin) -> None:
    plugin.fs.remove_gpu("0000:04:00.0")
    wait("GPU 0000:04:00.0 gone from the slice", lambda: GPU8 not in plugin.device_names(), 30)
    assert plugin.device_names() == sorted([GPU16, *VFS])


def test_kubelet_restart_wipes_the_slice_and_the_plugin_puts_it_back(plugin: DraPlugin) -> None:
    cluster = plugin.cluster
    cluster.restart_kubelet()
    wait("the slice published again after kubelet's restart", lambda: GPU16 in plugin.device_names(), 60)
    _create(cluster, _pod("dra-after-kubelet", "one-gpu"))
    _running(cluster, "dra-after-kubelet", timeout=90)
    record = _create_container(cluster, "dra-after-kubelet")
    assert record["request"]["config"].get("CDIDevices"), record["request"]["config"]
    _delete_pod(cluster, "dra-after-kubelet")


def test_unhealthy_gpu_is_published_unhealthy_and_a_healthy_selector_avoids_it(plugin: DraPlugin) -> None:
    """Health from the Level-Zero sidecar (its sysfs source: a fatal PCIe AER error on the GPU)."""
    cluster = plugin.cluster
    socket = plugin.root / "lz.sock"
    argv = [sys.executable, "-m", "gpu_plugin.levelzero.server", "-socket", str(socket),
            "-sysfs-root", plugin.fs.sysfs_root, "-source", "sysfs"]
    sidecar = Program("levelzero", argv, plugin.root / "levelzero.log").start()
    try:
        wait("the Level-Zero sidecar's socket", lambda: sidecar.check_alive() or socket.exists(), 30)
        plugin.extra_args = ["-health-management", "-levelzero-socket", str(socket)]
        plugin.restart()
        plugin.fs.write("devices/pci0000:00/0000:03:00.0/aer_dev_fatal", "TOTAL_ERR_FATAL 1")
        wait("GPU 0000:03:00.0 published Unhealthy",
             lambda: plugin.devices()[GPU16]["attributes"]["health"] == {"string": "Unhealthy"}, 30)
        # kube-apiserver 1.34 without the alpha DRADeviceTaints gate drops the taint we send
        assert "taints" not in plugin.devices()[GPU16]
        _create(cluster, _pod("dra-healthy-flex", "flex-gpu"))
        _running(cluster, "dra-healthy-flex")
        results = _claim_of(cluster, "dra-healthy-flex")["status"]["allocation"]["devices"]["results"]
        assert [r["device"] for r in results][0] in VFS
        _delete_pod(cluster, "dra-healthy-flex")
        plugin.fs.write("devices/pci0000:00/0000:03:00.0/aer_dev_fatal", "TOTAL_ERR_FATAL 0")
        wait("GPU 0000:03:00.0 Healthy again",
             lambda: plugin.devices()[GPU16]["attributes"]["health"] == {"string": "Healthy"}, 30)
    finally:
        plugin.extra_args = []
        plugin.restart()
        sidecar.stop()
