"""Real ansible-playbook runs of playbooks/bootstrap.yml (roles/bringup_kubemaster) on localhost.

kubectl is the machine's real /usr/bin/kubectl applying to the emulated API server of
tests/fakes/kube_api.py (one per case); a recording fake kubectl is used only for the failure
case. Every case is an inventory host with its own paths under tmp_path, so one run covers many.
The second run passes an explicit ``kube_plugins`` list as JSON extra vars (-e), which overrides
every host's inventory value: it reconfigures the ``dict`` host for real (kubectl apply
"configured") and must not touch the hosts selected by StarlingX's ``k8s_plugins``.
"""
from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.runner import PlayResult, host_vars, run_playbook, write_inventory
from tests.fakes.kube_api import FakeKubeAPI

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")

DEFAULT_FILE = {"intel-gpu-plugin": "intelgpu=enabled"}
XPUMD = "/run/xpumd/intelxpuinfo.sock"
LIST_OVERRIDE = ["intel-gpu-plugin"]  # -e '{"kube_plugins": ["intel-gpu-plugin"]}' in the second run
WRITES = ("POST", "PUT", "PATCH", "DELETE")


class Servers(dict[str, FakeKubeAPI]):
    """Case name -> started fake API server, created on first use."""

    def __init__(self, stack: ExitStack) -> None:
        super().__init__()
        self._stack = stack

    def __missing__(self, key: str) -> FakeKubeAPI:
        self[key] = self._stack.enter_context(FakeKubeAPI())
        return self[key]


@dataclass(frozen=True)
class Deployment:
    """The first ansible-playbook run over every case (good and bad), shared by the tests below."""

    tmp_path: Path
    apis: Servers
    hosts: dict[str, dict[str, Any]]
    result: PlayResult
    kubectl_log: Path


GOOD = ("off", "defaults", "dict", "stx2019", "stx2023")
BAD = ("unknown", "malformed", "toomanyids", "kubectlfails")


def _first_run(tmp_path: Path, stack: ExitStack, cases: tuple[str, ...]) -> Deployment:
    log = tmp_path / "kubectl.log"
    fake_kubectl = tmp_path / "fake-kubectl"
    fake_kubectl.write_text(f'#!/bin/sh\necho "$@" >> {log}\n'
                            'echo "error: fake kubectl: connection refused" >&2\nexit 1\n')
    fake_kubectl.chmod(0o755)
    apis = Servers(stack)
    hosts = {
        "off": _case(tmp_path, apis, "off"),
        "defaults": _case(tmp_path, apis, "defaults", import_plugins=True),
        "dict": _case(tmp_path, apis, "dict", import_plugins=True,
                      kube_plugins={"intel-gpu-plugin": "gpu.example.com/intel=yes"},
                      bringup_kubemaster_allowed_label_keys=["gpu.example.com/intel"],
                      bringup_kubemaster_gpu_shared_dev_num=4,
                      bringup_kubemaster_gpu_enable_monitoring=True,
                      bringup_kubemaster_gpu_xpumd_endpoint=XPUMD),
        "stx2019": _case(tmp_path, apis, "stx2019", k8s_plugins={"intel-gpu-plugin": "intelgpu=enabled"}),
        # a non-empty k8s_plugins deploys even with import_plugins explicitly false (as StarlingX)
        "stx2023": _case(tmp_path, apis, "stx2023", k8s_plugins=["intelgpu"], import_plugins=False),
        # every error of an entry is reported together: unknown name + duplicate (2023 alias form)
        "unknown": _case(tmp_path, apis, "unknown",
                         k8s_plugins=["intel-gpu-plugin", "intel-fpga-plugin", "intelgpu"]),
        # malformed label + bad flag values and combinations
        "malformed": _case(tmp_path, apis, "malformed", import_plugins=True,
                           kube_plugins={"intel-gpu-plugin": "intel gpu=on"},
                           bringup_kubemaster_gpu_shared_dev_num=0,
                           bringup_kubemaster_gpu_resource_manager=True,
                           bringup_kubemaster_gpu_health_management=True,
                           bringup_kubemaster_gpu_xpumd_endpoint="/xpumd.sock",
                           bringup_kubemaster_gpu_metrics_port=70000),
        # above the plugin's own -shared-dev-num bound: the pod would exit 2 (crash loop)
        "toomanyids": _case(tmp_path, apis, "toomanyids", import_plugins=True,
                            bringup_kubemaster_gpu_shared_dev_num=1001),
        "kubectlfails": _case(tmp_path, apis, "kubectlfails", import_plugins=True,
                              kubectl_cmd=str(fake_kubectl)),
    }
    _plugins_file(tmp_path, "off").write_text(json.dumps(DEFAULT_FILE))  # left by an earlier run
    hosts = {name: hosts[name] for name in cases}
    result = run_playbook(write_inventory(tmp_path / "inventory.yml", hosts), workdir=tmp_path)
    return Deployment(tmp_path, apis, hosts, result, log)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The first run over every case, shared by the tests that only read what it did."""
    with ExitStack() as stack:
        yield _first_run(tmp_path_factory.mktemp("role"), stack, GOOD + BAD)


@pytest.fixture
def own_deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A first run of the good cases for a test that changes what was deployed (so the result
    of no other test depends on running before or after it)."""
    with ExitStack() as stack:
        yield _first_run(tmp_path, stack, GOOD)


