"""The -resource-manager core over real transports: upstream's TestGetPreferredFractionalAllocation,
TestCreateFractionalResourceResponse* (cmd/gpu_plugin/rm, parent of 281ca081) ported as tables.

Pods come from tests/fakes/kube_api.py (an EMULATED API server) through the official
``kubernetes`` client; device assignments from tests/fakes/podresources.py (an EMULATED kubelet
pod resources gRPC server on a unix socket).  Like upstream's mock, every pod is listed by pod
resources with one container holding no devices unless a case says otherwise.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_plugin.deviceplugin.api import DeviceID, DeviceInfo, DeviceSpec, Mount, ResourceType
from gpu_plugin.rm import RmConfig, RmSetupError
from gpu_plugin.rm.gas import GAS_CARD_ANNOTATION, GAS_TILE_ANNOTATION, GAS_TS_ANNOTATION
from gpu_plugin.rm.kube import ApiServerPods, KubeletPods, NodePods
from gpu_plugin.rm.manager import ResourceManager
from gpu_plugin.rm.podresources import PodResourcesClient
from gpu_plugin.rm.wiring import wire
from tests.fakes.kube_api import FakeKubeAPI
from tests.fakes.podresources import FakeKubeletPodsAPI, FakePodResources

NODE = "TestNode"
NAMES = ("gpu.intel.com/i915", "gpu.intel.com/xe")
I915 = ResourceType("i915")
AVAILABLE4 = ["card0-0", "card0-1", "card1-0", "card1-1"]

# upstream's newMockResourceManager device infos
TREE: dict[DeviceID, DeviceInfo] = {
    DeviceID("card0-0"): DeviceInfo(nodes=(DeviceSpec("containerpath", "hostpath", "rw"),),
                                    mounts=(Mount("", ""),), envs={"more": "coverage"}),
    DeviceID("card1-0"): DeviceInfo(nodes=(DeviceSpec("", "", ""),)),
    DeviceID("card2-0"): DeviceInfo(nodes=(DeviceSpec("", "", ""),)),
}


def pod(name: str = "TestPod", ns: str = "neimspeis", annotations: dict[str, str] | None = None,
        requests: list[dict[str, str]] | None = None, envs: list[dict[str, str]] | None = None,
        phase: str = "Pending", node: str = NODE) -> dict[str, Any]:
    requests = [{"gpu.intel.com/i915": "1"}] if requests is None else requests
    containers = []
    for i, req in enumerate(requests):
        env = [{"name": k, "value": v} for k, v in ((envs or [{}] * len(requests))[i]).items()]
        containers.append({"name": f"c{i}", "resources": {"requests": req}, "env": env})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "annotations": dict(annotations or {})},
            "spec": {"nodeName": node, "containers": containers}, "status": {"phase": phase}}


CARD0 = {GAS_CARD_ANNOTATION: "card0"}
COMPOSITE = {"ZE_FLAT_DEVICE_HIERARCHY": "COMPOSITE"}


class Cluster:
    """Fake API server + fake pod resources + a ResourceManager using both through real clients."""

    def __init__(self, tmp: Path) -> None:
        self.api = FakeKubeAPI().start()
        self.kubeconfig = str(self.api.write_kubeconfig(tmp / "kubeconfig"))
        self.podres = FakePodResources().start()
        self.sleeps: list[float] = []
        self.on_sleep: Any = None

    def add(self, *pods: dict[str, Any], listed: bool = True) -> None:
        for p in pods:
            self.api.put_object(p)
            if listed:
                self.podres.set_pod(p["metadata"]["namespace"], p["metadata"]["name"])

    def rm(self, **kwargs: Any) -> ResourceManager:
        def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            if self.on_sleep is not None:
                self.on_sleep()

        pods = NodePods(ApiServerPods(NODE, self.kubeconfig))
        return ResourceManager(pods, PodResourcesClient(self.podres.socket_path), NAMES,
                               retry_timeout=0.001, sleep=sleep, **kwargs)

    def close(self) -> None:
        self.podres.stop()
        self.api.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.close()


MULTI = {GAS_CARD_ANNOTATION: "card0,card1"}
MULTI2 = {GAS_CARD_ANNOTATION: "card0,card1,card0"}

# upstream's TestGetPreferredFractionalAllocation (its "wrong number of container requests" case is
# framework territory here: kubelet's one-container requests reach the manager one by one)
PREFERRED_CASES = {
    "Proper number of containers with good devices": (
        [pod(annotations=CARD0)], AVAILABLE4, [], 1, ["card0-0"]),
    "Inconsistent devices vs. gas' annotated ones": (
        [pod(annotations=CARD0)], ["card6-0", "card5-1"], [], 1, []),
    "Preferred allocation is with must have device ids": (
        [pod(annotations=MULTI)], AVAILABLE4, ["card0-2"], 2, ["card0-2", "card1-0"]),
    "Duplicate card requesting pod": (
        [pod(annotations=MULTI2)], AVAILABLE4, [], 3, ["card0-0", "card1-0", "card0-1"]),
    "Allocation size is larger than cards assigned": ([pod(annotations=MULTI)], AVAILABLE4, [], 3,
                                                      ["card0-0", "card1-0"]),
    "Monitoring pod is being allocated": (
        [pod(annotations=CARD0, requests=[{"gpu.intel.com/i915_monitoring": "1"}])], ["all"], [], 1, []),
    "Two pods with one without GPU": (
        [pod(annotations=CARD0), pod(name="TestPodLessGpu", requests=[{"gpu.less.com/i915": "1"}])],
        AVAILABLE4, [], 1, ["card0-0"]),
    # ours: the same pod on another node, or already running, is no candidate
    "Pod of another node is ignored": ([pod(annotations=CARD0, node="other")], AVAILABLE4, [], 1, []),
    "Running pod is ignored": ([pod(annotations=CARD0, phase="Running")], AVAILABLE4, [], 1, []),
}


@pytest.mark.parametrize("pods,available,must,size,expected", PREFERRED_CASES.values(),
                         ids=PREFERRED_CASES.keys())
def test_get_preferred_fractional_allocation(cluster: Cluster, pods: list[dict[str, Any]],
                                             available: list[str], must: list[str], size: int,
                                             expected: list[str]) -> None:
    cluster.add(*pods)
    rm = cluster.rm()
    ids = rm.preferred_allocation(I915, [DeviceID(i) for i in available], [DeviceID(i) for i in must], size)
    assert ids == expected


TS2 = {**CARD0, GAS_TS_ANNOTATION: "2"}
TS1 = {**CARD0, GAS_TS_ANNOTATION: "1"}

# upstream's TestCreateFractionalResourceResponse: pods, Allocate's device IDs, success expected
ALLOCATE_CASES = {
    "Request for monitor resource should fail": ([pod(annotations=CARD0)], ["all"], False),
    "Zero pending pods should fail": ([], ["card0-0"], False),
    "Single pending pod without annotations should fail": ([pod()], ["card0-0"], False),
    "Single pending pod should succeed": ([pod(annotations=CARD0)], ["card0-0"], True),
    "Two pending pods without timestamps should fail": (
        [pod(annotations=CARD0), pod(name="TestPod2", annotations=CARD0)], ["card0-0"], False),
    "Two pending pods with timestamps should reduce to one candidate and succeed": (
        [pod(annotations=TS2), pod(name="TestPod2", annotations=TS1)], ["card0-0"], True),
    # ours: a device the scan does not know -> default method, as upstream's createAllocateResponse
    "Unknown device info falls back": ([pod(annotations=CARD0)], ["card0-0", "card9-0"], False),
}


@pytest.mark.parametrize("pods,device_ids,success", ALLOCATE_CASES.values(), ids=ALLOCATE_CASES.keys())
def test_create_fractional_resource_response(cluster: Cluster, pods: list[dict[str, Any]],
                                             device_ids: list[str], success: bool) -> None:
    cluster.add(*pods)
    rm = cluster.rm()
    rm.set_tile_count_per_card(1)
    rm.preferred_allocation(I915, [DeviceID(i) for i in AVAILABLE4], [], 1)
    resp = rm.allocate(I915, [DeviceID(i) for i in device_ids], TREE)
    if not success:
        assert resp is None  # None = the default method (upstream's UseDefaultMethodError)
        return
    assert resp is not None
    assert dict(resp.envs) == {"more": "coverage"}
    assert resp.devices == (DeviceSpec("containerpath", "hostpath", "rw"),)
    assert resp.cdi_devices == ()


def test_timestamps_pick_the_oldest_pod(cluster: Cluster) -> None:
    cluster.add(pod(annotations={GAS_CARD_ANNOTATION: "card1", GAS_TS_ANNOTATION: "2"}),
                pod(name="TestPod2", annotations={GAS_CARD_ANNOTATION: "card0", GAS_TS_ANNOTATION: "1"}),
                pod(name="TestPod3", annotations={GAS_CARD_ANNOTATION: "card1"}))  # no gas-ts: never picked
    rm = cluster.rm()
    assert rm.preferred_allocation(I915, [DeviceID(i) for i in AVAILABLE4], [], 1) == ["card0-0"]
    assert list(rm.assignments()) == ["neimspeis&TestPod2"]


# upstream's TestCreateFractionalResourceResponseWith{OneCardTwoTiles,TwoCardsOneTile,ThreeCardsTwoTiles}
TILE_CASES = {
    "one card two tiles": ({GAS_CARD_ANNOTATION: "card0", GAS_TILE_ANNOTATION: "card0:gt0+gt1"}, 2,
                           ["card0-0"], "0.0,0.1", 1),
    "two cards one tile": ({GAS_CARD_ANNOTATION: "card1,card2",
                            GAS_TILE_ANNOTATION: "card1:gt3,card2:gt4"}, 5,
                           ["card1-0", "card2-0"], "0.3,1.4", 2),
    "three cards two tiles": ({GAS_CARD_ANNOTATION: "card0,card1,card2",
                               GAS_TILE_ANNOTATION: "card0:gt0+gt1,card1:gt2+gt3,card2:gt3+gt4"}, 5,
                              ["card0-0", "card1-0", "card2-0"], "0.0,0.1,1.2,1.3,2.3,2.4", 3),
}


@pytest.mark.parametrize("annotations,tiles,device_ids,mask,devices", TILE_CASES.values(),
                         ids=TILE_CASES.keys())
def test_fractional_response_with_tiles(cluster: Cluster, annotations: dict[str, str], tiles: int,
                                        device_ids: list[str], mask: str, devices: int) -> None:
    cluster.add(pod(annotations=annotations, requests=[{"gpu.intel.com/i915": str(devices)}],
                    envs=[COMPOSITE]))
    rm = cluster.rm()
    rm.set_tile_count_per_card(tiles)
    rm.preferred_allocation(I915, [DeviceID(i) for i in AVAILABLE4 + ["card2-0", "card2-1"]], [], 1)
    resp = rm.allocate(I915, [DeviceID(i) for i in device_ids], TREE)
    assert resp is not None
    assert resp.envs["ZE_AFFINITY_MASK"] == mask
    assert len(resp.devices) == devices


def test_multiple_containers_get_their_own_cards_and_tiles(cluster: Cluster) -> None:
    """Upstream's TestCreateFractionalResourceResponseWithMultipleContainersTileEach sent both
    containers in one request (unsupported -> default).  Kubelet sends them one at a time; here
    pod resources shows container 0 allocated before container 1 is asked for."""
    annotations = {GAS_CARD_ANNOTATION: "card1|card2", GAS_TILE_ANNOTATION: "card1:gt1|card2:gt0"}
    p = pod(annotations=annotations, requests=[{"gpu.intel.com/i915": "1"}] * 2, envs=[COMPOSITE] * 2)
    cluster.add(p, listed=False)
    cluster.podres.set_pod("neimspeis", "TestPod", [{}, {}])
    rm = cluster.rm()
    rm.set_tile_count_per_card(2)
    available = [DeviceID(i) for i in ("card0-0", "card0-1", "card1-0", "card1-1", "card2-0", "card2-1")]
    assert rm.preferred_allocation(I915, available, [], 1) == ["card1-0"]
    first = rm.allocate(I915, [DeviceID("card1-0")], TREE)
    assert first is not None and first.envs["ZE_AFFINITY_MASK"] == "0.1"
    cluster.podres.set_pod("neimspeis", "TestPod", [{"gpu.intel.com/i915": ["card1-0"]}, {}])
    assert rm.preferred_allocation(I915, available, [], 1) == ["card2-0"]
    second = rm.allocate(I915, [DeviceID("card2-0")], TREE)
    assert second is not None and second.envs["ZE_AFFINITY_MASK"] == "0.0"
    assert rm.assignments() == {"neimspeis&TestPod": [(["card1-0"], "0.1"), (["card2-0"], "0.0")]}
    # both containers allocated: nothing pending any more -> default method
    cluster.podres.set_pod("neimspeis", "TestPod", [{"gpu.intel.com/i915": ["card1-0"]},
                                                    {"gpu.intel.com/i915": ["card2-0"]}])
    assert rm.allocate(I915, [DeviceID("card2-0")], TREE) is None


def test_annotations_appearing_during_the_retry_are_used(cluster: Cluster) -> None:
    cluster.add(pod())
    cluster.on_sleep = lambda: cluster.api.put_object(pod(annotations=CARD0))
    rm = cluster.rm()
    assert rm.preferred_allocation(I915, [DeviceID(i) for i in AVAILABLE4], [], 1) == ["card0-0"]
    assert cluster.sleeps == [0.001]


def test_no_preferred_assignment_still_answers_allocate(cluster: Cluster) -> None:
    """Allocate without a prior GetPreferredAllocation: upstream finds no assignment -> default."""
    cluster.add(pod(annotations=CARD0))
    assert cluster.rm().allocate(I915, [DeviceID("card0-0")], TREE) is None


def test_failures_mean_default_never_an_error(cluster: Cluster) -> None:
    cluster.add(pod(annotations=CARD0))
    rm = cluster.rm()
    cluster.podres.fail_next(2)  # pod resources down (both tries)
    assert rm.preferred_allocation(I915, [DeviceID(i) for i in AVAILABLE4], [], 1) == []
    cluster.api.inject("GET", r"^/api/v1/pods$", 500, times=1)  # API server error -> no pending pods
    assert rm.preferred_allocation(I915, [DeviceID(i) for i in AVAILABLE4], [], 1) == []
    assert rm.preferred_allocation(I915, [DeviceID(i) for i in AVAILABLE4], [], 1) == ["card0-0"]
    lists = [r for r in cluster.api.requests if r.path == "/api/v1/pods"]
    assert lists and all(r.query.get("fieldSelector") == [f"spec.nodeName={NODE}"] for r in lists)


def test_fallback_allocator_is_the_default_method(cluster: Cluster) -> None:
    calls: list[list[str]] = []

    class Recorder:  # the fallback's contract is the framework's Allocator protocol
        def allocate(self, resource: ResourceType, device_ids: Any, tree: Any) -> None:
            calls.append(list(device_ids))

    rm = cluster.rm(fallback=Recorder())
    assert rm.allocate(I915, [DeviceID("card0-0")], TREE) is None  # no pending pod
    assert calls == [["card0-0"]]


def test_cleanup_forgets_finished_and_deleted_pods(cluster: Cluster) -> None:
    cluster.add(pod(annotations=CARD0), pod(name="Other", annotations={GAS_CARD_ANNOTATION: "card1"},
                                            phase="Running"))
    rm = cluster.rm()
    rm.preferred_allocation(I915, [DeviceID(i) for i in AVAILABLE4], [], 1)
    rm.cleanup()
    assert list(rm.assignments()) == ["neimspeis&TestPod"]  # still pending: kept
    cluster.api.put_object(pod(annotations=CARD0, phase="Running"))
    rm.cleanup()
    assert list(rm.assignments()) == ["neimspeis&TestPod"]  # running: kept
    cluster.api.put_object(pod(annotations=CARD0, phase="Succeeded"))
    rm.cleanup()
    assert rm.assignments() == {}


def test_cleanup_loop_stops_on_event(cluster: Cluster) -> None:
    rm = cluster.rm(cleanup_interval=0.02)
    stop = threading.Event()
    thread = threading.Thread(target=rm.run_cleanup, args=(stop,))
    thread.start()
    cluster.api.clear_records()
    time.sleep(0.2)  # 0.01..0.03 s per round: several cleanups
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
    assert any(r.path == "/api/v1/pods" for r in cluster.api.requests)


def test_new_resource_manager_without_cluster_access_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream's TestNewResourceManager: no in-cluster config -> error."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(RmSetupError, match="clientset"):
        wire(RmConfig(node_name=NODE), scanner=None, fallback=None, sysfs_root="/")  # type: ignore[arg-type]


# -- kubelet API (https://HOST_IP:10250/pods) first, API server after a failure -------------------

@pytest.fixture
def kubelet_api(tmp_path: Path) -> Iterator[FakeKubeletPodsAPI]:
    api = FakeKubeletPodsAPI(str(tmp_path), NODE).start()
    yield api
    api.stop()


def _kubelet(api: FakeKubeletPodsAPI, **kw: Any) -> KubeletPods:
    return KubeletPods("127.0.0.1", NODE, token_path=api.token_path, cert_path=api.cert_path,
                       port=api.port, **kw)


def test_kubelet_api_is_used_while_it_works(cluster: Cluster, kubelet_api: FakeKubeletPodsAPI) -> None:
    kubelet_api.pods = [pod(name="FromKubelet", annotations=CARD0)]
    cluster.add(pod(name="FromApiServer", annotations=CARD0))
    pods = NodePods(ApiServerPods(NODE, cluster.kubeconfig), _kubelet(kubelet_api))
    assert pods.use_kubelet
    assert list(pods.with_phases(("Pending",))) == ["neimspeis&FromKubelet"]
    kubelet_api.status = 500  # non-timeout error: API server from now on, for good
    assert list(pods.with_phases(("Pending",))) == ["neimspeis&FromApiServer"]
    kubelet_api.status = 200
    assert list(pods.with_phases(("Pending",))) == ["neimspeis&FromApiServer"]
    assert not pods.use_kubelet


def test_kubelet_api_timeouts_are_retried_then_dropped(cluster: Cluster,
                                                      kubelet_api: FakeKubeletPodsAPI) -> None:
    cluster.add(pod(name="FromApiServer", annotations=CARD0))
    pods = NodePods(ApiServerPods(NODE, cluster.kubeconfig), _kubelet(kubelet_api, timeout=0.05))
    assert pods.use_kubelet
    before = kubelet_api.requests
    kubelet_api.delay = 0.3
    assert list(pods.with_phases(("Pending",))) == ["neimspeis&FromApiServer"]
    assert kubelet_api.requests - before == 5  # upstream's kubeletAPIMaxRetries
    assert not pods.use_kubelet


def test_kubelet_api_refusing_the_token_is_not_used(cluster: Cluster,
                                                    kubelet_api: FakeKubeletPodsAPI) -> None:
    kubelet_api.token = "another"
    pods = NodePods(ApiServerPods(NODE, cluster.kubeconfig), _kubelet(kubelet_api))
    assert not pods.use_kubelet
