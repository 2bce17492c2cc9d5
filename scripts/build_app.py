"""Build the StarlingX application tarball: build/app/intel-gpu-plugin-<version>.tgz.

Layout (as StarlingX's FluxCD applications): metadata.yaml, charts/<chart>-<version>.tgz
(``helm package`` of deployments/helm/intel-gpu-plugin), fluxcd-manifests/ (stx_app/), plugins/
(the k8sapp_intel_gpu_plugin wheel, built with pip) and checksum.md5 (md5sum of every other
file, which ``system application-upload`` verifies). The version is the chart's.
Usage: python scripts/build_app.py [--helm PATH] [--out DIR]; prints the tarball's path.
Written as a small script rather than make rules so the staging dir, the substitutions and
the checksum are in one place and the tests can run it from a fresh clone.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "deployments" / "helm" / "intel-gpu-plugin"
APP = REPO / "stx_app"


def chart_version() -> str:
    match = re.search(r"^version:\s*\"?([^\s\"]+)", (CHART / "Chart.yaml").read_text(), re.MULTILINE)
    if not match:
        raise SystemExit(f"build_app: no version in {CHART / 'Chart.yaml'}")
    return match.group(1)


def find_helm(explicit: str | None) -> str:
    if explicit:
        return explicit
    out = subprocess.run(
        [str(REPO / "scripts" / "build-helm.sh")], check=True, capture_output=True, text=True
    ).stdout
    return str(Path(out.strip().splitlines()[-1]) / "helm")


def run(*cmd: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(
            f"build_app: {' '.join(cmd[:3])} failed: {(result.stderr or result.stdout).strip()[-2000:]}"
        )


def stage(root: Path, helm: str, version: str) -> None:
    (root / "charts").mkdir()
    run(helm, "lint", "--quiet", str(CHART))
    run(helm, "package", str(CHART), "--destination", str(root / "charts"))
    (root / "plugins").mkdir()
    with tempfile.TemporaryDirectory(prefix="k8sapp-src-") as src:
        # a copy, so setuptools' build/ and *.egg-info never land in the clone
        shutil.copytree(
            APP,
            Path(src) / "stx_app",
            ignore=shutil.ignore_patterns("fluxcd-manifests", "__pycache__", "build", "*.egg-info"),
        )
        # offline with the interpreter's own setuptools; where it has none (a Python >= 3.12 venv)
        # pip fetches setuptools from PyPI into an isolated build env
        offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *offline,
            "--wheel-dir", str(root / "plugins"), str(Path(src) / "stx_app"))  # fmt: skip
    (root / "metadata.yaml").write_text((APP / "metadata.yaml").read_text().replace("@APP_VERSION@", version))
    shutil.copytree(APP / "fluxcd-manifests", root / "fluxcd-manifests")
    release = root / "fluxcd-manifests" / "intel-gpu-plugin" / "helmrelease.yaml"
    release.write_text(release.read_text().replace("@CHART_VERSION@", version))
    files = sorted(p for p in root.rglob("*") if p.is_file())
    (root / "checksum.md5").write_text(
        "".join(
            f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}\n" for p in files
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build_app", description=__doc__.splitlines()[0])
    parser.add_argument("--helm", help="helm binary (default: built by scripts/build-helm.sh)")
    parser.add_argument("--out", default=str(REPO / "build" / "app"), help="output directory")
    args = parser.parse_args(argv)
    version = chart_version()
    helm = find_helm(args.helm)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tarball = out / f"intel-gpu-plugin-{version}.tgz"
    with tempfile.TemporaryDirectory(prefix="stx-app-") as tmp:
        root = Path(tmp)
        stage(root, helm, version)
        partial = out / f".{tarball.name}.{os.getpid()}"
        with tarfile.open(partial, "w:gz") as tar:
            for path in sorted(root.iterdir()):
                tar.add(path, arcname=path.name)
        os.replace(partial, tarball)  # atomic: a reader never sees half a tarball
    print(tarball)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
