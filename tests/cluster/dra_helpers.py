"""Running intel-gpu-dra-plugin against the real local cluster (tests/cluster/test_dra.py, the benchmark).

The plugin runs as a host process, as the DaemonSet's pod would run it: the fake container runtime
runs no containers, so the pod the DaemonSet controller creates (deployments/dra/base) only lends
its identity: a ServiceAccount token bound to that pod (so the API server knows its node, which
the ValidatingAdmissionPolicy of deployments/dra/base/rbac.yaml checks).  The GPUs are a fake
sysfs/devfs (tests/fakes/sysfs.py); kubelet's directories are the cluster's.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from localcluster import LocalCluster, wait_for
from localcluster.process import Program
from tests.fakes.sysfs import FakeSysfs

REPO = Path(__file__).resolve().parent.parent.parent
BASE = REPO / "deployments" / "dra" / "base"
NAMESPACE = "intel-gpu-dra"
SERVICE_ACCOUNT = "intel-gpu-dra-plugin"
DRIVER = "gpu.intel.com"
GIB = 1 << 30

T = TypeVar("T")


def wait(what: str, condition: Callable[[], T], timeout: float = 60, interval: float = 0.05) -> T:
    return wait_for(what, condition, timeout, interval=interval)


def deploy(cluster: LocalCluster) -> dict[str, Any]:
    """Apply deployments/dra/base; return the plugin pod the DaemonSet controller placed on the node."""
    cluster.kubectl("apply", "-k", str(BASE))

    def pod() -> dict[str, Any] | None:
        pods = json.loads(cluster.kubectl("get", "pods", "-n", NAMESPACE, "-l", "app=intel-gpu-dra-plugin",
                                          "-o", "json").stdout)["items"]
        return next((p for p in pods if p["spec"].get("nodeName") == cluster.node_name), None)
    return wait("the DaemonSet's plugin pod on the node", pod, 60)


def plugin_kubeconfig(cluster: LocalCluster, pod: dict[str, Any], path: Path) -> Path:
    """A kubeconfig with the plugin's ServiceAccount token, bound to its pod (and so to its node)."""
    token = cluster.kubectl("create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE, "--duration=2h",
                            "--bound-object-kind=Pod", f"--bound-object-name={pod['metadata']['name']}",
                            f"--bound-object-uid={pod['metadata']['uid']}").stdout.strip()
    return cluster.token_kubeconfig(path, token, user=SERVICE_ACCOUNT)


def fake_machine(root: Path) -> FakeSysfs:
    """Two GPUs (16 GiB and 8 GiB of local memory) and a PF with two VFs: four DRA devices."""
    fs = FakeSysfs(root)
    fs.add_gpu("0000:03:00.0", card=0, render=128, device_id="0x56c0", lmem_total_bytes=16 * GIB)
    fs.add_gpu("0000:04:00.0", card=1, render=129, device_id="0x56c1", lmem_total_bytes=8 * GIB)
    fs.add_gpu("0000:05:00.0", card=2, render=130, device_id="0x56c0", vfs=2)
    return fs


class DraPlugin:
    """One intel-gpu-dra-plugin process; :meth:`restart` keeps its checkpoint and CDI dir."""

    def __init__(self, cluster: LocalCluster, root: Path, kubeconfig: Path, fs: FakeSysfs,
                 scan_interval: float = 0.3) -> None:
        self.cluster = cluster
        self.root = root
        self.kubeconfig = kubeconfig
        self.fs = fs
        self.scan_interval = scan_interval
        self.cdi_dir = root / "cdi"
        self.checkpoint = root / "state" / "prepared-claims.json"
        self.logs: list[Path] = []
        self.program: Program | None = None
        self.extra_args: list[str] = []

    @property
    def endpoint(self) -> Path:
        return Path(self.cluster.kubelet_root_dir) / "plugins" / DRIVER / "dra.sock"

    def argv(self) -> list[str]:
        kubelet = Path(self.cluster.kubelet_root_dir)
        return [sys.executable, "-m", "gpu_plugin.dra", "-node-name", self.cluster.node_name,
                "-kubeconfig", str(self.kubeconfig), "-sysfs-root", self.fs.sysfs_root,
                "-devfs-root", self.fs.devfs_root, "-kubelet-registry-dir", str(kubelet / "plugins_registry"),
                "-kubelet-plugins-dir", str(kubelet / "plugins"), "-cdi-dir", str(self.cdi_dir),
                "-checkpoint", str(self.checkpoint), f"-scan-interval={self.scan_interval}", "-v", "3",
                *self.extra_args]

    def start(self) -> DraPlugin:
        log = self.root / f"dra-plugin-{len(self.logs)}.log"
        self.logs.append(log)
        self.program = Program(f"dra-plugin-{len(self.logs)}", self.argv(), log).start()
        wait("kubelet registered the DRA plugin", lambda: self._check() and "Registered with kubelet" in
             log.read_text(errors="replace"), 60)
        return self

    def _check(self) -> bool:
        assert self.program is not None
        self.program.check_alive()
        return True

    def stop(self) -> None:
        if self.program is not None:
            self.program.stop()
            self.program = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def slices(self) -> list[dict[str, Any]]:
        selector = f"spec.nodeName={self.cluster.node_name},spec.driver={DRIVER}"
        return list(self.cluster.get_json(f"/apis/resource.k8s.io/v1/resourceslices?fieldSelector={selector}")
                    ["items"])

    def devices(self) -> dict[str, dict[str, Any]]:
        return {d["name"]: d for s in self.slices() for d in s["spec"].get("devices") or []}

    def device_names(self) -> list[str]:
        return sorted(d["name"] for s in self.slices() for d in s["spec"].get("devices") or [])
