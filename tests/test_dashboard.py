"""docs/grafana-dashboard.json references only metrics the services really define.

The known names come from the metric definitions themselves: each service's metrics are
registered on a fresh registry and collected, so a renamed metric fails here. Every PromQL
expression is reduced to its metric names (strings, label matchers, ranges, ``by (...)``
groupings, functions and keywords removed) and each name must be a sample a family exposes.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gpu_plugin.deviceplugin.metrics import FrameworkMetrics
from gpu_plugin.levelzero.metrics import levelzero_metrics
from gpu_plugin.metrics import scan_metrics
from gpu_plugin.xpum_sidecar.metrics import sidecar_metrics
from sysinv_ext.agent.metrics import agent_metrics
from sysinv_ext.conductor.metrics import ConductorGauges, conductor_metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",), "summary": ("_count", "_sum", "_created")}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "offset", "bool", "inf", "nan"}


def known_samples() -> set[str]:
    registry = CollectorRegistry()
    FrameworkMetrics(registry)
    scan_metrics(registry)
    levelzero_metrics(registry)
    sidecar_metrics(registry)
    agent_metrics(registry)
    conductor_metrics(registry).observe(ConductorGauges(lambda: 0, lambda: 0, lambda: 0, lambda: True))
    return {family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]}


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)                            # strings
    text = re.sub(r"\{[^}]*\}", "", text)                                    # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                                   # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end():].lstrip().startswith("(") or match.group().lower() in KEYWORDS:
            continue  # a function call or a keyword
        if match.start() and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # the "e" of 1e3
        names.add(match.group())
    return names


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    found = []
    for panel in dashboard["panels"]:
        found += [(panel["title"], t["expr"]) for t in panel.get("targets", [])]
        for inner in panel.get("panels", []):
            found += [(inner["title"], t["expr"]) for t in inner.get("targets", [])]
    return found


def unknown_metrics(dashboard: dict, known: set[str]) -> list[str]:
    return sorted({f"{title}: {name}" for title, expr in expressions(dashboard)
                   for name in metric_names(expr) if name not in known})


def test_dashboard_references_only_existing_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert unknown_metrics(dashboard, known_samples()) == []
    exprs = expressions(dashboard)
    assert len(exprs) >= 15 and all(metric_names(expr) for _, expr in exprs)


def test_dashboard_covers_every_service() -> None:
    used = {name for _, expr in expressions(json.loads(DASHBOARD.read_text())) for name in metric_names(expr)}
    for prefix in ("deviceplugin_", "intel_gpu_plugin_", "sysinv_gpu_agent_", "sysinv_gpu_conductor_",
                   "intel_gpu_levelzero_", "intel_xpumanager_sidecar_"):
        assert any(name.startswith(prefix) for name in used), prefix


@pytest.mark.parametrize(("expr", "names"), [
    ("histogram_quantile(0.99, sum by (le, resource) "
     "(rate(deviceplugin_allocate_duration_seconds_bucket[5m])))",
     {"deviceplugin_allocate_duration_seconds_bucket"}),
    ('time() - sysinv_gpu_agent_last_report_success_timestamp_seconds > 1e3',
     {"sysinv_gpu_agent_last_report_success_timestamp_seconds"}),
    ('sum(rate(a_total{outcome="by (x)"}[1m])) / on (instance) b', {"a_total", "b"}),
])
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_a_misspelled_metric_is_found() -> None:
    dashboard = {"panels": [{"title": "typo", "targets": [{"expr": "sum(deviceplugin_device)"}]}]}
    assert unknown_metrics(dashboard, known_samples()) == ["typo: deviceplugin_device"]
