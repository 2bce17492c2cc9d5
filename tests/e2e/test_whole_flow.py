"""The whole flow of SPEC.md, end to end, through ``demo.flow`` (the same steps as ``make demo``).

REAL: ansible-playbook + /usr/bin/kubectl, sysinv-gpu-conductor, sysinv-gpu-agent and
intel-gpu-plugin as separate processes, RabbitMQ (when down: oslo.messaging's fake driver with agent
and conductor in this process), SQLite, kubelet gRPC over unix sockets.
EMULATED: sysfs/devfs (no GPU), the Kubernetes API server, kubelet, and the DaemonSet controller.
Then the reverse: the GPUs are unplugged, the label goes and the plugin advertises nothing.
"""
from __future__ import annotations

import json
import stat

import pytest

from demo import kube
from demo.flow import Flow
from demo.machine import GPUS, HOST_UUID, LABEL, NODE, expected_resources

pytestmark = [pytest.mark.incremental, pytest.mark.slow, pytest.mark.ansible]


def test_fake_machine_has_two_intel_gpus_and_a_foreign_vga(flow: Flow) -> None:
    flow.make_sysfs()
    uuid_file = flow.sysfs_root / "class" / "dmi" / "id" / "product_uuid"
    assert uuid_file.read_text().strip() == HOST_UUID
    cards = sorted(p.name for p in (flow.sysfs_root / "class" / "drm").iterdir() if p.name.startswith("card"))
    # i915 PF card0 + VFs card1, card2; xe card3; the non-Intel card4
    assert cards == ["card0", "card1", "card2", "card3", "card4"]


def test_node_starts_unlabelled(flow: Flow) -> None:
    flow.start_kube_api()
    node = flow.kube_api.get_node(NODE)
    assert node["status"]["nodeInfo"]["systemUUID"] == HOST_UUID.upper()
    assert LABEL[0] not in flow.labels()


def test_bootstrap_applies_daemonset_and_writes_enabled_plugins(flow: Flow) -> None:
    flow.run_bootstrap()
    enabled = flow.platform_conf_dir / "enabled_kube_plugins"
    assert json.loads(enabled.read_text()) == {"intel-gpu-plugin": "intelgpu=enabled"}
    assert stat.S_IMODE(enabled.stat().st_mode) == 0o640
    assert kube.node_selector(flow.daemonset)["intelgpu"] == "enabled"
    assert flow.daemonset["metadata"]["namespace"] == "kube-system"
    # the node is not labelled yet, so the DaemonSet would not schedule anywhere
    assert not kube.selector_matches(kube.node_selector(flow.daemonset), flow.labels())


def test_sysinv_services_start(flow: Flow) -> None:
    detail = flow.choose_transport()
    assert ("RabbitMQ" in detail) == flow.transport_url.startswith("rabbit:")  # type: ignore[union-attr]
    flow.start_sysinv()
    for proc in flow._services():
        assert proc.alive(), proc.tail()


def _label_patches(flow: Flow) -> list[dict[str, object]]:
    """Label changes the API server received for the node (the conductor's PATCHes)."""
    return [p.body["metadata"]["labels"] for p in flow.kube_api.patches
            if p.path == f"/api/v1/nodes/{NODE}" and "labels" in (p.body or {}).get("metadata", {})]


def test_conductor_labels_the_node(flow: Flow) -> None:
    flow.wait_label(present=True, timeout=40)
    assert flow.labels()[LABEL[0]] == LABEL[1]
    # only the allow-listed key was patched; the node's other labels are untouched
    assert _label_patches(flow) and all(set(p) == {LABEL[0]} for p in _label_patches(flow))
    assert flow.labels()["kubernetes.io/hostname"] == NODE


def test_daemonset_schedules_the_plugin(flow: Flow) -> None:
    flow.schedule_plugin()
    assert flow.plugin is not None and flow.plugin.alive(), flow.plugin.tail() if flow.plugin else ""


