"""The Helm chart under the real helm: lint, every values file we ship, intel/helm-charts'
value names, and schema errors that name the value.

Each shipped values file (deployments/helm/intel-gpu-plugin/ci/) has its expected plugin flags
here, and the flags must be ones our plugin accepts (gpu_plugin.cli parses them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_plugin import cli
from gpu_plugin.common.errors import UsageError
from tests.helm.chart import CHART, HelmError, by_kind, plugin_container, run_helm, template

CI = CHART / "ci"
LEAST_PRIVILEGE = {
    "seLinuxOptions": {"type": "container_device_plugin_t"},
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
BASE = ["-shared-dev-num=1", "-allocation-policy=none"]
#: values file -> the plugin container's args it renders
EXPECTED_ARGS = {
    "default-values.yaml": BASE,
    "levelzero-values.yaml": BASE
    + ["-health-management", "-temp-limit=95", "-gpu-temp-limit=90", "-memory-temp-limit=85", "-v=2"],
    "xpumd-values.yaml": BASE
    + ["-xpumd-endpoint=/run/xpumd/intelxpuinfo.sock", "-xpumd-severity-limit=warning"],
    "fractional-values.yaml": [
        "-shared-dev-num=300",
        "-allocation-policy=none",
        "-enable-monitoring",
        "-resource-manager",
    ],
    "metrics-values.yaml": BASE
    + [
        "-enable-monitoring",
        "-monitoring-mode=split",
        "-allow-ids=0x56a0,0x56a1,0x56a5",
        "-bypath=all",
        "-metrics-address=[$(POD_IP)]:9433",
    ],
    "starlingx-values.yaml": BASE,
    "intel-helm-charts-values.yaml": [
        "-shared-dev-num=10",
        "-allocation-policy=balanced",
        "-enable-monitoring",
        "-deny-ids=0x4680",
        "-bypath=none",
        "-v=2",
    ],
}
SHIPPED = sorted(p.name for p in CI.glob("*.yaml"))
#: -xpumd-severity-limit (upstream PR #2318) reaches gpu_plugin.cli with the plugin branch
#: (3a0e5a1); until that is merged here, the flag is left out of the parse below
SEVERITY_FLAG = "xpumd-severity-limit"


def _accepts(args: list[str]) -> cli.Options | None:
    """The rendered flags parse with our plugin's own flag set."""
    known = set(cli.flagset()._flags)  # noqa: SLF001 - the flag table is what we check against
    args = [a for a in args if a.lstrip("-").split("=", 1)[0] != SEVERITY_FLAG or SEVERITY_FLAG in known]
    try:
        return cli.parse(args + ["-sysfs-root", "/", "-devfs-root", "/"])
    except UsageError as err:  # only -resource-manager's runtime prerequisites may be missing here
        assert "-resource-manager" in args and "prerequisites missing" in str(err), err
        return None


def test_every_shipped_values_file_has_expected_args() -> None:
    assert SHIPPED == sorted(EXPECTED_ARGS)


def test_lint_is_clean(helm: str) -> None:
    out = run_helm(helm, "lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out and "[WARNING]" not in out and "[ERROR]" not in out, out


@pytest.mark.parametrize("values_file", SHIPPED)
def test_lint_is_clean_with_each_values_file(helm: str, values_file: str) -> None:
    out = run_helm(helm, "lint", "--strict", str(CHART), "--values", str(CI / values_file))
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


@pytest.mark.parametrize("values_file", SHIPPED)
def test_values_file_renders_the_expected_args(helm: str, values_file: str) -> None:
    docs = template(helm, files=(CI / values_file,))
    plugin = plugin_container(docs)
    assert plugin["args"] == EXPECTED_ARGS[values_file]
    assert plugin["securityContext"] == LEAST_PRIVILEGE
    assert not {m["mountPath"] for m in plugin["volumeMounts"]} & {"/dev", "/"}
    assert all(
        m.get("readOnly")
        for m in plugin["volumeMounts"]
        if m["mountPath"] in ("/sys", "/dev/dri", "/run/xpumd")
    )
    _accepts(plugin["args"])


def test_intel_helm_charts_values_keep_their_meaning(helm: str) -> None:
    values = yaml.safe_load((CI / "intel-helm-charts-values.yaml").read_text())
    docs = template(helm, files=(CI / "intel-helm-charts-values.yaml",))
    kinds = by_kind(docs)
    pod = kinds["DaemonSet"]["spec"]["template"]["spec"]
    # the given selector replaces StarlingX's label (not merged with it); the architecture is added
    assert pod["nodeSelector"] == {
        "intel.feature.node.kubernetes.io/gpu": "true",
        "kubernetes.io/arch": "amd64",
    }
    assert "tolerations" not in pod  # intel's empty `tolerations:` is allowed and renders nothing
    assert pod["containers"][0]["image"] == "intel/intel-gpu-plugin:0.1.0"
    opts = _accepts(pod["containers"][0]["args"])
    assert opts is not None
    assert (
        opts.scan.shared_dev_num,
        opts.allocation_policy,
        opts.scan.enable_monitoring,
        opts.verbosity,
    ) == (values["sharedDevNum"], values["allocationPolicy"], values["enableMonitoring"], values["logLevel"])
    assert opts.scan.deny_ids == {"0x4680"} and opts.scan.bypath == "none"
    rule = kinds["NodeFeatureRule"]["spec"]["rules"]
    assert {r["labels"]["intel.feature.node.kubernetes.io/gpu"] for r in rule} == {"true"}
    modules = {
        next(iter(f["matchExpressions"]))
        for r in rule
        for f in r["matchFeatures"]
        if f["feature"].startswith("kernel.")
    }
    assert modules == {"i915", "xe"}


def test_levelzero_is_the_only_privileged_container(helm: str) -> None:
    pod = by_kind(template(helm, files=(CI / "levelzero-values.yaml",)))["DaemonSet"]["spec"]["template"][
        "spec"
    ]
    assert [c["name"] for c in pod["containers"] if c["securityContext"].get("privileged")] == [
        "intel-gpu-levelzero"
    ]
    assert pod["containers"][1]["image"] == "intel/intel-gpu-levelzero:0.1.0"
    assert {"name": "levelzerosocket", "emptyDir": {}} in pod["volumes"]


def test_starlingx_values_avoid_the_operator_plugins_nodes(helm: str) -> None:
    pod = by_kind(template(helm, files=(CI / "starlingx-values.yaml",)))["DaemonSet"]["spec"]["template"][
        "spec"
    ]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [
            {
                "matchExpressions": [
                    {"key": "intel.feature.node.kubernetes.io/gpu", "operator": "NotIn", "values": ["true"]}
                ]
            }
        ]
    }
    assert pod["nodeSelector"] == {"intelgpu": "enabled", "kubernetes.io/arch": "amd64"}
    assert pod["containers"][0]["image"] == "registry.local:9001/intel/intel-gpu-plugin:0.1.0"
    assert pod["imagePullSecrets"] == [{"name": "default-registry-key"}]


