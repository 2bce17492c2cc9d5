"""SPEC's import boundaries, checked on the source with the ast module.

Each rule names which modules may import what; a violation lists the file and
the offending import.  The rules are the ones in SPEC.md "Boundaries" and
STYLE.md section 4, plus the layout of gpu_plugin/ (issue 12): each side program in its own
package, as upstream's cmd/<program>; they share only gpu_plugin/common/ and the plugin's pure
discovery code; the plugin core uses no side program except the levelzero stubs (its client)
and the nfdhook's labeler (for -resource-manager, as upstream's plugin uses cmd/internal/labeler).
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


#: side programs, one package each (upstream's cmd/<program>)
PROGRAMS = ("gpu_plugin.levelzero", "gpu_plugin.nfdhook", "gpu_plugin.xpum_sidecar",
            "gpu_plugin.render_device")
#: the plugin's own glue: side programs never import it (scan/cards/deviceplugin.api they may)
PLUGIN_GLUE = ("gpu_plugin.cli", "gpu_plugin.plugin", "gpu_plugin.health", "gpu_plugin.policies",
               "gpu_plugin.cdi", "gpu_plugin.udev", "gpu_plugin.rm", "gpu_plugin.xpumd")


def _side_program_rule(program: str) -> tuple:
    others = tuple(p for p in PROGRAMS if p != program)
    return (f"{program.rsplit('.', 1)[1]}-imports-no-other-program-nor-plugin-glue",
            lambda m: _matches(m, program), others + PLUGIN_GLUE, ())


# (rule id, which importing modules it applies to, forbidden import prefixes, allowed importers
#  [, exempt imports: names (and their parent packages) allowed although a forbidden prefix matches])
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
      "gpu_plugin.health", "gpu_plugin.rm", "gpu_plugin.xpumd", "gpu_plugin.metrics") + PROGRAMS, ()),
    ("common-imports-only-common",
     lambda m: _matches(m, "gpu_plugin.common"),
     ("gpu_plugin",), (), ("gpu_plugin.common",)),
    *[_side_program_rule(p) for p in PROGRAMS],
    ("plugin-core-imports-no-side-program",
     lambda m: _matches(m, "gpu_plugin") and not any(_matches(m, p) for p in PROGRAMS),
     PROGRAMS, (), ("gpu_plugin.levelzero._api", "gpu_plugin.nfdhook.labeler")),
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
    ("kubernetes-only-in-resource-manager-kube-and-dra-kube",
     lambda m: _matches(m, "gpu_plugin"),
     ("kubernetes",), ("gpu_plugin.rm.kube", "gpu_plugin.dra.kube")),
    # the DRA plugin (issue 20): a sibling program over the same discovery; its stubs only in its
    # server, its device/state/slice logic pure, and it shares no glue with the device plugin
    ("dra-stubs-only-in-dra-server",
     lambda m: _matches(m, "gpu_plugin"),
     ("gpu_plugin.dra._api",), ("gpu_plugin.dra.server",)),
    ("dra-devices-state-slices-know-no-grpc-nor-kubernetes",
     lambda m: m in ("gpu_plugin.dra.devices", "gpu_plugin.dra.state", "gpu_plugin.dra.slices",
                     "gpu_plugin.dra.api", "gpu_plugin.dra.driver"),
     ("grpc", "google.protobuf", "kubernetes", "gpu_plugin.dra._api", "gpu_plugin.dra.server",
      "gpu_plugin.dra.kube"), ()),
    ("dra-uses-no-device-plugin-glue",
     lambda m: _matches(m, "gpu_plugin.dra"),
     ("gpu_plugin.plugin", "gpu_plugin.cli", "gpu_plugin.rm", "gpu_plugin.deviceplugin.server",
      "gpu_plugin.deviceplugin.manager", "gpu_plugin.deviceplugin.watch", "gpu_plugin.policies")
     + PROGRAMS, ()),
    ("nothing-imports-the-dra-plugin",
     lambda m: _matches(m, "gpu_plugin") and not _matches(m, "gpu_plugin.dra"),
     ("gpu_plugin.dra",), ()),
    ("database-only-in-db-package",
     lambda m: _matches(m, "sysinv_ext") or _matches(m, "gpu_plugin"),
     ("sqlalchemy", "alembic"), ("sysinv_ext.db",)),
    ("no-eventlet",
     lambda m: True,
     ("eventlet", "gevent", "zerorpc"), ()),
    # sysinv's ZeroMQ wire format is pure; sockets live in zmq_rpc only
    ("zmq-wire-is-pure",
     lambda m: m == "sysinv_ext.common.zmq_wire",
     ("zmq", "oslo_messaging", "sysinv_ext.common.zmq_rpc"), ()),
    ("zmq-sockets-only-in-zmq-rpc",
     lambda m: _matches(m, "sysinv_ext"),
     ("zmq",), ("sysinv_ext.common.zmq_rpc", "sysinv_ext.cmd.conductor",
                "sysinv_ext.common.zmq_curve")),  # zmq_curve: CURVE key files (zmq.auth), no socket
    # one distribution: the sysinv services share the capped metrics HTTP server (issue 21 item 9)
    # with its address parsing, and the deadlock-free signal handling; nothing else of the plugin
    # family (no GPU code)
    ("sysinv-ext-shares-only-the-metrics-server-and-signals",
     lambda m: _matches(m, "sysinv_ext"),
     ("gpu_plugin",), (), ("gpu_plugin.common.metrics_server", "gpu_plugin.common.metrics_http",
                           "gpu_plugin.common.signals")),
    ("production-never-imports-test-doubles",
     lambda m: True,
     ("tests",), ()),
]


def _exempt(name: str, exempt: tuple[str, ...]) -> bool:
    """``name`` is an exempt module, inside one, or a parent package of one (``from pkg import mod``)."""
    return any(_matches(name, e) or e.startswith(name + ".") for e in exempt)


def violations(rule: tuple) -> list[str]:
    _, applies, forbidden, allowed, *rest = rule
    exempt: tuple[str, ...] = rest[0] if rest else ()
    found = []
    for module, path in _production_modules():
        if not applies(module) or any(_matches(module, a) for a in allowed):
            continue
        for name in _imports(path):
            if any(_matches(name, f) for f in forbidden) and not _exempt(name, exempt):
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


def _rule(rule_id: str) -> tuple:
    return next(r for r in RULES if r[0] == rule_id)


def test_layout_rules_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted layout violations are found; the two exempt imports of the plugin core are not."""
    pkg = tmp_path / "gpu_plugin"
    for sub in ("common", "rm", "nfdhook", "render_device"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "common" / "goflags.py").write_text("from gpu_plugin import scan\n"
                                               "from gpu_plugin.common import errors\n")
    (pkg / "rm" / "scanner.py").write_text("from gpu_plugin.nfdhook import labeler\n"
                                           "from gpu_plugin.levelzero._api import levelzero_pb2\n"
                                           "from gpu_plugin.nfdhook.main import main\n")
    (pkg / "render_device" / "main.py").write_text("from gpu_plugin.nfdhook import labeler\n"
                                                   "from gpu_plugin.common.goflags import FlagSet\n")
    (tmp_path / "sysinv_ext").mkdir()
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert violations(_rule("common-imports-only-common")) == [
        "gpu_plugin/common/goflags.py imports gpu_plugin.scan"]
    assert violations(_rule("plugin-core-imports-no-side-program")) == [
        "gpu_plugin/rm/scanner.py imports gpu_plugin.nfdhook.main",
        "gpu_plugin/rm/scanner.py imports gpu_plugin.nfdhook.main.main"]
    assert violations(_rule("render_device-imports-no-other-program-nor-plugin-glue")) == [
        "gpu_plugin/render_device/main.py imports gpu_plugin.nfdhook",
        "gpu_plugin/render_device/main.py imports gpu_plugin.nfdhook.labeler"]


