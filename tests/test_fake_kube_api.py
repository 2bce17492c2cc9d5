"""Tests of the emulated Kubernetes API server (tests/fakes/kube_api.py).

Exercised the way the project uses it: through the official ``kubernetes`` client over HTTP with a
generated kubeconfig, and through the machine's real ``kubectl`` (apply/get, --validate=false).
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from kubernetes import client, config

from tests.fakes.kube_api import FakeKubeAPI
from tests.fakes.kube_semantics import json_patch, match_labels, merge_patch

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

MANIFEST = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: intel-device-plugin, namespace: kube-system}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: intel-gpu-plugin, namespace: kube-system, labels: {app: intel-gpu-plugin}}
spec:
  selector: {matchLabels: {app: intel-gpu-plugin}}
  template:
    metadata: {labels: {app: intel-gpu-plugin}}
    spec:
      nodeSelector: {intelgpu: enabled}
      containers:
      - name: intel-gpu-plugin
        image: intel/intel-gpu-plugin:0.32.0
        args: [-shared-dev-num, "SHARED"]
        volumeMounts: [{name: sysfs, mountPath: /sys, readOnly: true}]
      volumes: [{name: sysfs, hostPath: {path: /sys}}]
"""


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as server:
        yield server


@pytest.fixture
def core(api: FakeKubeAPI, tmp_path: Path) -> client.CoreV1Api:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    return client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))


