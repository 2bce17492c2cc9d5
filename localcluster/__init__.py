"""A real local Kubernetes (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
kubelet with Kubernetes' fake CRI runtime) for tests, the demo and the benchmarks.
Knows nothing of GPUs: see cluster.py for what is real and what is not."""
from localcluster.cluster import KUBE_VERSION, LocalCluster, binaries_dir, free_port
from localcluster.process import ClusterError, wait_for

__all__ = ["KUBE_VERSION", "ClusterError", "LocalCluster", "binaries_dir", "free_port", "wait_for"]
