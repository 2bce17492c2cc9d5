"""The whole flow of SPEC.md on a REAL local Kubernetes (demo.cluster_flow, as ``make demo-cluster``).

REAL: etcd, kube-apiserver (RBAC, admission), kube-controller-manager (the DaemonSet controller),
kube-scheduler and kubelet v1.34.1; ansible-playbook with kubectl's server-side validation;
sysinv-gpu-conductor with its own RBAC identity, sysinv-gpu-agent, RabbitMQ; intel-gpu-plugin
registered with the real kubelet over its real device-plugin socket.
EMULATED: the GPUs (fake sysfs/devfs) and the container runtime (Kubernetes' fake CRI runtime):
the plugin pod the controller creates is run as a host process with that pod's args.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from demo.cluster_flow import ClusterFlow
from demo.machine import GPUS, LABEL, expected_resources
from localcluster import LocalCluster
from tests.fakes import rabbit

pytestmark = [pytest.mark.incremental, pytest.mark.slow, pytest.mark.ansible]

OTHER_NODE = "worker-1"


@pytest.fixture(scope="module")
def flow(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFlow]:
    root = tmp_path_factory.mktemp("cluster-flow")
    running = ClusterFlow(root, cluster=cluster, transport="amqp", scan_interval=0.5)
    try:
        yield running
    finally:
        running.close()
        rabbit.delete(queues=[running.topic, f"{running.topic}.{running.node}"], exchanges=[running.exchange])
        cluster.kubectl("delete", "node", OTHER_NODE, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "daemonset", "-n", "kube-system", "--all", check=False)
        cluster.kubectl("delete", "pods", "-n", "default", "--all", "--wait=false", check=False)


def _create_api_only_node(flow: ClusterFlow, name: str) -> None:
    """A Node object with no kubelet behind it (the DaemonSet controller still considers it)."""
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}
    flow.kubectl("create", "-f", "-", stdin=json.dumps(node))


def test_cluster_runs_kubernetes_1_34_with_the_machines_dmi_uuid(flow: ClusterFlow,
                                                                 cluster: LocalCluster) -> None:
    flow.start_cluster()
    info = cluster.node()["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.34.1"
    # kubelet read the DMI product_uuid the launcher gave its mount namespace
    assert info["systemUUID"].lower() == cluster.system_uuid.lower()
    version = cluster.get_json("/version")
    assert version["gitVersion"] == "v1.34.1"
    _create_api_only_node(flow, OTHER_NODE)


def test_fake_machine_reports_the_nodes_uuid(flow: ClusterFlow, cluster: LocalCluster) -> None:
    flow.make_sysfs()
    uuid_file = flow.sysfs_root / "class" / "dmi" / "id" / "product_uuid"
    assert uuid_file.read_text().strip() == cluster.system_uuid


def test_conductor_identity_can_label_nodes_and_nothing_else(flow: ClusterFlow) -> None:
    flow.conductor_identity()
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    api = k8s_config.new_client_from_config(config_file=str(flow.conductor_kubeconfig))
    core = k8s.CoreV1Api(api)
    core.patch_node(flow.node, {"metadata": {"labels": {"rbac-probe": "ok"}}})
    core.patch_node(flow.node, {"metadata": {"labels": {"rbac-probe": None}}})
    assert core.list_node().items
    coordination = k8s.CoordinationV1Api(api)
    lease = {"metadata": {"name": "sysinv-gpu-conductor"},
             "spec": {"holderIdentity": "rbac-probe", "leaseDurationSeconds": 1}}
    coordination.create_namespaced_lease("kube-system", lease)
    forbidden: list[tuple[str, Any]] = [
        ("delete a node", lambda: core.delete_node(OTHER_NODE)),
        ("read a secret", lambda: core.list_namespaced_secret("kube-system")),
        ("patch a pod", lambda: core.patch_namespaced_pod("any", "default",
                                                          {"metadata": {"labels": {"a": "b"}}})),
        ("create a node", lambda: core.create_node({"metadata": {"name": "rogue"}})),
        ("read another Lease", lambda: coordination.read_namespaced_lease("kube-controller-manager",
                                                                          "kube-system")),
        ("delete its Lease", lambda: coordination.delete_namespaced_lease("sysinv-gpu-conductor",
                                                                          "kube-system")),
        ("a Lease in another namespace", lambda: coordination.create_namespaced_lease("default", lease)),
    ]
    for what, call in forbidden:
        with pytest.raises(k8s.ApiException) as err:
            call()
        assert err.value.status == 403, f"{what}: {err.value.status} {err.value.reason}"
    # the probe Lease goes: the conductor must win the election with a fresh record
    flow.kubectl("delete", "lease", "-n", "kube-system", "sysinv-gpu-conductor")


def test_bootstrap_applies_the_daemonset_with_server_side_validation(flow: ClusterFlow) -> None:
    detail = flow.run_bootstrap()
    enabled = flow.platform_conf_dir / "enabled_kube_plugins"
    assert json.loads(enabled.read_text()) == {"intel-gpu-plugin": "intelgpu=enabled"}
    assert "DaemonSet kube-system/" in detail
    extra = json.loads((flow.root / "localhost.yml.json").read_text())
    assert extra["bringup_kubemaster_kubectl_validate"] is True
    # nothing labelled yet: the controller creates no pod anywhere
    assert flow.plugin_pods() == []


def test_conductor_labels_the_real_node(flow: ClusterFlow) -> None:
    flow.choose_transport()
    flow.start_sysinv()
    flow.wait_label(present=True, timeout=60)
    assert flow.labels()[LABEL[0]] == LABEL[1]
    assert flow.labels()["kubernetes.io/hostname"] == flow.node


def test_daemonset_controller_and_scheduler_place_the_plugin_on_the_labelled_node_only(
        flow: ClusterFlow) -> None:
    flow.schedule_plugin()
    pod = flow.plugin_pod
    assert pod["spec"]["nodeName"] == flow.node
    owner = pod["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "DaemonSet"
    pods = flow.plugin_pods()
    assert {p["spec"].get("nodeName") for p in pods} == {flow.node}, "a pod for an unlabelled node"
    assert flow.plugin is not None and flow.plugin.alive()


def test_plugin_registers_with_the_real_kubelet(flow: ClusterFlow) -> None:
    flow.wait_allocatable(timeout=60)
    want = expected_resources(GPUS, flow.shared_dev_num)
    assert flow.allocatable == {k: str(v) for k, v in want.items()}
    assert set(want) == {"gpu.intel.com/i915", "gpu.intel.com/xe"}


def test_a_pod_asking_for_a_gpu_gets_its_device_nodes(flow: ClusterFlow, cluster: LocalCluster) -> None:
    flow.run_workload("gpu.intel.com/i915")
    config = flow.created_container
    paths = sorted(d["containerPath"] for d in config.get("devices", []))
    # one i915 VF: its card and render node, nothing of the other GPUs
    assert any(p.startswith("/dev/dri/card") for p in paths), paths
    assert any(p.startswith("/dev/dri/renderD") for p in paths), paths
    assert all(d["hostPath"].startswith(str(flow.devfs_root)) for d in config["devices"]), config["devices"]
    assert all(d.get("permissions") == "rw" for d in config["devices"])
    # what kubelet checkpointed for the pod: our device IDs under the i915 resource
    checkpoint = json.loads((cluster.device_plugin_dir / "kubelet_internal_checkpoint").read_text())
    uid = flow.workload["metadata"]["uid"]
    entries = [e for e in checkpoint["Data"]["PodDeviceEntries"] if e["PodUID"] == uid]
    assert [e["ResourceName"] for e in entries] == ["gpu.intel.com/i915"]
    ids = [i for e in entries for ids in e["DeviceIDs"].values() for i in ids]
    assert len(ids) == 1 and ids[0].startswith("card"), entries
    # kubelet asked our balanced policy first (two IDs per GPU), then Allocate; the CDI name
    # our Allocate returned reached the runtime, and the by-path links are mounted read-only
    preferred = [v for n, lab, v in flow.scrape("plugin")
                 if n == "deviceplugin_preferred_allocation_requests_total" and lab.get("outcome") == "ok"]
    assert sum(preferred) >= 1, flow.scrape("plugin")
    card = ids[0].split("-")[0]
    assert [d["name"] for d in config.get("CDIDevices", [])] == [f"intel.cdi.k8s.io/gpu={card}"]
    assert f"/dev/dri/{card}" in paths
    bypath = [m for m in config.get("mounts", []) if m["containerPath"].startswith("/dev/dri/by-path/")]
    assert bypath and all(m.get("readonly") for m in bypath), config.get("mounts")


def _registrations(flow: ClusterFlow) -> float:
    return sum(v for n, _, v in flow.scrape("plugin") if n == "deviceplugin_registrations_total")


def test_kubelet_restart_the_plugin_registers_again(flow: ClusterFlow, cluster: LocalCluster) -> None:
    before = _registrations(flow)
    cluster.restart_kubelet()  # kubelet wipes its device-plugins dir as it starts
    # both resources register again with the new kubelet, and it reports them again
    flow._wait(lambda: _registrations(flow) >= before + 2, 60, "the plugin to register with the new kubelet")
    flow.wait_allocatable(timeout=60)
    assert (cluster.device_plugin_dir / "gpu.intel.com-i915.sock").exists()


def test_an_unhealthy_gpu_leaves_allocatable(flow: ClusterFlow) -> None:
    want = expected_resources(GPUS, flow.shared_dev_num)
    vf = flow.sysfs_root / "bus" / "pci" / "devices" / "0000:00:02.1"
    (vf / "aer_dev_fatal").write_text("Undefined 0\nTOTAL_ERR_FATAL 1\n")  # the Level-Zero sidecar reads it
    fewer = dict(want, **{"gpu.intel.com/i915": want["gpu.intel.com/i915"] - flow.shared_dev_num})
    flow.wait_allocatable(fewer, timeout=60)
    (vf / "aer_dev_fatal").write_text("Undefined 0\nTOTAL_ERR_FATAL 0\n")
    flow.wait_allocatable(want, timeout=60)


def test_gpu_removed_label_goes_and_the_controller_deletes_the_plugin_pod(flow: ClusterFlow) -> None:
    pod = flow.plugin_pod["metadata"]["name"]
    flow.remove_gpus()
    flow.wait_label(present=False, timeout=60)
    assert LABEL[0] not in flow.labels()
    flow._wait(lambda: all(p["metadata"]["name"] != pod or p["metadata"].get("deletionTimestamp")
                           for p in flow.plugin_pods()), 60, f"the DaemonSet controller to delete {pod}")
    flow.stop_pod_processes()  # kubelet stops the pod's containers
    # the plugin is gone: kubelet keeps the resources at 0 allocatable
    flow._wait(lambda: all(v == "0" for v in flow.allocatable_now().values()), 60,
               "allocatable gpu.intel.com/* back to 0")
