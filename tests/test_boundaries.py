"""SPEC's import boundaries, checked on the source with the ast module.

Each rule names which modules may import what; a violation lists the file and
the offending import.  The rules are the ones in SPEC.md "Boundaries" and
STYLE.md section 4.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gpu_plugin", "sysinv_ext")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the importing package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod
            for alias in node.names:  # `from pkg import module` imports pkg.module
                yield f"{mod}.{alias.name}"


def _production_modules() -> list[tuple[str, Path]]:
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "_api" in path.parts or "migrations" in path.parts and "versions" in path.parts:
                continue
            found.append((_module_name(path), path))
    return found


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# (rule id, which importing modules it applies to, forbidden import prefixes, allowed importers)
RULES = [
    ("scan-and-policies-know-no-grpc-nor-metrics",
     lambda m: m in ("gpu_plugin.scan", "gpu_plugin.cards", "gpu_plugin.policies"),
     ("grpc", "gpu_plugin.deviceplugin._api", "google.protobuf", "prometheus_client", "gpu_plugin.metrics",
      "gpu_plugin.deviceplugin.metrics"), ()),
    ("kubelet-stubs-only-in-framework-server",
     lambda m: _matches(m, "gpu_plugin"),
     ("gpu_plugin.deviceplugin._api",), ("gpu_plugin.deviceplugin.server",)),
    ("podresources-stubs-only-in-resource-manager",
     lambda m: _matches(m, "gpu_plugin"),
     ("gpu_plugin.rm._api",), ("gpu_plugin.rm",)),
    ("xpumd-stubs-only-in-xpumd-client",
     lambda m: _matches(m, "gpu_plugin"),
     ("gpu_plugin.xpumd._api",), ("gpu_plugin.xpumd",)),
    ("framework-knows-no-gpu",
     lambda m: _matches(m, "gpu_plugin.deviceplugin"),
     ("gpu_plugin.scan", "gpu_plugin.policies", "gpu_plugin.plugin", "gpu_plugin.cli",
      "gpu_plugin.health", "gpu_plugin.levelzero", "gpu_plugin.rm", "gpu_plugin.xpumd",
      "gpu_plugin.metrics"), ()),
    ("agent-reaches-conductor-only-through-rpcapi",
     lambda m: _matches(m, "sysinv_ext.agent"),
     ("sysinv_ext.conductor.manager", "sysinv_ext.conductor.kube", "sysinv_ext.conductor.plugins",
      "sysinv_ext.db", "kubernetes"), ()),
    ("conductor-never-imports-agent",
     lambda m: _matches(m, "sysinv_ext.conductor"),
     ("sysinv_ext.agent",), ()),
    # the conductor's client, and the status command's read-only LIST (it needs status.allocatable)
    ("kubernetes-only-in-conductor-kube-and-status-kube",
     lambda m: _matches(m, "sysinv_ext"),
     ("kubernetes",), ("sysinv_ext.conductor.kube", "sysinv_ext.status.kube")),
    ("status-rows-are-pure",
     lambda m: m == "sysinv_ext.status.rows",
     ("kubernetes", "sqlalchemy", "sysinv_ext.db", "sysinv_ext.status.kube", "oslo_messaging"), ()),
    # the plugin talks to the API server only for -resource-manager (GAS pod annotations)
    ("kubernetes-only-in-resource-manager-kube",
     lambda m: _matches(m, "gpu_plugin"),
     ("kubernetes",), ("gpu_plugin.rm.kube",)),
    ("database-only-in-db-package",
     lambda m: _matches(m, "sysinv_ext") or _matches(m, "gpu_plugin"),
     ("sqlalchemy", "alembic"), ("sysinv_ext.db",)),
    ("no-eventlet",
     lambda m: True,
     ("eventlet",), ()),
    ("production-never-imports-test-doubles",
     lambda m: True,
     ("tests",), ()),
]


def violations(rule: tuple) -> list[str]:
    _, applies, forbidden, allowed = rule
    found = []
    for module, path in _production_modules():
        if not applies(module) or any(_matches(module, a) for a in allowed):
            continue
        for name in _imports(path):
            if any(_matches(name, f) for f in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return sorted(set(found))


@pytest.mark.parametrize("rule", RULES, ids=[r[0] for r in RULES])
def test_boundary(rule: tuple) -> None:
    assert violations(rule) == []


def test_rules_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted violation is found: scan.py importing grpc breaks the first rule."""
    fake_root = tmp_path
    (fake_root / "gpu_plugin").mkdir()
    (fake_root / "gpu_plugin" / "__init__.py").write_text("")
    (fake_root / "gpu_plugin" / "scan.py").write_text("import grpc\nfrom .deviceplugin import _api\n")
    (fake_root / "sysinv_ext").mkdir()
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", fake_root)
    assert violations(RULES[0]) == ["gpu_plugin/scan.py imports gpu_plugin.deviceplugin._api",
                                    "gpu_plugin/scan.py imports grpc"]