def test_release_namespace_is_used(helm: str) -> None:
    docs = template(helm, {"resourceManager": True, "sharedDevNum": 2}, namespace="intel-gpu-plugin")
    kinds = by_kind(docs)
    assert kinds["DaemonSet"]["metadata"]["namespace"] == "intel-gpu-plugin"
    assert kinds["ClusterRoleBinding"]["subjects"][0]["namespace"] == "intel-gpu-plugin"


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"sharedDevNum": 0}, "sharedDevNum"),
        ({"sharedDevNum": 1001}, "sharedDevNum"),
        ({"sharedDevNum": "4"}, "sharedDevNum"),
        ({"allocationPolicy": "random"}, "allocationPolicy"),
        ({"monitoringMode": "both"}, "monitoringMode"),
        ({"bypathMode": "some"}, "bypathMode"),
        ({"allowIDs": "56a0"}, "allowIDs"),
        ({"health": {"source": "dcgm"}}, "health/source"),
        ({"health": {"source": "xpumd", "xpumd": {"severityLimit": "info"}}}, "health/xpumd/severityLimit"),
        ({"health": {"source": "xpumd", "xpumd": {"endpoint": "relative.sock"}}}, "health/xpumd/endpoint"),
        ({"metrics": {"enabled": True, "port": 70000}}, "metrics/port"),
        ({"image": {"pullPolicy": "Sometimes"}}, "image/pullPolicy"),
        ({"image": {"digest": "md5:abc"}}, "image/digest"),
        ({"tolerations": [{"key": "x", "effect": "NoRun"}]}, "tolerations/0/effect"),
        ({"shareDevNum": 2}, "shareDevNum"),  # a typo is refused, not ignored
    ],
)
def test_schema_rejects_a_bad_value_naming_it(helm: str, values: dict[str, Any], names: str) -> None:
    with pytest.raises(HelmError) as err:
        template(helm, values)
    message = str(err.value)
    assert "schema" in message and names.split("/")[-1] in message, message
    assert len(message) < 2000, message


@pytest.mark.parametrize(
    ("values", "phrase"),
    [
        (
            {"health": {"source": "xpumd", "temperatureLimits": {"global": 90}}},
            "health.temperatureLimits apply to health.source=levelzero only",
        ),
        ({"resourceManager": True}, "resourceManager needs sharedDevNum > 1 (it is 1)"),
        ({"allowIDs": "0x56a0", "denyIDs": "0x56a1"}, "allowIDs and denyIDs exclude each other"),
        (
            {"nodeFeatureRule": True, "avoidNodeLabels": {"intel.feature.node.kubernetes.io/gpu": "true"}},
            "the plugin would run nowhere",
        ),
    ],
)
def test_conflicting_values_fail_with_one_line(helm: str, values: dict[str, Any], phrase: str) -> None:
    with pytest.raises(HelmError) as err:
        template(helm, values)
    first = str(err.value).splitlines()[0]  # then helm's own "Use --debug flag ..." hint
    assert phrase in first and len(first) < 300, err.value


def test_install_time_validation_is_the_same_schema(helm: str, tmp_path: Path) -> None:
    """``helm install --dry-run=client`` validates values like ``helm template``: no cluster needed."""
    with pytest.raises(HelmError) as err:
        run_helm(helm, "install", "gpu", str(CHART), "--dry-run=client", "--set", "sharedDevNum=0")
    assert "sharedDevNum" in str(err.value)
