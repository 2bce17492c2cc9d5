"""The whole flow on a REAL local Kubernetes (``make demo-cluster``, tests/cluster/).

Shares the steps of :mod:`demo.flow` where they are the same and replaces the emulated ones:
kube-apiserver, etcd, kube-controller-manager (the DaemonSet controller), kube-scheduler and
kubelet are Kubernetes' own programs (v1.34.1, ``localcluster``). Still EMULATED: the GPUs
(sysfs/devfs trees, tests/fakes/sysfs.py) and the container runtime (Kubernetes' fake CRI
runtime: a "running" container runs nothing). So the plugin pod that the DaemonSet
controller creates and the scheduler binds cannot run our plugin: the flow reads that pod
back from the API and runs the plugin process on the host with the pod's args (paths
pointed at the fake sysfs and the cluster's kubelet dir), as kubelet would have started it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demo import kube
from demo.flow import BIN, REPO, Flow, StepFailed, _flag_int
from demo.machine import LABEL, expected_resources
from localcluster import LocalCluster

KUBECTL = shutil.which("kubectl", path=f"/usr/bin{os.pathsep}{os.environ.get('PATH', '')}") or "kubectl"
CONDUCTOR_RBAC = REPO / "deployments" / "rbac" / "sysinv-gpu-conductor.yaml"
CONDUCTOR_SA = ("kube-system", "sysinv-gpu-conductor")
WORKLOAD_NS = "default"


class ClusterFlow(Flow):
    """One run of the whole flow on a real local cluster; ``close()`` stops the cluster too."""

    def __init__(self, root: Path, *, cluster: LocalCluster | None = None, transport: str | None = None,
                 transport_url: str | None = None, scan_interval: float | None = 0.5) -> None:
        super().__init__(root, transport=transport, transport_url=transport_url, scan_interval=scan_interval)
        self.cluster = cluster
        self._own_cluster = cluster is None
        self.node = cluster.node_name if cluster else "controller-0"
        self.conductor_kubeconfig = self.root / "etc" / "kubernetes" / "sysinv-gpu-conductor.conf"
        self.levelzero: Any = None
        self.levelzero_socket = self.root / "levelzero" / "server.sock"
        self.plugin_pod: dict[str, Any] = {}
        self.workload: dict[str, Any] = {}
        self.created_container: dict[str, Any] = {}

    # -- helpers -----------------------------------------------------------------------------
    def labels(self) -> dict[str, str]:
        return dict(self._cluster.node().get("metadata", {}).get("labels") or {})

    @property
    def _cluster(self) -> LocalCluster:
        if self.cluster is None:
            raise StepFailed("the cluster is not running")
        return self.cluster

    def kubectl(self, *args: str, kubeconfig: Path | None = None, check: bool = True,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = self._cluster.kubectl(*args, kubeconfig=kubeconfig, check=False, input=stdin)
        if check and result.returncode != 0:
            raise StepFailed(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def close(self) -> None:
        super().close()
        if self._own_cluster and self.cluster is not None:
            self.cluster.stop()
            self.cluster = None

    def plugin_pods(self) -> list[dict[str, Any]]:
        """The pods of the applied DaemonSet (by its selector), as the API holds them."""
        meta = self.daemonset.get("metadata", {})
        match = self.daemonset.get("spec", {}).get("selector", {}).get("matchLabels", {})
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        body = self.kubectl("get", "pods", "-n", meta.get("namespace", "kube-system"), "-l", selector,
                            "-o", "json").stdout
        return list(json.loads(body).get("items", []))

    def allocatable_now(self, node: str | None = None) -> dict[str, str]:
        status = self._cluster.node(node).get("status", {})
        return {k: v for k, v in (status.get("allocatable") or {}).items() if k.startswith("gpu.intel.com/")}

    # -- 1. the cluster ----------------------------------------------------------------------
    def start_cluster(self) -> str:
        if self.cluster is None:
            self.cluster = LocalCluster(node_name=self.node)
            self.cluster.start()
        cluster = self.cluster
        # the playbook's kubeconfig, as StarlingX's /etc/kubernetes/admin.conf
        shutil.copyfile(cluster.kubeconfig, self.kubeconfig)
        os.chmod(self.kubeconfig, 0o600)
        self.api = kube.api_client(self.kubeconfig)
        node = cluster.node()
        info = node["status"]["nodeInfo"]
        if LABEL[0] in self.labels():
            raise StepFailed(f"node {self.node} already labelled before the flow started")
        return (f"{cluster.api_url}: kube-apiserver {info['kubeletVersion']}, node {self.node} Ready, "
                f"systemUUID {info['systemUUID']}, runtime {info['containerRuntimeVersion']}")

    # -- 2. the machine: Flow.make_sysfs with the real node's systemUUID -------------------
    def host_uuid(self) -> str:
        return self._cluster.system_uuid

    # -- 3. the conductor's identity ---------------------------------------------------------
    def conductor_identity(self) -> str:
        self.kubectl("apply", "--validate=strict", "-f", str(CONDUCTOR_RBAC))
        ns, name = CONDUCTOR_SA
        token = self.kubectl("create", "token", name, "-n", ns, "--duration=2h").stdout.strip()
        if not token:
            raise StepFailed("kubectl create token returned no token")
        self._cluster.token_kubeconfig(self.conductor_kubeconfig, token, user=f"{ns}:{name}")
        can = self.kubectl("auth", "can-i", "patch", "nodes", kubeconfig=self.conductor_kubeconfig,
                           check=False).stdout.strip()
        cannot = self.kubectl("auth", "can-i", "delete", "nodes", kubeconfig=self.conductor_kubeconfig,
                              check=False).stdout.strip()
        if (can, cannot) != ("yes", "no"):
            raise StepFailed(f"ServiceAccount {ns}/{name}: can patch nodes {can!r}, delete nodes {cannot!r}")
        return (f"{CONDUCTOR_RBAC.relative_to(REPO)} applied; ServiceAccount {ns}/{name} token "
                f"(TokenRequest) in {self.conductor_kubeconfig.name}: patch nodes yes, delete nodes no")

    # -- 4. bootstrap, with the server's validation ------------------------------------------
    def _bootstrap_extra(self, kubectl: str) -> Path:
        extra = super()._bootstrap_extra(kubectl)
        data = json.loads(extra.read_text())
        data["bringup_kubemaster_kubectl_validate"] = True  # a real API server serves OpenAPI
        # two containers share a GPU, the balanced policy picks (kubelet asks
        # GetPreferredAllocation), and the Level-Zero sidecar reports health
        data.update(bringup_kubemaster_gpu_shared_dev_num=2,
                    bringup_kubemaster_gpu_allocation_policy="balanced",
                    bringup_kubemaster_gpu_health_management=True)
        extra.write_text(json.dumps(data, indent=2))
        return extra

    # -- 5. sysinv services with their own identity ------------------------------------------
    def services_kubeconfig(self) -> Path:
        return self.conductor_kubeconfig

    # -- 7. the real DaemonSet controller and scheduler --------------------------------------
    def schedule_plugin(self) -> str:
        start = time.monotonic()

        def bound() -> dict[str, Any] | None:
            for pod in self.plugin_pods():
                if pod.get("spec", {}).get("nodeName") == self.node and not pod["metadata"].get(
                        "deletionTimestamp"):
                    return pod
            return None
        self.plugin_pod = self._wait(bound, 60, f"the DaemonSet's pod bound to {self.node}")
        took = time.monotonic() - start
        containers = {c["name"]: c for c in self.plugin_pod["spec"]["containers"]}
        container = self.plugin_pod["spec"]["containers"][0]
        overrides = self.plugin_overrides(self._cluster.device_plugin_dir)
        sidecar = containers.get("intel-gpu-levelzero")
        if sidecar is not None:  # the pod's health sidecar, on the same fake sysfs
            self.levelzero_socket.parent.mkdir(parents=True, exist_ok=True)
            side_args = kube.local_args(list(sidecar.get("args") or []), {
                "socket": str(self.levelzero_socket), "sysfs-root": str(self.sysfs_root)})
            self.levelzero = self.sup.start("levelzero", [str(BIN / "intel-gpu-levelzero"), *side_args],
                                            env=self.env())
            overrides["levelzero-socket"] = str(self.levelzero_socket)
        args = kube.local_args(list(container.get("args") or []), overrides)
        self.shared_dev_num = _flag_int(args, "shared-dev-num", 1)
        self.plugin = self.sup.start("plugin", [str(BIN / "intel-gpu-plugin"), *args], env=self.env())
        self._require_alive(self.plugin)
        shown = " ".join(args).replace(str(self.root), "$WORK").replace(
            str(self._cluster.workdir), "$CLUSTER")
        return (f"DaemonSet controller created {self.plugin_pod['metadata']['name']} "
                f"({', '.join(containers)}), scheduler bound it to {self.node} ({took:.2f} s); "
                f"plugin pid {self.plugin.pid} {shown}")

    def stop_pod_processes(self) -> None:
        """What kubelet does when the plugin pod goes: its containers stop."""
        for proc in (self.plugin, self.levelzero):
            if proc is not None:
                self.sup.stop(proc)
        self.plugin = self.levelzero = None

    # -- 8. the real kubelet -----------------------------------------------------------------
    def wait_allocatable(self, expected: dict[str, int] | None = None, timeout: float = 60) -> str:
        want = expected if expected is not None else expected_resources(shared_dev_num=self.shared_dev_num)
        want_str = {k: str(v) for k, v in want.items()}
        procs = (self.plugin,) if self.plugin else ()
        self._wait(lambda: self.allocatable_now() == want_str, timeout,
                   f"node {self.node} status.allocatable {want_str}", *procs)
        self.allocatable = self.allocatable_now()
        sockets = sorted(p.name for p in self._cluster.device_plugin_dir.glob("gpu.intel.com-*.sock"))
        return ("kubelet registered " + ", ".join(sockets) + "; node allocatable "
                + ", ".join(f"{k}={v}" for k, v in sorted(self.allocatable.items())))

    # -- 9. a pod asks for a GPU -------------------------------------------------------------
    def run_workload(self, resource: str = "gpu.intel.com/i915", timeout: float = 60) -> str:
        name = f"gpu-workload-{uuid.uuid4().hex[:6]}"
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": WORKLOAD_NS},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "work", "image": "registry.local:9001/busybox:1.36",
                "command": ["sleep", "3600"],
                "resources": {"limits": {resource: "1"}}}]},
        }
        self.kubectl("create", "--validate=strict", "-f", "-", stdin=json.dumps(pod))
        start = time.monotonic()

        def created() -> dict[str, Any] | None:
            for record in self._cluster.cri_records("CreateContainer"):
                meta = record.get("request", {}).get("sandboxConfig", {}).get("metadata", {})
                if meta.get("name") == name and meta.get("namespace") == WORKLOAD_NS:
                    return record
            return None
        record = self._wait(created, timeout, f"kubelet's CreateContainer for pod {name}",
                            *((self.plugin,) if self.plugin else ()))
        took = time.monotonic() - start
        self.workload = json.loads(self.kubectl("get", "pod", name, "-n", WORKLOAD_NS, "-o", "json").stdout)
        self.created_container = record["request"].get("config", {})
        devices = [d.get("containerPath") for d in self.created_container.get("devices", [])]
        cdi = [d.get("name") for d in self.created_container.get("CDIDevices", [])]
        if not any(str(p).startswith("/dev/dri/") for p in devices):
            raise StepFailed(f"CreateContainer for {name} got no /dev/dri device: {self.created_container}")
        return (f"pod {name} ({resource}: 1) on {self.workload['spec'].get('nodeName')}: CreateContainer "
                f"after {took:.2f} s with devices {', '.join(map(str, devices))}"
                + (f", CDI {', '.join(map(str, cdi))}" if cdi else ""))


#: (short name, what the step shows, method) on the real cluster.
CLUSTER_STEPS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("cluster", "real Kubernetes v1.34.1: etcd, apiserver, controllers, scheduler, kubelet",
     ClusterFlow.start_cluster),
    ("sysfs", "fake sysfs/devfs: 2 Intel GPUs + 1 other VGA", ClusterFlow.make_sysfs),
    ("identity", "conductor's RBAC identity (ServiceAccount token)", ClusterFlow.conductor_identity),
    ("bootstrap", "ansible-playbook bootstrap.yml, kubectl with server validation",
     ClusterFlow.run_bootstrap),
    ("transport", "sysinv RPC transport (AMQP or ZeroMQ)", ClusterFlow.choose_transport),
    ("sysinv", "sysinv-gpu-conductor + sysinv-gpu-agent", ClusterFlow.start_sysinv),
    ("label", "conductor labels the node (real API)", ClusterFlow.wait_label),
    ("schedule", "DaemonSet controller + scheduler place the plugin pod", ClusterFlow.schedule_plugin),
    ("allocatable", "plugin registers with the real kubelet", ClusterFlow.wait_allocatable),
    ("workload", "a pod asking for gpu.intel.com/i915 gets a GPU", ClusterFlow.run_workload),
    ("status", "sysinv-gpu-status: GPU <-> label <-> allocatable", ClusterFlow.show_status),
)
