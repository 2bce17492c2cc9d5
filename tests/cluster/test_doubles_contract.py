"""Our doubles against the real thing: the same checks on the fake and on Kubernetes v1.34.1.

tests/kube_contract.py (API server: node LIST/WATCH, bookmarks, 410, label patches, Leases,
Node status, Status bodies) and tests/kubelet_contract.py (kubelet's device-plugin
registration) run here twice: ``fake`` (tests/fakes/kube_api.py, tests/fakes/kubelet.py) and
``real`` (the session's LocalCluster: kube-apiserver and kubelet v1.34.1, through the admin
kubeconfig and the fixed /var/lib/kubelet/device-plugins). Where they disagreed, the fake was
fixed (issue 18); tests/test_fake_kube_contract.py keeps the fake half in ``make test``.
"""
from __future__ import annotations

import base64
import json
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import LocalCluster
from tests.fakes.kube_api import FakeKubeAPI
from tests.fakes.kubelet import FakeKubelet
from tests.kube_contract import CHECKS, Target
from tests.kubelet_contract import KUBELET_CHECKS, KubeletTarget
from tests.test_fake_kube_contract import fake_target


def _etcd(cluster: LocalCluster, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """One call of etcd's own v3 JSON gateway (its client URL, plain HTTP on loopback)."""
    request = urllib.request.Request(f"http://127.0.0.1:{cluster.ports.etcd_client}/v3/{method}",
                                     data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.load(response))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def restart_apiserver(cluster: LocalCluster) -> None:
    """Stop kube-apiserver and start it again on the same port and etcd (waits for /readyz)."""
    cluster.restart_apiserver()


def real_too_old_version(cluster: LocalCluster, target: Target) -> str:
    """A resourceVersion the real server has no history for. Compacting etcd is not enough:
    kube-apiserver v1.34.1 serves watches from its watch cache, whose history starts at the
    cache's first LIST (here at the apiserver's start, before any node existed) and only loses
    events once its buffer is full and they are older than 75 s. What a conductor meets in
    practice is an apiserver restart: the cache LISTs afresh and every older version is 410.
    So: note the node LIST's version, write once more, compact etcd, restart the apiserver."""
    old = target.call("GET", "/api/v1/nodes").body["metadata"]["resourceVersion"]
    target.create_lease(target.name("compact"), {"holderIdentity": "compaction"})
    revision = _etcd(cluster, "kv/range", {"key": _b64("/")})["header"]["revision"]
    _etcd(cluster, "kv/compaction", {"revision": revision, "physical": True})
    restart_apiserver(cluster)
    deadline = time.monotonic() + 60
    while target.call("GET", "/api/v1/nodes").status != 200:  # the cache is ready for LISTs
        assert time.monotonic() < deadline, "kube-apiserver did not come back"
        time.sleep(0.2)
    return str(old)


def real_store_raw(cluster: LocalCluster, obj: dict[str, Any]) -> Callable[[], None]:
    """Write ``obj`` (JSON) straight into etcd under the apiserver's key for it."""
    meta = obj["metadata"]
    plural = obj["kind"].lower() + "s"
    key = _b64(f"/registry/{plural}/{meta['namespace'] + '/' if meta.get('namespace') else ''}{meta['name']}")
    _etcd(cluster, "kv/put", {"key": key, "value": _b64(json.dumps(obj))})
    return lambda: _etcd(cluster, "kv/deleterange", {"key": key}) and None


@pytest.fixture(params=["fake", "real"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "fake":
        with FakeKubeAPI() as api:
            fake = fake_target(api, tmp_path)
            yield fake
            fake.cleanup()
        return
    cluster: LocalCluster = request.getfixturevalue("cluster")
    real = Target("real", str(cluster.kubeconfig), lambda: real_too_old_version(cluster, real),
                  lambda obj: real_store_raw(cluster, obj))
    yield real
    real.cleanup()


@pytest.mark.parametrize(("check", "args"), [pytest.param(c, a, id=i) for i, c, a in CHECKS])
def test_kube_api_contract(target: Target, check: Callable[..., None], args: tuple[Any, ...]) -> None:
    check(target, *args)


@pytest.fixture(params=["fake", "real"])
def kubelet(request: pytest.FixtureRequest) -> Iterator[KubeletTarget]:
    if request.param == "fake":
        directory = Path(tempfile.mkdtemp(prefix="fkc-", dir="/tmp"))
        fake = FakeKubelet(directory).start()  # kubelet's own dial timeout (10 s), as the real one
        target = KubeletTarget("fake", directory, fake.restart)
        try:
            yield target
        finally:
            target.cleanup()
            fake.stop()
            shutil.rmtree(directory, ignore_errors=True)
        return
    cluster: LocalCluster = request.getfixturevalue("cluster")
    target = KubeletTarget("real", cluster.device_plugin_dir, cluster.restart_kubelet)
    try:
        yield target
    finally:
        target.cleanup()


@pytest.mark.parametrize("check", [pytest.param(c, id=i) for i, c in KUBELET_CHECKS])
def test_kubelet_contract(kubelet: KubeletTarget, check: Callable[[KubeletTarget], None]) -> None:
    check(kubelet)
