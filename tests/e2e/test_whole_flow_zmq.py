"""The whole flow over sysinv's ZeroMQ RPC (no broker used): agent -> conductor -> label, and back.

Same steps as tests/e2e/test_whole_flow.py through ``demo.flow`` (REAL ansible-playbook + kubectl,
sysinv-gpu-conductor and sysinv-gpu-agent as separate processes; EMULATED sysfs and Kubernetes API
server), but ``--transport zmq``: the conductor binds a free port on 127.0.0.1 and the agent calls
it with StarlingX's zerorpc wire format. The plugin part is the other module's business.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.flow import Flow
from demo.machine import LABEL, NODE

pytestmark = [pytest.mark.incremental, pytest.mark.slow, pytest.mark.ansible]


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    root: Path = tmp_path_factory.mktemp("whole-flow-zmq")
    flow = Flow(root, transport="zmq", scan_interval=0.5)
    try:
        yield flow
    finally:
        flow.close()


def test_machine_cluster_and_bootstrap(flow: Flow) -> None:
    flow.make_sysfs()
    flow.start_kube_api()
    flow.run_bootstrap()
    assert LABEL[0] not in flow.labels()


def test_services_start_over_zeromq(flow: Flow) -> None:
    detail = flow.choose_transport()
    assert "ZeroMQ" in detail and flow.zmq_port
    flow.start_sysinv()
    for proc in flow._services():
        assert proc.alive(), proc.tail()
    conductor_log = flow.conductor.log_path.read_text()
    assert f"serving ZeroMQ RPC at tcp://[127.0.0.1]:{flow.zmq_port}" in conductor_log
    assert "serving topic" not in conductor_log  # no AMQP server was started


def test_agent_report_labels_the_node(flow: Flow) -> None:
    flow.wait_label(present=True, timeout=40)
    assert flow.labels()[LABEL[0]] == LABEL[1]
    assert "over ZeroMQ to tcp://[127.0.0.1]" in flow.agent.log_path.read_text()


def test_gpus_removed_label_removed(flow: Flow) -> None:
    flow.remove_gpus()
    flow.wait_label(present=False, timeout=40)
    assert LABEL[0] not in flow.labels()
    patches = [p.body["metadata"]["labels"] for p in flow.kube_api.patches
               if p.path == f"/api/v1/nodes/{NODE}" and "labels" in (p.body or {}).get("metadata", {})]
    assert patches[-1] == {LABEL[0]: None}