def test_sysinv_zmq_double_shares_no_code_with_sysinv_ext() -> None:
    """tests/fakes/sysinv_zmq.py is written from sysinv's wire format, not from our adapter."""
    path = ROOT / "tests" / "fakes" / "sysinv_zmq.py"
    assert [name for name in _imports(path) if _matches(name, "sysinv_ext")] == []


def test_dra_rules_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted DRA violations are found: the driver importing the client or the stubs, the device
    plugin importing the DRA plugin."""
    pkg = tmp_path / "gpu_plugin"
    (pkg / "dra").mkdir(parents=True)
    for init in (pkg / "__init__.py", pkg / "dra" / "__init__.py"):
        init.write_text("")
    (pkg / "dra" / "driver.py").write_text("import kubernetes\nfrom gpu_plugin.dra._api import dra_v1_pb2\n"
                                          "from gpu_plugin import plugin\n")
    (pkg / "plugin.py").write_text("from gpu_plugin.dra import driver\n")
    (tmp_path / "sysinv_ext").mkdir()
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert violations(_rule("dra-devices-state-slices-know-no-grpc-nor-kubernetes")) == [
        "gpu_plugin/dra/driver.py imports gpu_plugin.dra._api",
        "gpu_plugin/dra/driver.py imports gpu_plugin.dra._api.dra_v1_pb2",
        "gpu_plugin/dra/driver.py imports kubernetes"]
    assert violations(_rule("dra-stubs-only-in-dra-server")) == [
        "gpu_plugin/dra/driver.py imports gpu_plugin.dra._api",
        "gpu_plugin/dra/driver.py imports gpu_plugin.dra._api.dra_v1_pb2"]
    assert violations(_rule("dra-uses-no-device-plugin-glue")) == [
        "gpu_plugin/dra/driver.py imports gpu_plugin.plugin"]
    assert violations(_rule("nothing-imports-the-dra-plugin")) == [
        "gpu_plugin/plugin.py imports gpu_plugin.dra", "gpu_plugin/plugin.py imports gpu_plugin.dra.driver"]
