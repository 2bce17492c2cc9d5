"""The role's DaemonSet template and deployments/gpu_plugin describe the same plugin pod.

Renders roles/bringup_kubemaster/templates/intel-gpu-plugin.yaml.j2 with ansible's own Templar
and the role defaults, builds the kustomize base and overlays with the machine's kubectl, and
compares flags, mounts, hostPaths, securityContext, image and nodeSelector (StarlingX's label aside),
and for the resource manager the ServiceAccount's RBAC objects. The overlays' own properties
(flags present, mounts read-only, least-privilege securityContext and RBAC) are checked on the
kustomize output directly, so they hold whatever the role renders.
"""
from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from gpu_plugin import cli
from gpu_plugin.common.errors import UsageError
from gpu_plugin.levelzero import server as levelzero
from tests.ansible.runner import REPO

ROLE = REPO / "roles" / "bringup_kubemaster"
DEPLOYMENTS = REPO / "deployments" / "gpu_plugin"
KUBECTL = shutil.which("kubectl")


RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding")
LEAST_PRIVILEGE = {"seLinuxOptions": {"type": "container_device_plugin_t"}, "readOnlyRootFilesystem": True,
                   "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                   "seccompProfile": {"type": "RuntimeDefault"}}
# What -resource-manager may do: list pods (API server fallback), get nodes/proxy (kubelet's /pods).
RM_RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            {"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}]


def render_all(**overrides: Any) -> list[dict[str, Any]]:
    """Every document the role's template renders with the role defaults plus ``overrides``."""
    variables = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    variables.update(plugin_label_key="intelgpu", plugin_label_value="enabled", ansible_managed="managed")
    variables.update(overrides)
    source = (ROLE / "templates" / "intel-gpu-plugin.yaml.j2").read_text()
    text = Templar(loader=DataLoader(), variables=variables).template(trust_as_template(source))
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert docs[0]["kind"] == "ServiceAccount" and docs[-1]["kind"] == "DaemonSet"
    assert all(d["metadata"]["namespace"] == "kube-system" for d in docs if d["kind"] not in RBAC_KINDS)
    return docs


def render(**overrides: Any) -> dict[str, Any]:
    """The role's DaemonSet with the role defaults plus ``overrides``."""
    return render_all(**overrides)[-1]


def build_all(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize path``: every document."""
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def build(path: Path) -> dict[str, Any]:
    """``kubectl kustomize path`` (or the plain base file without kubectl) -> the DaemonSet."""
    if KUBECTL is None:
        return yaml.safe_load((DEPLOYMENTS / "base" / "intel-gpu-plugin.yaml").read_text())
    (ds,) = [d for d in build_all(path) if d["kind"] == "DaemonSet"]
    return ds


def rbac(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """ClusterRole/ClusterRoleBinding by kind, without fields kustomize or the template add."""
    return {d["kind"]: {k: v for k, v in d.items() if k in ("metadata", "rules", "subjects", "roleRef")}
            for d in docs if d["kind"] in RBAC_KINDS}


def essentials(ds: dict[str, Any]) -> dict[str, Any]:
    pod = ds["spec"]["template"]["spec"]
    token = pod.get("automountServiceAccountToken")
    return {
        "updateStrategy": ds["spec"]["updateStrategy"],
        "automountServiceAccountToken": token,
        # which identity the pod has matters only when its token is mounted
        "serviceAccountName": pod.get("serviceAccountName") if token else None,
        "nodeSelector": {k: v for k, v in pod["nodeSelector"].items() if k != "intelgpu"},
        "annotations": ds["spec"]["template"]["metadata"].get("annotations"),
        "containers": [{key: c.get(key) for key in ("name", "image", "args", "env", "securityContext",
                                                     "resources", "imagePullPolicy", "ports")}
                       | {"volumeMounts": sorted(c["volumeMounts"], key=lambda m: m["name"])}
                       for c in pod["containers"]],
        "volumes": sorted(pod["volumes"], key=lambda v: v["name"]),
    }


def test_defaults_match_the_kustomize_base() -> None:
    role, base = render(), build(DEPLOYMENTS)
    assert essentials(role) == essentials(base)
    pod = role["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["intelgpu"] == "enabled"  # StarlingX's label, set by sysinv
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
            "effect": "NoSchedule"} in pod["tolerations"]
    (plugin,) = pod["containers"]
    assert plugin["args"] == ["-shared-dev-num=1", "-allocation-policy=none"]
    security = plugin["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in security
    mounts = {m["mountPath"]: m.get("readOnly", False) for m in plugin["volumeMounts"]}
    assert mounts == {"/dev/dri": True, "/sys": True, "/var/lib/kubelet/device-plugins": False,
                      "/var/run/cdi": False}
    assert "/dev" not in {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
@pytest.mark.parametrize(("overlay", "overrides"), [
    ("monitoring", {"bringup_kubemaster_gpu_enable_monitoring": True}),
    ("health", {"bringup_kubemaster_gpu_health_management": True}),
    ("metrics", {"bringup_kubemaster_gpu_metrics_port": 9433}),
    ("xpumd", {"bringup_kubemaster_gpu_xpumd_endpoint": "/run/xpumd/intelxpuinfo.sock"}),
    ("fractional_resources", {"bringup_kubemaster_gpu_resource_manager": True,
                              "bringup_kubemaster_gpu_shared_dev_num": 300,
                              "bringup_kubemaster_gpu_enable_monitoring": True}),
])
def test_overlays_match_the_role_options(overlay: str, overrides: dict[str, Any]) -> None:
    role, built = render_all(**overrides), build_all(DEPLOYMENTS / "overlays" / overlay)
    (ds,) = [d for d in built if d["kind"] == "DaemonSet"]
    assert essentials(role[-1]) == essentials(ds)
    assert rbac(role) == rbac(built)


def _plugin(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
    """Built overlay -> (pod spec, plugin container, mountPath -> readOnly)."""
    pod = build(path)["spec"]["template"]["spec"]
    plugin = pod["containers"][0]
    assert plugin["name"] == "intel-gpu-plugin"
    return pod, plugin, {m["mountPath"]: m.get("readOnly", False) for m in plugin["volumeMounts"]}


BASE_MOUNTS = {"/dev/dri": True, "/sys": True, "/var/lib/kubelet/device-plugins": False,
               "/var/run/cdi": False}


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
def test_xpumd_overlay_mounts_only_the_socket_dir_read_only() -> None:
    pod, plugin, mounts = _plugin(DEPLOYMENTS / "overlays" / "xpumd")
    assert plugin["args"] == ["-shared-dev-num=1", "-allocation-policy=none",
                              "-xpumd-endpoint=/run/xpumd/intelxpuinfo.sock",
                              "-xpumd-severity-limit=critical"]
    assert "-health-management" not in plugin["args"]  # the plugin refuses both health sources
    assert mounts == BASE_MOUNTS | {"/run/xpumd": True}
    assert plugin["securityContext"] == LEAST_PRIVILEGE
    assert len(pod["containers"]) == 1 and pod["automountServiceAccountToken"] is False
    assert not [d for d in build_all(DEPLOYMENTS / "overlays" / "xpumd") if d["kind"] in RBAC_KINDS]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
def test_fractional_overlay_is_least_privilege() -> None:
    path = DEPLOYMENTS / "overlays" / "fractional_resources"
    pod, plugin, mounts = _plugin(path)
    assert plugin["args"] == ["-shared-dev-num=300", "-allocation-policy=none", "-enable-monitoring",
                              "-resource-manager"]
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in plugin["env"]} == {
        "NODE_NAME": "spec.nodeName", "HOST_IP": "status.hostIP"}
    # only NFD's features.d is writable beyond the base (the GAS labels file is written there)
    assert mounts == BASE_MOUNTS | {"/var/lib/kubelet/pod-resources": True,
                                    "/var/lib/kubelet/pki/kubelet.crt": True,
                                    "/etc/kubernetes/node-feature-discovery/features.d": False}
    assert plugin["securityContext"] == LEAST_PRIVILEGE
    host_paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert "/var/lib/kubelet/pki" not in host_paths  # never the kubelet's private key
    docs = build_all(path)
    by_kind = {d["kind"]: d for d in docs}
    assert sorted(by_kind) == ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "ServiceAccount"]
    account = by_kind["ServiceAccount"]["metadata"]
    assert pod["serviceAccountName"] == account["name"] and pod["automountServiceAccountToken"] is True
    assert by_kind["DaemonSet"]["metadata"]["namespace"] == account["namespace"]
    assert by_kind["ClusterRole"]["rules"] == RM_RULES
    binding = by_kind["ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                    "namespace": account["namespace"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": by_kind["ClusterRole"]["metadata"]["name"]}


def test_role_rbac_only_with_the_resource_manager() -> None:
    assert [d["kind"] for d in render_all()] == ["ServiceAccount", "DaemonSet"]
    docs = render_all(bringup_kubemaster_gpu_resource_manager=True, bringup_kubemaster_gpu_shared_dev_num=8)
    assert [d["kind"] for d in docs] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]
    assert docs[1]["rules"] == RM_RULES
    assert docs[2]["subjects"] == [{"kind": "ServiceAccount", "name": "intel-device-plugin",
                                    "namespace": "kube-system"}]
    pod = docs[-1]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "intel-device-plugin" and pod["automountServiceAccountToken"] is True
    assert pod["containers"][0]["args"] == ["-shared-dev-num=8", "-allocation-policy=none",
                                            "-resource-manager"]


def test_role_xpumd_endpoint_mounts_its_directory() -> None:
    ds = render(bringup_kubemaster_gpu_xpumd_endpoint="/var/run/xpum/health.sock",
                bringup_kubemaster_gpu_xpumd_severity_limit="warning")
    pod = ds["spec"]["template"]["spec"]
    (plugin,) = pod["containers"]
    assert plugin["args"][-2:] == ["-xpumd-endpoint=/var/run/xpum/health.sock",
                                   "-xpumd-severity-limit=warning"]
    assert {"name": "xpumdsocket", "mountPath": "/var/run/xpum", "readOnly": True} in plugin["volumeMounts"]
    assert {"name": "xpumdsocket", "hostPath": {"path": "/var/run/xpum", "type": "DirectoryOrCreate"}} \
        in pod["volumes"]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
def test_nfd_overlay_selects_nfd_labelled_nodes() -> None:
    pod = build(DEPLOYMENTS / "overlays" / "nfd_labeled_nodes")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"intel.feature.node.kubernetes.io/gpu": "true",
                                   "kubernetes.io/arch": "amd64"}
    assert "-enable-monitoring" in pod["containers"][0]["args"]


def test_image_digest_registry_and_pull_secrets() -> None:
    digest = "sha256:" + "a" * 64
    ds = render(bringup_kubemaster_gpu_image_registry="registry.local:9001",
                bringup_kubemaster_gpu_image_digest=digest,
                bringup_kubemaster_gpu_image_pull_secrets=["default-registry-key"],
                plugin_label_key="gpu.example.com/intel", plugin_label_value="yes")
    pod = ds["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"registry.local:9001/intel/intel-gpu-plugin:0.1.0@{digest}"
    assert pod["imagePullSecrets"] == [{"name": "default-registry-key"}]
    assert pod["nodeSelector"] == {"gpu.example.com/intel": "yes", "kubernetes.io/arch": "amd64"}


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
def test_metrics_overlay_serves_on_the_pod_ip_and_is_annotated() -> None:
    from gpu_plugin.common.metrics_http import parse_address

    pod_template = build(DEPLOYMENTS / "overlays" / "metrics")["spec"]["template"]
    annotations = pod_template["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "9433",
                           "prometheus.io/path": "/metrics"}
    pod, plugin, mounts = _plugin(DEPLOYMENTS / "overlays" / "metrics")
    assert mounts == BASE_MOUNTS and plugin["securityContext"] == LEAST_PRIVILEGE
    (flag,) = [a for a in plugin["args"] if a.startswith("-metrics-address=")]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in plugin["env"]}
    assert env["POD_IP"] == "status.podIP"
    # what kubelet hands the plugin once it expands $(POD_IP), for either address family
    for pod_ip in ("10.244.1.7", "fd00:10:244::7"):
        expanded = flag.removeprefix("-metrics-address=").replace("$(POD_IP)", pod_ip)
        assert parse_address(expanded) == (pod_ip, int(annotations["prometheus.io/port"]))
    assert plugin["ports"] == [{"name": "metrics", "containerPort": 9433, "protocol": "TCP"}]
    assert pod["automountServiceAccountToken"] is False


def test_role_metrics_off_by_default_and_port_checked() -> None:
    pod_template = render()["spec"]["template"]
    assert "annotations" not in pod_template["metadata"]
    assert not any(a.startswith("-metrics-address") for a in pod_template["spec"]["containers"][0]["args"])
    ds = render(bringup_kubemaster_gpu_metrics_port=9500)
    assert ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9500"
    assert ds["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "-metrics-address=[$(POD_IP)]:9500"


def test_role_monitoring_mode_split_is_rendered_single_is_the_default() -> None:
    (plugin,) = render()["spec"]["template"]["spec"]["containers"]
    assert not any(a.startswith("-monitoring-mode") for a in plugin["args"])  # the plugin's default: single
    (plugin,) = render(bringup_kubemaster_gpu_enable_monitoring=True,
                       bringup_kubemaster_gpu_monitoring_mode="split")["spec"]["template"]["spec"]["containers"]
    assert plugin["args"] == ["-shared-dev-num=1", "-allocation-policy=none", "-enable-monitoring",
                              "-monitoring-mode=split"]
    assert _parse_plugin_args(plugin["args"]).scan.monitoring_mode == "split"


# -- upstream's overlays the role has no single option for: built overlay = base (or role) + deltas --

#: upstream's allowlist-arc list: the PCI device IDs of Intel Arc (DG2 / Alchemist) GPUs
ARC_IDS = {"0x56a6", "0x56a5", "0x56a1", "0x56a0", "0x5694", "0x5693", "0x5692", "0x5691", "0x5690", "0x56b3",
           "0x56b2", "0x56a4", "0x56a3", "0x5697", "0x5696", "0x5695", "0x56b1", "0x56b0", "0x56a2", "0x56ba",
           "0x56bc", "0x56bd", "0x56bb"}


def _containers(ess: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in ess["containers"]}


def _parse_plugin_args(args: list[str]) -> cli.Options:
    """The overlay's plugin flags are ones our plugin accepts (roots pointed at existing dirs)."""
    return cli.parse(args + ["-sysfs-root", "/", "-devfs-root", "/"])


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
def test_levelzero_overlay_is_the_health_pod_without_health_management() -> None:
    built = essentials(build(DEPLOYMENTS / "overlays" / "levelzero"))
    role = essentials(render(bringup_kubemaster_gpu_health_management=True))
    _containers(role)["intel-gpu-plugin"]["args"].remove("-health-management")
    assert built == role
    plugin, sidecar = (_containers(built)[n] for n in ("intel-gpu-plugin", "intel-gpu-levelzero"))
    assert not _parse_plugin_args(plugin["args"]).health_management
    assert levelzero._flagset().parse(sidecar["args"])["v"] == 0


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
def test_wsl_overlay_adds_wsl_flags_and_mounts_to_the_levelzero_pod() -> None:
    built = essentials(build(DEPLOYMENTS / "overlays" / "wsl"))
    expected = copy.deepcopy(essentials(build(DEPLOYMENTS / "overlays" / "levelzero")))
    plugin, sidecar = (_containers(expected)[n] for n in ("intel-gpu-plugin", "intel-gpu-levelzero"))
    plugin["args"].append("-wsl")
    sidecar["args"].append("-wsl")
    plugin["volumeMounts"] = sorted(plugin["volumeMounts"] + [
        {"name": "devdxg", "mountPath": "/dev/dxg", "readOnly": True}], key=lambda m: m["name"])
    sidecar["volumeMounts"] = sorted(sidecar["volumeMounts"] + [
        {"name": "wsllib", "mountPath": "/usr/lib/wsl", "readOnly": True}], key=lambda m: m["name"])
    expected["volumes"] = sorted(expected["volumes"] + [
        {"name": "devdxg", "hostPath": {"path": "/dev/dxg", "type": "CharDevice"}},
        {"name": "wsllib", "hostPath": {"path": "/usr/lib/wsl", "type": "DirectoryOrCreate"}}],
        key=lambda v: v["name"])
    assert built == expected
    built_plugin = _containers(built)["intel-gpu-plugin"]
    opts = _parse_plugin_args(built_plugin["args"])
    assert opts.wsl and not opts.health_management and not opts.scan.enable_monitoring  # both refused in WSL
    assert built_plugin["securityContext"] == LEAST_PRIVILEGE
    assert levelzero._flagset().parse(_containers(built)["intel-gpu-levelzero"]["args"])["wsl"] is True


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
def test_allowlist_arc_overlay_allows_only_arc_ids() -> None:
    built = essentials(build(DEPLOYMENTS / "overlays" / "allowlist-arc"))
    role = essentials(render(bringup_kubemaster_gpu_verbosity=2))
    built_args = _containers(built)["intel-gpu-plugin"]["args"]
    opts = _parse_plugin_args(built_args)
    assert opts.scan.allow_ids == ARC_IDS and not opts.scan.deny_ids and opts.verbosity == 2
    # same pod as the role with -v=2, plus the allow list before -v (its IDs in upstream's order)
    allow = [a for a in built_args if a.startswith("-allow-ids=")]
    assert len(allow) == 1
    _containers(role)["intel-gpu-plugin"]["args"].insert(-1, allow[0])
    assert built == role


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
def test_monitoring_shared_dev_nfd_overlay_matches_the_role_but_for_the_node_selector() -> None:
    path = DEPLOYMENTS / "overlays" / "monitoring_shared-dev_nfd"
    built = essentials(build(path))
    role = essentials(render(bringup_kubemaster_gpu_shared_dev_num=30, bringup_kubemaster_gpu_verbosity=2,
                             bringup_kubemaster_gpu_enable_monitoring=True))
    assert built["nodeSelector"] == {"intel.feature.node.kubernetes.io/gpu": "true",
                                     "kubernetes.io/arch": "amd64"}
    assert {k: v for k, v in built.items() if k != "nodeSelector"} == \
        {k: v for k, v in role.items() if k != "nodeSelector"}
    opts = _parse_plugin_args(_containers(built)["intel-gpu-plugin"]["args"])
    assert (opts.scan.shared_dev_num, opts.scan.enable_monitoring, opts.scan.monitoring_mode,
            opts.verbosity) == (30, True, "single", 2)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
@pytest.mark.parametrize("overlay", sorted(p.name for p in (DEPLOYMENTS / "overlays").iterdir()
                                           if p.is_dir()))
def test_every_overlay_passes_flags_the_plugin_accepts(overlay: str) -> None:
    pod = build(DEPLOYMENTS / "overlays" / overlay)["spec"]["template"]["spec"]
    plugin = _containers({"containers": pod["containers"]})["intel-gpu-plugin"]
    try:
        _parse_plugin_args(plugin["args"])
    except UsageError as err:  # only -resource-manager's runtime prerequisites may be missing here
        assert "-resource-manager" in plugin["args"] and "prerequisites missing" in str(err), err


def test_every_overlay_is_checked() -> None:
    """A new overlay needs a role option (parity test above) or a test of its own here."""
    checked = {"monitoring", "health", "xpumd", "fractional_resources", "nfd_labeled_nodes",
               "levelzero", "wsl", "allowlist-arc", "monitoring_shared-dev_nfd", "metrics"}
    assert {p.name for p in (DEPLOYMENTS / "overlays").iterdir() if p.is_dir()} == checked