def _case(tmp_path: Path, apis: Servers, name: str, **overrides: Any) -> dict[str, Any]:
    case_dir = tmp_path / name
    case_dir.mkdir()
    kubeconfig = apis[name].write_kubeconfig(case_dir / "kubeconfig")
    return host_vars(case_dir, kubeconfig, **overrides)


def _plugins_file(tmp_path: Path, name: str) -> Path:
    return tmp_path / name / "etc-platform" / "enabled_kube_plugins"


def _daemonset(api: FakeKubeAPI) -> dict[str, Any] | None:
    return api.get_object("apps/v1", "daemonsets", "intel-gpu-plugin", "kube-system")


def _rendered(tmp_path: Path, name: str) -> dict[str, Any]:
    manifest = tmp_path / name / "manifests" / "intel-gpu-plugin.yaml"
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    assert [d["kind"] for d in docs] == ["ServiceAccount", "DaemonSet"]
    return docs[1]


def _writes(api: FakeKubeAPI) -> list[str]:
    return [f"{r.method} {r.path}" for r in api.requests if r.method in WRITES]


def test_deploys_every_selection_form(deployment: Deployment) -> None:
    tmp_path, apis, result = deployment.tmp_path, deployment.apis, deployment.result
    assert result.rc != 0  # the bad cases fail; the good ones must not
    assert set(result.recap) == set(GOOD + BAD)
    assert {h: result.recap[h]["failed"] for h in GOOD} == dict.fromkeys(GOOD, 0), result.stdout[-3000:]
    assert not _plugins_file(tmp_path, "off").exists()
    assert _daemonset(apis["off"]) is None and not (tmp_path / "off" / "manifests").exists()
    assert result.recap["off"]["changed"] == 1
    expected_files = {"defaults": DEFAULT_FILE, "dict": {"intel-gpu-plugin": "gpu.example.com/intel=yes"},
                      "stx2019": DEFAULT_FILE, "stx2023": ["intelgpu"]}  # 2023 input -> 2023 list
    for name, content in expected_files.items():
        path = _plugins_file(tmp_path, name)
        assert json.loads(path.read_text()) == content, name
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, name
        ds = _daemonset(apis[name])
        assert ds is not None, name
        assert apis[name].get_object("v1", "serviceaccounts", "intel-device-plugin", "kube-system"), name
        assert result.recap[name]["changed"] >= 3, name  # manifest, apply, file
        assert ds["spec"]["template"]["spec"] == _rendered(tmp_path, name)["spec"]["template"]["spec"]
    dict_pod = _daemonset(apis["dict"])["spec"]["template"]["spec"]
    assert dict_pod["nodeSelector"] == {"gpu.example.com/intel": "yes", "kubernetes.io/arch": "amd64"}
    assert dict_pod["containers"][0]["args"] == ["-shared-dev-num=4", "-allocation-policy=none",
                                                 "-enable-monitoring", f"-xpumd-endpoint={XPUMD}",
                                                 "-xpumd-severity-limit=critical"]
    assert {"name": "xpumdsocket", "mountPath": "/run/xpumd", "readOnly": True} \
        in dict_pod["containers"][0]["volumeMounts"]
    default_pod = _daemonset(apis["defaults"])["spec"]["template"]["spec"]
    assert default_pod["nodeSelector"] == {"intelgpu": "enabled", "kubernetes.io/arch": "amd64"}
    assert default_pod["containers"][0]["image"] == "intel/intel-gpu-plugin:0.1.0"


