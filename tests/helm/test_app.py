"""``make app``'s tarball, built from a fresh copy of the tree (what git tracks or would track,
nothing ignored: no .venv, build/ or caches): layout, metadata, checksums, manifests that
``kubectl kustomize`` renders, the packaged chart with the application's overrides, and the
plugin wheel installed offline into a clean venv with its entry points listed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.chart import REPO, by_kind, plugin_container, template

KUBECTL = shutil.which("kubectl")
VERSION = yaml.safe_load((REPO / "deployments" / "helm" / "intel-gpu-plugin" / "Chart.yaml").read_text())[
    "version"
]
WHEEL = f"plugins/k8sapp_intel_gpu_plugin-{VERSION}-py3-none-any.whl"
ENTRY_POINTS = {
    "systemconfig.helm_applications": {"intel-gpu-plugin": "systemconfig.helm_plugins.intel_gpu_plugin"},
    "systemconfig.helm_plugins.intel_gpu_plugin": {
        "001_intel-gpu-plugin": "k8sapp_intel_gpu_plugin.helm.intel_gpu_plugin:IntelGpuPluginHelm"
    },
    "systemconfig.fluxcd.kustomize_ops": {
        "intel-gpu-plugin": "k8sapp_intel_gpu_plugin.kustomize.kustomize_intel_gpu_plugin:"
        "IntelGpuPluginFluxCDKustomizeOperator"
    },
    "systemconfig.app_lifecycle": {
        "intel-gpu-plugin": "k8sapp_intel_gpu_plugin.lifecycle.lifecycle_intel_gpu_plugin:"
        "IntelGpuPluginAppLifecycleOperator"
    },
}


@pytest.fixture(scope="module")
def app(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tarball built by scripts/build_app.py (make app's command) in a fresh copy, unpacked."""
    clone = tmp_path_factory.mktemp("clone")
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    out = clone / "build" / "app"
    proc = subprocess.run(
        [sys.executable, str(clone / "scripts" / "build_app.py"), "--helm", helm, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=clone,
    )
    assert proc.returncode == 0, proc.stderr
    tarball = Path(proc.stdout.strip())
    assert tarball == out / f"intel-gpu-plugin-{VERSION}.tgz"
    assert [p.name for p in out.iterdir()] == [tarball.name]  # no partial file left behind
    unpacked = tmp_path_factory.mktemp("app")
    with tarfile.open(tarball) as tar:
        assert all(not m.name.startswith(("/", "..")) for m in tar.getmembers())
        tar.extractall(unpacked, filter="data")
    assert not (clone / "stx_app" / "build").exists() and not list((clone / "stx_app").glob("*.egg-info"))
    return unpacked


def test_layout(app: Path) -> None:
    files = sorted(p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file())
    assert files == sorted(
        [
            "checksum.md5",
            "metadata.yaml",
            f"charts/intel-gpu-plugin-{VERSION}.tgz",
            WHEEL,
            "fluxcd-manifests/kustomization.yaml",
            "fluxcd-manifests/base/kustomization.yaml",
            "fluxcd-manifests/base/namespace.yaml",
            "fluxcd-manifests/base/helmrepository.yaml",
            "fluxcd-manifests/intel-gpu-plugin/kustomization.yaml",
            "fluxcd-manifests/intel-gpu-plugin/helmrelease.yaml",
            "fluxcd-manifests/intel-gpu-plugin/intel-gpu-plugin-static-overrides.yaml",
            "fluxcd-manifests/intel-gpu-plugin/intel-gpu-plugin-system-overrides.yaml",
        ]
    )


def test_checksums_cover_every_file(app: Path) -> None:
    lines = (app / "checksum.md5").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split("  ", 1)
        listed[name] = digest
    files = {p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file()} - {"checksum.md5"}
    assert set(listed) == files
    for name, digest in listed.items():
        assert hashlib.md5((app / name).read_bytes()).hexdigest() == digest, name


def test_metadata(app: Path) -> None:
    meta = yaml.safe_load((app / "metadata.yaml").read_text())
    assert meta["app_name"] == "intel-gpu-plugin" and meta["app_version"] == VERSION
    k8s = meta["supported_k8s_version"]
    assert (
        [int(x) for x in k8s["minimum"].split(".")]
        <= [1, 34, 1]
        <= [int(x) for x in k8s["maximum"].split(".")]
    )
    assert meta["behavior"]["platform_managed_app"] is True
    triggers = {t["type"] for t in meta["behavior"]["evaluate_reapply"]["triggers"]}
    assert {"unlock", "host-delete", "kube-upgrade-complete"} <= triggers
    assert meta["maintain_user_overrides"] is True


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")
def test_fluxcd_manifests_render(app: Path) -> None:
    def kustomize(path: Path) -> list[dict[str, Any]]:
        out = subprocess.run(
            [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    docs = kustomize(app / "fluxcd-manifests")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert kinds == {
        ("Namespace", "intel-gpu-plugin"),
        ("HelmRepository", "stx-platform"),
        ("HelmRelease", "intel-gpu-plugin"),
        ("Secret", "intel-gpu-plugin-static-overrides"),
        ("Secret", "intel-gpu-plugin-system-overrides"),
    }
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"intel-gpu-plugin"}
    release = next(d for d in docs if d["kind"] == "HelmRelease")
    assert release["spec"]["chart"]["spec"]["version"] == VERSION
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for source in release["spec"]["valuesFrom"]:
        assert source["valuesKey"] in secrets[source["name"]]["data"]
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert {d["kind"] for d in kustomize(app / "fluxcd-manifests" / "intel-gpu-plugin")} == {
        "HelmRelease",
        "Secret",
    }


def test_packaged_chart_with_the_applications_overrides(helm: str, app: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "stx_app"))
    try:
        from k8sapp_intel_gpu_plugin.hosts import Host
        from k8sapp_intel_gpu_plugin.overrides import system_overrides
    finally:
        sys.path.remove(str(REPO / "stx_app"))
    system = tmp_path / "system.yaml"
    system.write_text(
        json.dumps(
            system_overrides([Host("controller-0", "controller", frozenset({"controller", "worker"}))])
        )
    )
    docs = template(
        helm,
        {"sharedDevNum": 4},
        namespace="intel-gpu-plugin",
        chart=app / "charts" / f"intel-gpu-plugin-{VERSION}.tgz",
        files=(
            app / "fluxcd-manifests" / "intel-gpu-plugin" / "intel-gpu-plugin-static-overrides.yaml",
            system,
        ),
    )
    pod = by_kind(docs)["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"registry.local:9001/intel/intel-gpu-plugin:{VERSION}"
    assert pod["nodeSelector"]["intelgpu"] == "enabled"
    assert {t["key"] for t in pod["tolerations"]} == {
        "node-role.kubernetes.io/control-plane",
        "node-role.kubernetes.io/master",
    }
    assert (
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ][0]["matchExpressions"][0]["key"]
        == "intel.feature.node.kubernetes.io/gpu"
    )
    assert plugin_container(docs)["args"][0] == "-shared-dev-num=4"  # a user override on top


def test_wheel_installs_offline_into_a_clean_venv(app: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    # --no-index: no dependencies can be fetched, so the wheel must need none
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", str(app / WHEEL)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    probe = """
import importlib.metadata as md, json
eps = {}
for ep in md.distribution("k8sapp-intel-gpu-plugin").entry_points:
    eps.setdefault(ep.group, {})[ep.name] = ep.value
from k8sapp_intel_gpu_plugin import checks, overrides  # the pure part imports without sysinv
try:
    import k8sapp_intel_gpu_plugin.helm.intel_gpu_plugin
    glue = "imported"
except ModuleNotFoundError as err:
    glue = err.name
print(json.dumps({"eps": eps, "requires": md.requires("k8sapp-intel-gpu-plugin"), "glue": glue}))
"""
    out = json.loads(
        subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path
        ).stdout
    )
    assert out["eps"] == ENTRY_POINTS
    assert not out["requires"]
    assert out["glue"] == "sysinv"  # the sysinv classes need sysinv, and only they do
