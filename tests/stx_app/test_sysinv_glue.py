"""The entry-point classes as sysinv loads them: helm overrides, kustomize operator, lifecycle.

sysinv itself is not installable here; tests/fakes/sysinv_app stands in for the few base
classes and constants the classes use (written from starlingx/config's code). The lifecycle
check reads nodes, the conductor's Lease and the role's DaemonSet with the official
``kubernetes`` client from the emulated API server (tests/fakes/kube_api.py), as sysinv's
KubeOperator would from the real one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from kubernetes import client as kube_client
from kubernetes import config as kube_config

from tests.fakes import sysinv_app
from tests.fakes.kube_api import FakeKubeAPI

APP = "intel-gpu-plugin"


@pytest.fixture
def sysinv() -> Iterator[dict[str, ModuleType]]:
    with sysinv_app.loaded() as modules:
        yield modules


class DBAPI:
    """sysinv's dbapi: hosts, their PCI devices, chart enabled flags."""

    def __init__(
        self,
        hosts: list[tuple[str, str, str, list[tuple[str, str, str]]]],
        charts_enabled: dict[tuple[str, str, str], bool] | None = None,
    ) -> None:
        self.hosts = [
            SimpleNamespace(id=i, hostname=h, personality=p, subfunctions=s)
            for i, (h, p, s, _) in enumerate(hosts)
        ]
        self.pci = {
            i: [SimpleNamespace(pvendor_id=v, pclass_id=c, driver=d) for v, c, d in devs]
            for i, (_, _, _, devs) in enumerate(hosts)
        }
        self.charts_enabled = charts_enabled or {}

    def ihost_get_list(self) -> list[SimpleNamespace]:
        return self.hosts

    def pci_device_get_all(self, hostid: int) -> list[SimpleNamespace]:
        return self.pci[hostid]


AIO = ("controller-0", "controller", "controller,worker,lowlatency", [("8086", "030000", "i915")])
WORKER_XE = ("worker-0", "worker", "worker", [("8086", "038000", "xe")])


def test_helm_plugin_system_overrides(sysinv: dict[str, ModuleType]) -> None:
    plugin = sysinv["helm"].IntelGpuPluginHelm(SimpleNamespace(dbapi=DBAPI([AIO])))
    overrides = plugin.get_overrides()
    assert list(overrides) == [APP]
    assert overrides[APP]["image"] == {"hub": "registry.local:9001/intel"}
    assert overrides[APP]["nodeSelector"]["intelgpu"] == "enabled"
    assert [t["key"] for t in overrides[APP]["tolerations"]] == [
        "node-role.kubernetes.io/control-plane",
        "node-role.kubernetes.io/master",
    ]
    assert plugin.get_overrides(APP) == overrides[APP]
    standard = sysinv["helm"].IntelGpuPluginHelm(SimpleNamespace(dbapi=DBAPI([WORKER_XE])))
    assert "tolerations" not in standard.get_overrides(APP)
    with pytest.raises(sysinv["exception"].InvalidHelmNamespace, match="kube-system"):
        plugin.get_overrides("kube-system")


@pytest.mark.parametrize(("enabled", "deleted"), [(True, []), (False, [APP])])
def test_kustomize_operator_drops_a_disabled_chart(
    sysinv: dict[str, ModuleType], enabled: bool, deleted: list[str]
) -> None:
    operator = sysinv["kustomize"].IntelGpuPluginFluxCDKustomizeOperator()
    operator.platform_mode_kustomize_updates(DBAPI([], {(APP, APP, APP): enabled}), "normal")
    assert operator.deleted == deleted