def test_bad_input_fails_before_any_change(deployment: Deployment) -> None:
    tmp_path, apis, result, hosts = deployment.tmp_path, deployment.apis, deployment.result, deployment.hosts
    assert {h: result.recap[h]["failed"] for h in BAD} == dict.fromkeys(BAD, 1)
    assert "unknown plugin 'intel-fpga-plugin'" in result.failures("unknown")
    assert "plugin 'intelgpu' is selected more than once" in result.failures("unknown")
    assert "plugin 'intel-gpu-plugin': label 'intel gpu=on'" in result.failures("malformed")
    malformed = result.failures("malformed")
    assert ("bringup_kubemaster_gpu_shared_dev_num must be 1-1000, the bound of the plugin (got 0)"
            in malformed)
    assert ("bringup_kubemaster_gpu_shared_dev_num must be 1-1000, the bound of the plugin (got 1001)"
            in result.failures("toomanyids"))
    assert ("bringup_kubemaster_gpu_resource_manager needs bringup_kubemaster_gpu_shared_dev_num > 1"
            in malformed)
    assert "bringup_kubemaster_gpu_xpumd_endpoint must be an absolute socket path" in malformed
    assert "bringup_kubemaster_gpu_xpumd_endpoint and bringup_kubemaster_gpu_health_management" in malformed
    assert "bringup_kubemaster_gpu_metrics_port must be 0 (off) or a port 1-65535 (got 70000)" in malformed
    assert "fake kubectl: connection refused" in result.failures("kubectlfails")
    for name in ("unknown", "malformed", "toomanyids"):
        assert result.recap[name]["changed"] == 0, name
        assert not (tmp_path / name / "manifests").exists(), name
    for name in BAD:
        assert not _plugins_file(tmp_path, name).exists(), name
        assert _writes(apis[name]) == [], name
    recorded = deployment.kubectl_log.read_text().split()
    assert recorded[:2] == ["--kubeconfig", hosts["kubectlfails"]["kubeconfig"]]
    assert recorded[2:5] == ["apply", "-f", str(tmp_path / "kubectlfails/manifests/intel-gpu-plugin.yaml")]


def test_rerun_changes_nothing_and_disabling_removes_the_file(own_deployment: Deployment) -> None:
    """Second run: same inventory except defaults -> import_plugins false, plus -e kube_plugins list."""
    tmp_path, apis = own_deployment.tmp_path, own_deployment.apis
    assert own_deployment.result.rc == 0, own_deployment.result.stdout[-3000:]
    hosts = {name: own_deployment.hosts[name] for name in GOOD}
    hosts["defaults"] = {**hosts["defaults"], "import_plugins": False}  # true -> false
    for api in apis.values():
        api.clear_records()
    rerun = run_playbook(write_inventory(tmp_path / "rerun.yml", hosts), "-e",
                         json.dumps({"kube_plugins": LIST_OVERRIDE}), workdir=tmp_path)
    assert rerun.rc == 0, rerun.stdout[-3000:]
    # dict: the extra-vars list replaces its inventory dict -> manifest, apply ("configured"), file
    assert {h: r["changed"] for h, r in rerun.recap.items()} == {**dict.fromkeys(GOOD, 0), "defaults": 1,
                                                                   "dict": 3}
    assert json.loads(_plugins_file(tmp_path, "dict").read_text()) == DEFAULT_FILE
    dict_pod = _daemonset(apis["dict"])["spec"]["template"]["spec"]
    assert dict_pod["nodeSelector"] == {"intelgpu": "enabled", "kubernetes.io/arch": "amd64"}
    assert dict_pod == _rendered(tmp_path, "dict")["spec"]["template"]["spec"]
    assert [w.split()[0] for w in _writes(apis["dict"])] == ["PATCH"]
    # stx2019/stx2023: k8s_plugins still wins over the extra-vars kube_plugins (unchanged, no writes)
    for name in set(GOOD) - {"dict"}:
        assert _writes(apis[name]) == [], name  # kubectl apply found nothing to change
    assert not _plugins_file(tmp_path, "defaults").exists()
    assert _daemonset(apis["defaults"]) is not None  # disabling never deletes workloads (as StarlingX)


def test_check_mode_changes_nothing(tmp_path: Path) -> None:
    with ExitStack() as stack:
        apis = Servers(stack)
        hosts = {"fresh": _case(tmp_path, apis, "fresh", import_plugins=True, kube_plugins=["intelgpu"]),
                 "disabling": _case(tmp_path, apis, "disabling")}
        _plugins_file(tmp_path, "disabling").write_text(json.dumps(DEFAULT_FILE))
        result = run_playbook(write_inventory(tmp_path / "inventory.yml", hosts), "--check", "--diff",
                              workdir=tmp_path)
        assert result.rc == 0, result.stdout[-3000:]
        assert result.recap["fresh"]["changed"] >= 2 and result.recap["disabling"]["changed"] == 1
        assert "-shared-dev-num=1" in result.stdout  # --diff shows the manifest it would write
        assert '"intelgpu": "enabled"' in result.stdout  # list of label keys -> catalog label
        assert not _plugins_file(tmp_path, "fresh").exists()
        assert not (tmp_path / "fresh" / "manifests" / "intel-gpu-plugin.yaml").exists()
        assert _plugins_file(tmp_path, "disabling").exists()
        assert apis["fresh"].requests == []
