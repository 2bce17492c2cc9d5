"""conductor/kube.py against the emulated Kubernetes API server (tests/fakes/kube_api.py) over
HTTP through the official client: one LIST, systemUUID lookup, merge-patch labels (null
removes), error wrapping (404 -> NodeNotFound, others -> KubeAPIError) and bounded retry.
EMULATED: the API server; the client, HTTP and JSON are real.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from sysinv_ext.common import exception
from sysinv_ext.conductor import kube
from tests.fakes.kube_api import FakeKubeAPI

UUID = "4C4C4544-0042-3510-8051-B4C04F4A4E31"


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(kubeconfig: Path, sleeps: list[float]) -> kube.KubeClient:
    return kube.KubeClient(str(kubeconfig), retry_attempts=3, retry_backoff=0.05, sleep=sleeps.append)


def test_list_nodes_one_request(client: kube.KubeClient, fake_kube: FakeKubeAPI) -> None:
    fake_kube.add_node("worker-0", UUID, {"intelgpu": "enabled"})
    fake_kube.add_node("worker-1", "other")
    fake_kube.clear_records()
    nodes = client.list_nodes()
    assert sorted((n.name, n.system_uuid, dict(n.labels)) for n in nodes) == [
        ("worker-0", UUID.lower(), {"intelgpu": "enabled"}), ("worker-1", "other", {})]
    assert [(r.method, r.path) for r in fake_kube.requests] == [("GET", "/api/v1/nodes")]
    assert kube.find_node(nodes, UUID.lower()).name == "worker-0"  # type: ignore[union-attr]
    assert kube.find_node(nodes, " " + UUID.upper()).name == "worker-0"  # type: ignore[union-attr]
    assert kube.find_node(nodes, "nope") is None
    assert client.find_node(UUID).name == "worker-0"  # type: ignore[union-attr]


def test_node_without_system_uuid_is_not_indexed() -> None:
    nodes = [kube.Node.from_dict({"metadata": {"name": "x"}}), kube.Node.from_dict(
        {"metadata": {"name": "y"}, "status": {"nodeInfo": {"systemUUID": "ABC"}}})]
    assert list(kube.index_by_system_uuid(nodes)) == ["abc"]


def test_patch_sets_and_removes_with_merge_patch(client: kube.KubeClient, fake_kube: FakeKubeAPI) -> None:
    fake_kube.add_node("worker-0", UUID, {"keep": "me", "intelgpu": "old"})
    node = client.patch_node_labels("worker-0", {"intelgpu": "enabled"})
    assert dict(node.labels) == {"keep": "me", "intelgpu": "enabled"}
    node = client.patch_node_labels("worker-0", {"intelgpu": None})
    assert dict(node.labels) == {"keep": "me"}
    assert fake_kube.node_labels("worker-0") == {"keep": "me"}
    assert [(p.content_type, p.body) for p in fake_kube.patches] == [
        ("application/merge-patch+json", {"metadata": {"labels": {"intelgpu": "enabled"}}}),
        ("application/merge-patch+json", {"metadata": {"labels": {"intelgpu": None}}})]
    assert client.get_node("worker-0").labels == {"keep": "me"}


def test_missing_node_is_node_not_found_without_retry(client: kube.KubeClient, fake_kube: FakeKubeAPI,
                                                      sleeps: list[float]) -> None:
    with pytest.raises(exception.NodeNotFound, match="worker-9"):
        client.patch_node_labels("worker-9", {"intelgpu": "enabled"})
    with pytest.raises(exception.NodeNotFound):
        client.get_node("worker-9")
    assert len(fake_kube.patches) == 1 and sleeps == []


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_server_errors_are_retried_with_backoff(client: kube.KubeClient, fake_kube: FakeKubeAPI,
                                                sleeps: list[float], status: int) -> None:
    fake_kube.add_node("worker-0", UUID)
    fake_kube.inject("PATCH", "/nodes/worker-0$", status=status, times=2)
    client.patch_node_labels("worker-0", {"intelgpu": "enabled"})
    assert len(fake_kube.patches) == 3
    assert sleeps == [0.05, 0.1]
    assert fake_kube.node_labels("worker-0") == {"intelgpu": "enabled"}


def test_retries_are_bounded(client: kube.KubeClient, fake_kube: FakeKubeAPI, sleeps: list[float]) -> None:
    fake_kube.add_node("worker-0", UUID)
    fake_kube.inject("PATCH", "/nodes/worker-0$", status=500, times=10)
    with pytest.raises(exception.KubeAPIError, match=r"HTTP 500 .*after 3 tries") as err:
        client.patch_node_labels("worker-0", {"intelgpu": "enabled"})
    assert "worker-0" in str(err.value)
    assert len(fake_kube.patches) == 3 and len(sleeps) == 2


def test_dropped_connections_are_retried(client: kube.KubeClient, fake_kube: FakeKubeAPI,
                                         sleeps: list[float]) -> None:
    fake_kube.add_node("worker-0", UUID)
    fake_kube.inject_drop("GET", "/api/v1/nodes$", times=2)
    assert [n.name for n in client.list_nodes()] == ["worker-0"]
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", [400, 403, 422])
def test_client_errors_are_not_retried(client: kube.KubeClient, fake_kube: FakeKubeAPI,
                                       sleeps: list[float], status: int) -> None:
    fake_kube.add_node("worker-0", UUID)
    fake_kube.inject("PATCH", "/nodes/worker-0$", status=status, times=1)
    with pytest.raises(exception.KubeAPIError, match=f"HTTP {status}"):
        client.patch_node_labels("worker-0", {"intelgpu": "enabled"})
    assert sleeps == []


def test_api_server_gone_is_kube_api_error(kubeconfig: Path, fake_kube: FakeKubeAPI) -> None:
    client = kube.KubeClient(str(kubeconfig), retry_attempts=2, retry_backoff=0.0)
    fake_kube.stop()
    with pytest.raises(exception.KubeAPIError, match="connection error"):
        client.list_nodes()


def test_bad_kubeconfig_is_kube_api_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(exception.KubeAPIError, match="kubeconfig"):
        kube.KubeClient(str(tmp_path / "missing")).list_nodes()
    (tmp_path / "garbage").write_text("::: not yaml [")
    with pytest.raises(exception.KubeAPIError, match="kubeconfig"):
        kube.KubeClient(str(tmp_path / "garbage")).list_nodes()


def test_token_refresh_hook_runs_at_most_once_a_second() -> None:
    now, calls = [100.0], []
    refresh = kube.ThrottledRefresh(calls.append, interval=1.0, clock=lambda: now[0])
    for t in (100.0, 100.4, 100.99, 101.0, 101.5, 103.0):
        now[0] = t
        refresh(t)
    assert calls == [100.0, 101.0, 103.0]


def test_token_kubeconfig_keeps_its_bearer_token_with_the_throttled_hook(client: kube.KubeClient,
                                                                          fake_kube: FakeKubeAPI) -> None:
    fake_kube.add_node("worker-0", UUID)
    configuration = client.api_client().configuration
    assert isinstance(configuration.refresh_api_key_hook, kube.ThrottledRefresh)
    for _ in range(3):
        assert client.get_node("worker-0").name == "worker-0"
        assert configuration.auth_settings()["BearerToken"]["value"] == "Bearer fake-token"
