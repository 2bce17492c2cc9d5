"""Renders the chart with the real helm: ``template(helm, values)`` -> the documents."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deployments" / "helm" / "intel-gpu-plugin"
#: labels the chart adds to every object's metadata (Helm's conventions) and the role does not
HELM_LABELS = ("app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "helm.sh/chart")


@functools.cache
def helm_binary() -> str:
    """$STX_HELM, or helm built (once, cached outside the clone) by scripts/build-helm.sh."""
    explicit = os.environ.get("STX_HELM")
    if explicit:
        return explicit
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-helm.sh")], capture_output=True, text=True, timeout=3600
    )
    if proc.returncode != 0:
        reason = f"scripts/build-helm.sh failed: {proc.stderr.strip()[-500:]}"
        if shutil.which("go") is None and os.environ.get("CI") != "true":
            pytest.skip(reason)
        pytest.fail(reason)
    binary = Path(proc.stdout.strip().splitlines()[-1]) / "helm"
    assert os.access(binary, os.X_OK), binary
    return str(binary)


class HelmError(Exception):
    """helm exited non-zero; the message is its stderr."""


def run_helm(helm: str, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run([helm, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise HelmError(proc.stderr.strip() or proc.stdout.strip())
    return proc.stdout


def template(
    helm: str,
    values: dict[str, Any] | None = None,
    *,
    files: tuple[Path, ...] = (),
    namespace: str = "kube-system",
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """``helm template`` with values files, then ``values`` (as a file, so types stay JSON's)."""
    args = ["template", "intel-gpu-plugin", str(chart), "--namespace", namespace]
    for f in files:
        args += ["--values", str(f)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as extra:
        if values is not None:
            json.dump(values, extra)
            extra.flush()
            args += ["--values", extra.name]
        out = run_helm(helm, *args)
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def plugin_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = by_kind(docs)["DaemonSet"]["spec"]["template"]["spec"]
    (plugin,) = [c for c in pod["containers"] if c["name"] == "intel-gpu-plugin"]
    return plugin


def without_helm_labels(doc: dict[str, Any]) -> dict[str, Any]:
    """The object minus the Helm convention labels in its own metadata."""
    doc = json.loads(json.dumps(doc))
    labels = doc["metadata"].get("labels", {})
    for key in HELM_LABELS:
        labels.pop(key, None)
    if "labels" in doc["metadata"] and not labels:
        del doc["metadata"]["labels"]
    return doc
