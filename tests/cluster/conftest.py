"""The real local cluster for tests/cluster (``make test-cluster``).

REAL: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubelet v1.34.1, built
from Kubernetes' Go modules (scripts/build-kube.sh, cached outside the clone). EMULATED: the
container runtime (Kubernetes' fake CRI runtime) and, per test, the GPUs (fake sysfs/devfs).
One cluster serves the whole session: it takes about 10-20 s to start.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from localcluster import LocalCluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as running:
        yield running
