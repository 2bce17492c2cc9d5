"""DRA vs device plugin on the real local cluster: pod created -> container created, p50 over 20 pods.

One LocalCluster (Kubernetes 1.34.1, fake CRI), two plugins on its one node, each with its own fake
GPUs: intel-gpu-dra-plugin (a pod with a ResourceClaim from the ``one-gpu`` template) and
intel-gpu-plugin (a pod with ``gpu.intel.com/i915: 1``).  Each pod is created, timed until the fake
runtime records its CreateContainer (polled every 5 ms), then deleted and waited for before the next
one, so every sample starts from the same idle node; the two kinds alternate so a slow phase of the
machine hits both.  The DRA path adds claim creation from the template (controller-manager), the
allocation in the scheduler and NodePrepareResources (which reads the claim from the API server);
the device-plugin path has kubelet's Allocate over gRPC only.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from benchmarks.common import Result, format_table, percentile
from localcluster import LocalCluster
from localcluster.process import Program
from tests.cluster.dra_helpers import REPO, DraPlugin, deploy, fake_machine, plugin_kubeconfig, wait
from tests.fakes.sysfs import FakeSysfs

SUITE = "dra"
PODS = 20
NS = "default"


def _pod(name: str, dra: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "registry.local:9001/busybox:1.36"}
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if dra:
        container["resources"] = {"claims": [{"name": "gpu"}]}
        spec["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}]
    else:
        container["resources"] = {"limits": {"gpu.intel.com/i915": "1"}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS,
                                                            "labels": {"bench": "dra"}}, "spec": spec}


def _created(cluster: LocalCluster, name: str) -> bool:
    return any(r["request"].get("sandboxConfig", {}).get("metadata", {}).get("name") == name
               for r in cluster.cri_records("CreateContainer"))


def _one(cluster: LocalCluster, core: Any, name: str, dra: bool) -> float:
    body = _pod(name, dra)
    start = time.monotonic()
    core.create_namespaced_pod(NS, body, _preload_content=False)
    wait(f"CreateContainer of {name}", lambda: _created(cluster, name), 120, interval=0.005)
    elapsed = time.monotonic() - start
    core.delete_namespaced_pod(name, NS, _preload_content=False)

    def gone() -> bool:
        try:
            core.read_namespaced_pod(name, NS, _preload_content=False)
        except ApiException as err:
            return err.status == 404
        return False
    wait(f"pod {name} deleted", gone, 120)
    return elapsed


def _device_plugin(cluster: LocalCluster, root: Path) -> Program:
    fs = FakeSysfs(root / "dp-machine")
    fs.add_gpu("0000:13:00.0", card=10, render=140)
    argv = [sys.executable, "-m", "gpu_plugin", "-sysfs-root", fs.sysfs_root, "-devfs-root", fs.devfs_root,
            "-kubelet-dir", str(cluster.device_plugin_dir), "-scan-interval", "1"]
    program = Program("gpu-plugin", argv, root / "gpu-plugin.log").start()

    def allocatable() -> bool:
        program.check_alive()
        return cluster.node().get("status", {}).get("allocatable", {}).get("gpu.intel.com/i915") == "1"
    try:
        wait("gpu.intel.com/i915 allocatable", allocatable, 60)
    except AssertionError as err:
        program.stop()
        raise AssertionError(f"{err}; intel-gpu-plugin: {program.log_tail(10)}") from None
    return program


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-dra-") as tmp, LocalCluster() as cluster:
        root = Path(tmp)
        pod = deploy(cluster)
        kubeconfig = plugin_kubeconfig(cluster, pod, root / "plugin.kubeconfig")
        cluster.kubectl("apply", "-n", NS, "-f", str(REPO / "deployments" / "dra" / "examples" /
                                                     "claim-templates.yaml"))
        dra = DraPlugin(cluster, root, kubeconfig, fake_machine(root / "machine")).start()
        wait("the node's ResourceSlice", dra.slices, 30)
        dp = _device_plugin(cluster, root)
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
        try:
            # one unmeasured pod of each kind: the first pull, the first claim, caches warm
            _one(cluster, core, "warm-dra", True)
            _one(cluster, core, "warm-dp", False)
            samples: dict[bool, list[float]] = {True: [], False: []}
            for i in range(PODS):
                for kind in (True, False):
                    samples[kind].append(_one(cluster, core, f"{'dra' if kind else 'dp'}-{i}", kind))
        finally:
            dp.stop()
            dra.stop()
    ms = {kind: [s * 1000 for s in values] for kind, values in samples.items()}
    return [
        Result(SUITE, f"DRA claim pod created -> container created (p50, {PODS} pods)",
               percentile(ms[True], 50), "ms"),
        Result(SUITE, f"device-plugin pod created -> container created (p50, {PODS} pods)",
               percentile(ms[False], 50), "ms"),
        Result(SUITE, f"DRA claim pod created -> container created (p90, {PODS} pods)",
               percentile(ms[True], 90), "ms"),
        Result(SUITE, f"device-plugin pod created -> container created (p90, {PODS} pods)",
               percentile(ms[False], 90), "ms"),
    ]


if __name__ == "__main__":  # python -m benchmarks.dra
    print(format_table(run()))