class KubeOperator:
    """What the lifecycle operator uses of sysinv's KubeOperator (app_op._kube), over a real
    kubernetes client pointed at the emulated API server."""

    def __init__(self, api: FakeKubeAPI, kubeconfig: str, custom: list[dict[str, Any]]) -> None:
        configuration = kube_client.Configuration()
        kube_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        self.api_client = kube_client.ApiClient(configuration)
        self.custom = custom

    def kube_get_nodes(self) -> list[Any]:
        return list(kube_client.CoreV1Api(self.api_client).list_node().items)

    def _get_kubernetesclient_core(self) -> kube_client.CoreV1Api:
        return kube_client.CoreV1Api(self.api_client)

    def _get_kubernetesclient_apps_v1_api(self) -> kube_client.AppsV1Api:
        return kube_client.AppsV1Api(self.api_client)

    def list_custom_resources(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        assert (group, version, plural) == ("deviceplugin.intel.com", "v1", "gpudeviceplugins")
        return self.custom


def hook(lifecycle_type: str = "check", operation: str = "apply", timing: str = "pre") -> SimpleNamespace:
    return SimpleNamespace(
        lifecycle_type=lifecycle_type, operation=operation, relative_timing=timing, mode="manual", extra={}
    )


def lease(api: FakeKubeAPI, renewed: datetime) -> None:
    api.put_object(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "sysinv-gpu-conductor", "namespace": "kube-system"},
            "spec": {
                "holderIdentity": "controller-0",
                "leaseDurationSeconds": 15,
                "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        }
    )


@pytest.fixture
def kube(tmp_path: Any) -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as api:
        api.write_kubeconfig(tmp_path / "kubeconfig")
        yield api


def run_hook(
    sysinv: dict[str, ModuleType],
    api: FakeKubeAPI,
    kubeconfig: str,
    hosts: list[Any],
    info: SimpleNamespace,
    custom: list[dict[str, Any]] | None = None,
) -> None:
    app_op = SimpleNamespace(_kube=KubeOperator(api, kubeconfig, custom or []), _dbapi=DBAPI(hosts))
    operator = sysinv["lifecycle"].IntelGpuPluginAppLifecycleOperator()
    operator.app_lifecycle_actions(
        None, SimpleNamespace(dbapi=DBAPI(hosts)), app_op, SimpleNamespace(name=APP), info
    )


def test_lifecycle_refuses_without_a_labelled_node_and_says_the_conductor_is_down(
    sysinv: dict[str, ModuleType], kube: FakeKubeAPI, tmp_path: Any
) -> None:
    kube.add_node("worker-0", "uuid-0")
    with pytest.raises(sysinv["exception"].LifecycleSemanticCheckException) as err:
        run_hook(sysinv, kube, str(tmp_path / "kubeconfig"), [WORKER_XE], hook())
    message = str(err.value)
    assert "refused: no host has reported an Intel GPU" in message
    assert "sysinv-gpu-conductor is not running: no Lease kube-system/sysinv-gpu-conductor" in message
    assert "Intel GPUs on worker-0: is sysinv-gpu-agent running there?" in message
    assert sysinv["lifecycle_base"].AppLifecycleOperator.base_calls == []


def test_lifecycle_allows_a_labelled_node_with_a_live_conductor(
    sysinv: dict[str, ModuleType], kube: FakeKubeAPI, tmp_path: Any
) -> None:
    kube.add_node("worker-0", "uuid-0", {"intelgpu": "enabled"})
    lease(kube, datetime.now(timezone.utc) - timedelta(seconds=2))
    run_hook(sysinv, kube, str(tmp_path / "kubeconfig"), [WORKER_XE], hook())
    assert sysinv["lifecycle_base"].AppLifecycleOperator.base_calls == [("check", "apply", "pre")]


def test_lifecycle_refuses_beside_another_gpu_plugin(
    sysinv: dict[str, ModuleType], kube: FakeKubeAPI, tmp_path: Any
) -> None:
    kube.add_node("worker-0", "uuid-0", {"intelgpu": "enabled"})
    lease(kube, datetime.now(timezone.utc))
    exc = sysinv["exception"].LifecycleSemanticCheckException
    with pytest.raises(exc, match="GpuDevicePlugin gpudeviceplugin-sample"):
        run_hook(
            sysinv,
            kube,
            str(tmp_path / "kubeconfig"),
            [WORKER_XE],
            hook(),
            custom=[{"metadata": {"name": "gpudeviceplugin-sample"}}],
        )
    kube.put_object(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "intel-gpu-plugin", "namespace": "kube-system"},
            "spec": {},
        }
    )
    with pytest.raises(exc, match="bootstrap role's DaemonSet kube-system/intel-gpu-plugin"):
        run_hook(sysinv, kube, str(tmp_path / "kubeconfig"), [WORKER_XE], hook())


def test_lifecycle_checks_only_before_apply(
    sysinv: dict[str, ModuleType], kube: FakeKubeAPI, tmp_path: Any
) -> None:
    for info in (hook("operation", "apply", "post"), hook("check", "remove", "pre")):
        run_hook(sysinv, kube, str(tmp_path / "kubeconfig"), [], info)  # nothing labelled: no refusal
    assert sysinv["lifecycle_base"].AppLifecycleOperator.base_calls == [
        ("operation", "apply", "post"),
        ("check", "remove", "pre"),
    ]
