"""The ``sysinv-gpu-conductor`` process over ZeroMQ (no broker): bad port, serve, port taken, stop.

The installed console script with ``rpc_backend_zeromq = true`` on a port the OS handed out;
the caller is the sysinv-style zerorpc client of tests/fakes/sysinv_zmq.py; Kubernetes is the
emulated API server; the transport URL points at a closed port (ZeroMQ needs no broker).
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import rabbit
from tests.fakes.kube_api import FakeKubeAPI
from tests.fakes.sysinv_zmq import SysinvZmqClient, ZerorpcRemoteError
from tests.sysinv.conftest import HOST_A

CONDUCTOR = str(Path(sys.executable).with_name("sysinv-gpu-conductor"))
METHOD = "device_plugin_labels_update_by_ihost"


def _config(tmp_path: Path, kubeconfig: Path, port: int | str, *, election: bool = True) -> Path:
    plugins = tmp_path / "enabled_kube_plugins"
    plugins.write_text(json.dumps(["intelgpu"]))  # the 2023 list form
    path = tmp_path / "conductor.conf"
    path.write_text(
        f"[DEFAULT]\nlog_file = \nrpc_backend_zeromq = true\nrpc_zeromq_conductor_bind_ip = 127.0.0.1\n"
        f"rpc_zeromq_conductor_bind_port = {port}\n"
        f"transport_url = rabbit://guest:guest@127.0.0.1:{rabbit.free_port()}/\n"
        f"[conductor]\nhost = zmq-conductor\nenabled_kube_plugins = {plugins}\n"
        f"state_path = {tmp_path}/state\naudit_interval = 60\nleader_election = {election}\n"
        "lease_duration = 4\nlease_renew_deadline = 3\nlease_retry_period = 0.2\n"
        f"[kubernetes]\nkubeconfig = {kubeconfig}\nretry_backoff = 0.01\n")
    return path


def test_bad_port_is_a_usage_error(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path / "kubeconfig", "ninety-five-eleven")
    result = subprocess.run([CONDUCTOR, "--config-file", str(config)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "rpc_zeromq_conductor_bind_port" in result.stderr


def test_serves_sysinv_client_keeps_serving_and_stops(tmp_path: Path) -> None:
    with FakeKubeAPI() as api:
        api.add_node("worker-0", HOST_A)
        port = rabbit.free_port()
        config = _config(tmp_path, api.write_kubeconfig(tmp_path / "kubeconfig"), port)
        proc = rabbit.ServiceProcess("sysinv-gpu-conductor", ["--config-file", str(config)],
                                     tmp_path / "conductor.log").start()
        client = SysinvZmqClient("127.0.0.1", port, timeout=10)
        try:
            assert rabbit.wait_for(lambda: "serving ZeroMQ RPC" in proc.log(), 60), proc.log()
            with pytest.raises(ZerorpcRemoteError) as info:
                client.invoke(METHOD, {"is_admin": True}, host_uuid=HOST_A, device_plugins="x")
            assert info.value.name == "InvalidPayload"
            client.invoke(METHOD, {"is_admin": True}, host_uuid=HOST_A, device_plugins=["intelgpu"])
            assert api.node_labels("worker-0")["intelgpu"] == "enabled"
            assert proc.stop() == 0
        finally:
            client.close()
            if proc.running():
                proc.stop()
        assert "Traceback" not in proc.log()


def test_port_taken_is_retried_not_fatal(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _config(tmp_path, tmp_path / "no-kubeconfig", port, election=False)
        proc = rabbit.ServiceProcess("sysinv-gpu-conductor", ["--config-file", str(config)],
                                     tmp_path / "conductor.log").start()
        try:
            assert rabbit.wait_for(lambda: proc.log().count("Cannot bind ZeroMQ RPC") >= 2, 60), proc.log()
            assert proc.running()
        finally:
            code = proc.stop()
    assert code == 0
    assert "never bound its ZeroMQ address" in proc.log()


def test_standby_does_not_bind_until_it_holds_the_lease(tmp_path: Path) -> None:
    """HA: only the active conductor binds its ZeroMQ port (a standby never answers)."""
    with FakeKubeAPI() as api:
        api.add_node("worker-0", HOST_A)
        api.put_object({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": "sysinv-gpu-conductor", "namespace": "kube-system"},
                        "spec": {"holderIdentity": "controller-other", "leaseDurationSeconds": 4,
                                 "renewTime": "2099-01-01T00:00:00.000000Z"}})
        port = rabbit.free_port()
        config = _config(tmp_path, api.write_kubeconfig(tmp_path / "kubeconfig"), port)
        proc = rabbit.ServiceProcess("sysinv-gpu-conductor", ["--config-file", str(config)],
                                     tmp_path / "conductor.log").start()

        def lease_reads() -> int:
            return sum(1 for r in api.requests if r.path.endswith("/leases/sysinv-gpu-conductor"))

        def renew() -> None:  # the other conductor keeps renewing
            lease = api.get_object("coordination.k8s.io/v1", "leases", "sysinv-gpu-conductor",
                                   "kube-system")
            assert lease is not None
            lease["spec"]["renewTime"] = f"2099-01-01T00:00:{lease_reads() % 60:02d}.000000Z"
            api.put_object(lease)

        try:
            assert rabbit.wait_for(lambda: "competes for Lease" in proc.log(), 60), proc.log()
            start = lease_reads()
            while lease_reads() < start + 10:  # ten election rounds while the peer is alive
                renew()
                current = lease_reads()
                assert rabbit.wait_for(lambda current=current: lease_reads() > current, 10)
                with socket.socket() as probe:  # the port is still free: nobody bound it
                    probe.bind(("127.0.0.1", port))
            assert "serving ZeroMQ RPC" not in proc.log()
            lease = api.get_object("coordination.k8s.io/v1", "leases", "sysinv-gpu-conductor",
                                   "kube-system")
            assert lease is not None
            lease["spec"]["holderIdentity"] = ""  # released by the peer
            api.put_object(lease)
            assert rabbit.wait_for(lambda: "serving ZeroMQ RPC" in proc.log(), 30), proc.log()
            client = SysinvZmqClient("127.0.0.1", port, timeout=10)
            try:
                client.invoke(METHOD, {"is_admin": True}, host_uuid=HOST_A, device_plugins=["intelgpu"])
            finally:
                client.close()
            assert api.node_labels("worker-0")["intelgpu"] == "enabled"
        finally:
            if proc.running():
                proc.stop()


IDLE_PEERS = 400
LOW_FD_LIMIT = 256


def test_idle_peers_beyond_the_inherited_fd_limit_do_not_shut_out_an_agent(tmp_path: Path) -> None:
    """3,000 idle ZeroMQ peers left a conductor with 1,024 descriptors unable to answer an agent.
    Started with a soft limit of 256, the conductor raises it to the hard limit and serves 400
    idle connected peers and the agent."""
    import resource
    import uuid

    import msgpack
    import zmq

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4 * IDLE_PEERS:
        pytest.skip(f"hard open-file limit {hard} is too low for this test")
    with FakeKubeAPI() as api:
        api.add_node("worker-0", HOST_A)
        port = rabbit.free_port()
        config = _config(tmp_path, api.write_kubeconfig(tmp_path / "kubeconfig"), port, election=False)
        proc = rabbit.ServiceProcess("sysinv-gpu-conductor", ["--config-file", str(config)],
                                     tmp_path / "conductor.log")
        resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_FD_LIMIT, hard))  # inherited by the child
        try:
            proc.start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        ctx: zmq.Context[object] = zmq.Context()
        ctx.setsockopt(zmq.LINGER, 0)
        ctx.set(zmq.MAX_SOCKETS, IDLE_PEERS + 50)
        peers = []
        client = SysinvZmqClient("127.0.0.1", port, timeout=10)
        try:
            assert rabbit.wait_for(lambda: "serving ZeroMQ RPC" in proc.log(), 60), proc.log()
            for _ in range(IDLE_PEERS):  # each connects and is answered once, then stays idle
                peer = ctx.socket(zmq.DEALER)
                peer.connect(f"tcp://127.0.0.1:{port}")
                header = {"message_id": uuid.uuid4().hex.encode(), "v": 3}
                peer.send_multipart([b"", msgpack.packb([header, "_zerorpc_ping", [], {}])])
                peers.append(peer)
            for peer in peers:
                assert peer.poll(10_000), "an idle peer was never served"
                peer.recv_multipart()
            client.invoke(METHOD, {"is_admin": True}, host_uuid=HOST_A, device_plugins=["intelgpu"])
            assert api.node_labels("worker-0")["intelgpu"] == "enabled"
            assert f"Open-file limit raised from {LOW_FD_LIMIT}" in proc.log()
        finally:
            client.close()
            for peer in peers:
                peer.close()
            ctx.term()
            proc.stop()