def test_list_nodes_with_label_selector(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.add_node("controller-0", "5A0B-11", {"intelgpu": "enabled"})
    api.add_node("worker-0", "5A0B-22")
    names = [n.metadata.name for n in core.list_node(label_selector="intelgpu=enabled").items]
    assert names == ["controller-0"]
    assert len(core.list_node().items) == 2
    assert [n.metadata.name for n in core.list_node(label_selector="!intelgpu").items] == ["worker-0"]
    node = core.read_node("worker-0")
    assert node.kind == "Node" and node.api_version == "v1"
    assert node.status.node_info.system_uuid == "5A0B-22"


@pytest.mark.parametrize(("selector", "expected"), [
    ("spec.nodeName=node-a", ["gpu-a", "idle-a"]),
    ("spec.nodeName==node-b", ["gpu-b"]),
    ("spec.nodeName=node-a,status.phase=Pending", ["gpu-a"]),
    ("status.phase!=Pending", ["idle-a"]),
    ("metadata.name=gpu-b", ["gpu-b"]),
    ("spec.nodeName=nowhere", []),
], ids=["node", "double-equals", "two-terms", "not-equal", "name", "no-match"])
def test_list_pods_with_field_selector(api: FakeKubeAPI, core: client.CoreV1Api,
                                       selector: str, expected: list[str]) -> None:
    for name, node, phase in (("gpu-a", "node-a", "Pending"), ("idle-a", "node-a", "Running"),
                              ("gpu-b", "node-b", "Pending")):
        api.put_object({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": "default"},
                        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
                        "status": {"phase": phase}})
    pods = core.list_pod_for_all_namespaces(field_selector=selector).items
    assert sorted(p.metadata.name for p in pods) == expected


@pytest.mark.parametrize("content_type", ["application/merge-patch+json",
                                          "application/strategic-merge-patch+json"])
def test_merge_patches_set_and_remove_labels(api: FakeKubeAPI, core: client.CoreV1Api,
                                             content_type: str) -> None:
    api.add_node("n1", "U1", {"keep": "yes", "drop": "me"})
    before = api.get_node("n1")["metadata"]["resourceVersion"]
    core.patch_node("n1", {"metadata": {"labels": {"intelgpu": "enabled", "drop": None}}},
                    _content_type=content_type)
    assert api.node_labels("n1") == {"keep": "yes", "intelgpu": "enabled"}
    assert int(api.get_node("n1")["metadata"]["resourceVersion"]) > int(before)
    assert api.patches[-1].content_type == content_type
    assert api.patches[-1].body == {"metadata": {"labels": {"intelgpu": "enabled", "drop": None}}}


def test_json_patch_with_escaped_keys(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.add_node("n1", "U1", {"old": "x", "gpu.intel.com/cards": "card0"})
    core.patch_node("n1", [
        {"op": "add", "path": "/metadata/labels/intelgpu", "value": "enabled"},
        {"op": "replace", "path": "/metadata/labels/old", "value": "y"},
        {"op": "remove", "path": "/metadata/labels/gpu.intel.com~1cards"},
    ])
    assert api.node_labels("n1") == {"intelgpu": "enabled", "old": "y"}
    with pytest.raises(client.ApiException) as err:
        core.patch_node("n1", [{"op": "remove", "path": "/metadata/labels/absent"}])
    assert err.value.status == 422
    assert api.node_labels("n1") == {"intelgpu": "enabled", "old": "y"}


def test_noop_patch_keeps_resource_version(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.add_node("n1", "U1", {"intelgpu": "enabled"})
    before = api.get_node("n1")["metadata"]["resourceVersion"]
    core.patch_node("n1", {"metadata": {"labels": {"intelgpu": "enabled"}}})
    assert api.get_node("n1")["metadata"]["resourceVersion"] == before


def test_put_replaces_and_detects_conflicts(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.add_node("n1", "U1")
    node = core.read_node("n1")
    node.metadata.labels = {"a": "b"}
    core.replace_node("n1", node)
    assert api.node_labels("n1") == {"a": "b"}
    with pytest.raises(client.ApiException) as err:
        core.replace_node("n1", node)  # stale resourceVersion
    assert err.value.status == 409
    assert json.loads(err.value.body)["reason"] == "Conflict"


def test_missing_object_is_a_404_status(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as err:
        core.read_node("nope")
    assert err.value.status == 404
    body = json.loads(err.value.body)
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "NotFound", 404)


def test_namespaced_create_conflict_and_delete(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    core.create_namespaced_config_map("kube-system", cm)
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_config_map("kube-system", cm)
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_config_map("no-such-ns", cm)
    assert err.value.status == 404
    assert api.get_object("v1", "configmaps", "c", "kube-system")["data"] == {"k": "v"}
    core.delete_namespaced_config_map("c", "kube-system")
    assert api.get_object("v1", "configmaps", "c", "kube-system") is None


def test_injected_errors_then_recovery(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.add_node("n1", "U1")
    api.inject("PATCH", r"/api/v1/nodes/n1$", status=500, times=2)
    for _ in range(2):
        with pytest.raises(client.ApiException) as err:
            core.patch_node("n1", {"metadata": {"labels": {"a": "b"}}})
        assert err.value.status == 500
        assert json.loads(err.value.body)["kind"] == "Status"
    assert api.node_labels("n1") == {}
    core.patch_node("n1", {"metadata": {"labels": {"a": "b"}}})
    assert api.node_labels("n1") == {"a": "b"}
    assert len(api.patches) == 3


def test_dropped_connection(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.add_node("n1", "U1")
    api.inject_drop("PATCH", r"/nodes/n1$", times=1)
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.patch_node("n1", {"metadata": {"labels": {"a": "b"}}})
    assert api.node_labels("n1") == {}
    # urllib3 retries idempotent GETs by itself (3 retries): one drop is invisible, many are not.
    api.inject_drop("GET", r"^/api/v1/nodes$", times=1)
    assert len(core.list_node().items) == 1
    api.inject_drop("GET", r"^/api/v1/nodes$", times=10)
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        core.list_node()


def test_injected_delay(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.add_node("n1", "U1")
    api.inject_delay("GET", r"^/api/v1/nodes/n1$", seconds=1.0, times=4)  # urllib3 retries GETs 3 times
    with pytest.raises(urllib3.exceptions.HTTPError, match="timed out"):
        core.read_node("n1", _request_timeout=(1, 0.2))
    assert core.read_node("n1", _request_timeout=(1, 5)).metadata.name == "n1"


def test_patch_semantics_pure() -> None:
    current = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}
    patched = merge_patch(current, {"spec": {"containers": [{"name": "b", "image": "2"}]}}, strategic=True)
    assert patched["spec"]["containers"] == [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]
    replaced = merge_patch(current, {"spec": {"containers": [{"name": "b", "image": "2"}]}})
    assert replaced["spec"]["containers"] == [{"name": "b", "image": "2"}]
    assert json_patch({"a": [1, 3]}, [{"op": "add", "path": "/a/1", "value": 2}]) == {"a": [1, 2, 3]}
    assert match_labels({"a": "1", "b": "2"}, "a=1,b in (2,3)")
    assert not match_labels({"a": "1"}, "a!=1")


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl not installed")
def test_real_kubectl_apply_is_idempotent(api: FakeKubeAPI, tmp_path: Path) -> None:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    manifest = tmp_path / "ds.yaml"
    manifest.write_text(MANIFEST.replace("SHARED", "1"))
    first = _kubectl(kubeconfig, "apply", "-f", str(manifest), "--validate=false")
    assert first.returncode == 0, first.stderr
    assert "serviceaccount/intel-device-plugin created" in first.stdout
    assert "daemonset.apps/intel-gpu-plugin created" in first.stdout
    second = _kubectl(kubeconfig, "apply", "-f", str(manifest), "--validate=false")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("unchanged") == 2, second.stdout
    manifest.write_text(MANIFEST.replace("SHARED", "4"))
    third = _kubectl(kubeconfig, "apply", "-f", str(manifest), "--validate=false")
    assert "daemonset.apps/intel-gpu-plugin configured" in third.stdout, third.stdout + third.stderr
    assert "serviceaccount/intel-device-plugin unchanged" in third.stdout
    got = _kubectl(kubeconfig, "get", "daemonset", "intel-gpu-plugin", "-n", "kube-system", "-o", "json")
    assert got.returncode == 0, got.stderr
    ds = json.loads(got.stdout)
    assert ds["kind"] == "DaemonSet"
    assert ds["spec"]["template"]["spec"]["containers"][0]["args"] == ["-shared-dev-num", "4"]
    assert ds["metadata"]["generation"] == 2
    assert api.get_object("v1", "serviceaccounts", "intel-device-plugin", "kube-system") is not None


RBAC_MANIFEST = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: intel-gpu-plugin-resource-manager}
rules:
- {apiGroups: [""], resources: [pods], verbs: [list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: intel-gpu-plugin-resource-manager}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: intel-gpu-plugin-resource-manager}
subjects:
- {kind: ServiceAccount, name: intel-device-plugin, namespace: kube-system}
"""


@pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl not installed")
def test_real_kubectl_applies_cluster_scoped_rbac(api: FakeKubeAPI, tmp_path: Path) -> None:
    """The resource manager's overlay carries a ClusterRole and its binding (cluster-scoped)."""
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    manifest = tmp_path / "rbac.yaml"
    manifest.write_text(RBAC_MANIFEST)
    first = _kubectl(kubeconfig, "apply", "-f", str(manifest), "--validate=false")
    assert first.returncode == 0, first.stderr
    assert "clusterrole.rbac.authorization.k8s.io/intel-gpu-plugin-resource-manager created" in first.stdout
    second = _kubectl(kubeconfig, "apply", "-f", str(manifest), "--validate=false")
    assert second.stdout.count("unchanged") == 2, second.stdout + second.stderr
    role = api.get_object("rbac.authorization.k8s.io/v1", "clusterroles", "intel-gpu-plugin-resource-manager")
    assert role is not None
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]


def test_stop_cuts_connections_and_restart_keeps_port_and_objects(api: FakeKubeAPI,
                                                                  core: client.CoreV1Api) -> None:
    api.add_node("n1", "U1", {"intelgpu": "enabled"})
    assert core.read_node("n1").metadata.labels == {"intelgpu": "enabled"}  # keep-alive connection open
    port = api.port
    api.stop()
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.read_node("n1")
    api.start()
    assert api.port == port
    assert core.read_node("n1").metadata.labels == {"intelgpu": "enabled"}


def test_not_found_status_names_the_object(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_service_account("absent", "kube-system")
    details = json.loads(err.value.body)["details"]
    # as kube-apiserver v1.34.1 writes it: no "group" key for the core group
    assert details == {"name": "absent", "kind": "serviceaccounts"}


def test_demo_entry_point_serves_until_interrupted(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.kube_api", "--kubeconfig", str(kubeconfig),
                             "--node", "controller-0=4C4C4544-0001"], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        assert proc.stdout is not None
        assert "fake Kubernetes API at http://127.0.0.1:" in proc.stdout.readline()
        core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        assert core.read_node("controller-0").status.node_info.system_uuid == "4C4C4544-0001"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:  # never leave it running
                proc.kill()
                proc.wait()


def test_connection_stays_usable_after_a_watch_ends_as_on_kube_apiserver(api: FakeKubeAPI) -> None:
    """kube-apiserver keeps an HTTP/1.1 connection open after a watch stream's last chunk; the
    fake closed it without "Connection: close", so a client reusing it from its pool got
    RemoteDisconnected on its next request (seen once in the contract suite)."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(api.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", "/api/v1/nodes?watch=true&resourceVersion=0&timeoutSeconds=1")
        watch = conn.getresponse()
        assert watch.status == 200
        watch.read()  # to the stream's end (the watch's timeout)
        assert watch.getheader("Connection", "").lower() != "close"
        conn.request("GET", "/api/v1/nodes")  # the same connection, as a pooled client would
        listed = conn.getresponse()
        assert listed.status == 200 and json.loads(listed.read())["kind"] == "NodeList"
    finally:
        conn.close()