def test_plugin_registers_and_node_reports_allocatable(flow: Flow) -> None:
    flow.wait_allocatable(timeout=30)
    want = expected_resources(GPUS, flow.shared_dev_num)
    assert want == {"gpu.intel.com/i915": 2 * flow.shared_dev_num, "gpu.intel.com/xe": flow.shared_dev_num}
    registered = {r.resource_name: r.endpoint for r in flow.kubelet.registrations}
    assert registered["gpu.intel.com/i915"] == "gpu.intel.com-i915.sock"
    assert registered["gpu.intel.com/xe"] == "gpu.intel.com-xe.sock"
    node = flow.kube_api.get_node(NODE)
    assert {k: v for k, v in node["status"]["allocatable"].items() if k.startswith("gpu.intel.com/")} == {
        k: str(v) for k, v in want.items()}


def _value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items()))


def test_metrics_endpoints_show_the_flow(flow: Flow) -> None:
    """Scraped over HTTP: the plugin advertises what kubelet got, the agent counted its reports."""
    detail = flow.show_metrics()
    urls = flow.metrics_urls()
    assert all(url.startswith("http://127.0.0.1:") for url in urls.values()), urls
    plugin = flow.scrape("plugin")
    assert _value(plugin, "deviceplugin_devices", resource="gpu.intel.com/i915", health="Healthy") \
        == 2 * flow.shared_dev_num
    assert _value(plugin, "deviceplugin_devices", resource="gpu.intel.com/xe") == flow.shared_dev_num
    assert _value(plugin, "deviceplugin_registrations_total") == 2  # i915 and xe
    assert _value(plugin, "deviceplugin_listandwatch_streams") == 2
    assert _value(plugin, "intel_gpu_plugin_scans_total", outcome="ok") >= 1
    assert "gpu.intel.com/i915 Healthy" in detail
    if flow.in_process is None:  # separate processes: agent and conductor serve their own
        agent = flow.scrape("agent")
        assert _value(agent, "sysinv_gpu_agent_gpus", driver="i915", function="vf") == 2
        assert _value(agent, "sysinv_gpu_agent_gpus", driver="xe", function="pf") == 1
        assert _value(agent, "sysinv_gpu_agent_reports_total", outcome="sent") >= 1
        conductor = flow.scrape("conductor")
        assert _value(conductor, "sysinv_gpu_conductor_reports_total", outcome="applied") >= 1
        assert _value(conductor, "sysinv_gpu_conductor_report_to_label_seconds_count") >= 1
        assert _value(conductor, "sysinv_gpu_conductor_node_cache_nodes") == 1
        assert _value(conductor, "sysinv_gpu_conductor_leader") == 1
        assert "conductor: " in detail


def test_status_command_shows_every_link_of_the_chain(flow: Flow) -> None:
    detail = flow.show_status()
    row = next(line for line in detail.splitlines() if line.startswith(HOST_UUID))
    assert row.split()[1:3] == [NODE, LABEL[0]] and row.split()[-1] == "ok"
    assert f"{LABEL[0]}={LABEL[1]}" in row and "i915=" in row


def test_gpus_unplugged_label_removed_and_nothing_advertised(flow: Flow) -> None:
    before = _value(flow.scrape("plugin"), "intel_gpu_plugin_scans_total")
    applied = 0.0 if flow.in_process else _value(
        flow.scrape("conductor"), "sysinv_gpu_conductor_reports_total", outcome="applied")
    flow.remove_gpus()
    # the agent reports an empty list; the conductor removes the label
    flow.wait_label(present=False, timeout=40)
    assert LABEL[0] not in flow.labels()
    assert _label_patches(flow)[-1] == {LABEL[0]: None}  # a merge patch deleting only our key
    # the plugin rescans (-scan-interval 0.5 here) and kubelet sees no device left
    flow.wait_allocatable(expected={"gpu.intel.com/i915": 0, "gpu.intel.com/xe": 0}, timeout=30)
    plugin = flow.scrape("plugin")
    assert _value(plugin, "deviceplugin_devices") == 0  # servers stopped: nothing advertised
    assert _value(plugin, "intel_gpu_plugin_scans_total") > before
    if flow.in_process is None:
        agent = flow.scrape("agent")
        assert _value(agent, "sysinv_gpu_agent_gpus") == 0
        conductor = flow.scrape("conductor")  # the empty report was applied (label removed)
        assert _value(conductor, "sysinv_gpu_conductor_reports_total", outcome="applied") > applied
    flow.show_status()  # still consistent: no label, no GPU, nothing allocatable
