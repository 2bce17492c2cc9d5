"""The contract between our Kubernetes API double and the real kube-apiserver: checks both pass.

Each ``check_*`` function takes a :class:`Target` (a kubeconfig, through the conductor's own
``KubeClient``: the official ``kubernetes`` client's ``ApiClient``, as the product talks) and
asserts one behaviour the product relies on: node LIST + WATCH (resourceVersions, event types,
bookmarks, 410 Gone), label patches (merge and strategic merge), Lease create/update/conflicts
and what a Lease may hold, Node status on create and through ``/status``, and Status error
bodies. tests/cluster/test_doubles_contract.py runs every check on the fake
(tests/fakes/kube_api.py) and on kube-apiserver v1.34.1 (``make test-cluster``);
tests/test_fake_kube_contract.py runs them on the fake alone in ``make test``, so the double's
corrected behaviour stays pinned without Go.

A real cluster has more going on than the fake (kubelet's node heartbeats, the node lifecycle
controller's taints and annotations, managedFields), so checks look at their own objects only
(names from :meth:`Target.name`) and never at a whole stream or a whole object.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from sysinv_ext.conductor.kube import KubeClient, WatchExpired

Obj = dict[str, Any]
NODES = "/api/v1/nodes"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


@dataclass(frozen=True)
class WatchEvent:
    at: float      # s since the request was sent
    type: str
    obj: Obj

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name") or "")

    @property
    def version(self) -> str:
        return str((self.obj.get("metadata") or {}).get("resourceVersion") or "")


@dataclass
class Target:
    """One API server under test. ``too_old_version()`` returns a resourceVersion the server
    no longer has history for (it may compact or restart to get one); ``store_raw(obj)`` writes
    an object into storage behind the server's back (the fake's put_object, etcd for the real
    one) and returns a function that removes it again."""

    kind: str  # "fake" or "real"
    kubeconfig: str
    too_old_version: Callable[[], str]
    store_raw: Callable[[Obj], Callable[[], None]]
    client: KubeClient = field(init=False)
    created: list[str] = field(default_factory=list)  # paths to delete at the end

    def __post_init__(self) -> None:
        self.client = KubeClient(self.kubeconfig, retry_attempts=1)

    def name(self, what: str = "node") -> str:
        """A name no other check uses (the real cluster is shared by the whole session)."""
        return f"contract-{what}-{uuid.uuid4().hex[:8]}"

    def call(self, method: str, path: str, body: Any = None, content_type: str | None = None,
             query: tuple[tuple[str, Any], ...] = ()) -> Reply:
        """One request; the status and the decoded body whatever the status."""
        try:
            response = self.client.request(method, path, body=body, content_type=content_type,
                                           query=list(query), timeout=10)
            data, status = response.data, response.status
            response.release_conn()
        except ApiException as err:
            data, status = err.body, err.status
        try:
            return Reply(status, json.loads(data))
        except (TypeError, ValueError):
            return Reply(status, data)

    def create_node(self, name: str, labels: dict[str, str] | None = None,
                    status: Obj | None = None) -> Obj:
        body: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}}
        if status is not None:
            body["status"] = status
        reply = self.call("POST", NODES, body)
        assert reply.status == 201, reply
        self.created.append(f"{NODES}/{name}")
        return dict(reply.body)

    def create_lease(self, name: str, spec: Any) -> Reply:
        reply = self.call("POST", LEASES, lease_body(name, spec))
        if reply.status == 201:
            self.created.append(f"{LEASES}/{name}")
        return reply

    def watch(self, path: str, query: tuple[tuple[str, Any], ...], seconds: float,
              until: Callable[[list[WatchEvent]], bool] | None = None) -> tuple[list[WatchEvent], float]:
        """Open a WATCH; read events until the server ends the stream, ``until(events)`` holds,
        or ``seconds`` + 10 passed. Returns the events and when the reading stopped."""
        start = time.monotonic()
        response = self.client.request("GET", path, query=[("watch", "true"), *query],
                                       timeout=(5, seconds + 10))
        events: list[WatchEvent] = []
        try:
            for line in iter_resp_lines(response):
                event = json.loads(line)
                events.append(WatchEvent(time.monotonic() - start, event["type"], event["object"]))
                if until is not None and until(events):
                    break
        finally:
            response.release_conn()
        return events, time.monotonic() - start

    def cleanup(self) -> None:
        for path in reversed(self.created):
            self.call("DELETE", path)
        self.created.clear()


def lease_body(name: str, spec: Any, resource_version: str | None = None) -> Obj:
    meta: Obj = {"name": name, "namespace": "default"}
    if resource_version is not None:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}


def assert_status(reply: Reply, code: int, reason: str | None) -> Obj:
    """``reply`` is a Kubernetes Status failure of ``code`` (and ``reason``; None: no reason key)."""
    body = reply.body
    assert reply.status == code, reply
    assert isinstance(body, dict), reply
    assert (body.get("kind"), body.get("apiVersion"), body.get("status"), body.get("code")) == \
        ("Status", "v1", "Failure", code), body
    assert body.get("metadata") == {}, body
    assert body.get("reason") == reason, body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def _labels(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _version(obj: Obj) -> int:
    return int(obj["metadata"]["resourceVersion"])


# -- nodes: LIST and WATCH ------------------------------------------------------------------------
def check_node_list_has_a_resource_version_no_older_than_its_nodes(t: Target) -> None:
    node = t.create_node(t.name())
    reply = t.call("GET", NODES)
    assert reply.status == 200
    assert (reply.body["kind"], reply.body["apiVersion"]) == ("NodeList", "v1")
    version = reply.body["metadata"]["resourceVersion"]
    assert isinstance(version, str) and version.isdigit(), version
    assert int(version) >= _version(node)
    mine = [i for i in reply.body["items"] if i["metadata"]["name"] == node["metadata"]["name"]]
    # >=: on a real cluster the TTL controller annotates a new node at once
    assert len(mine) == 1 and _version(mine[0]) >= _version(node), mine


def check_node_watch_from_the_list_version_sees_added_modified_deleted_in_order(t: Target) -> None:
    version = t.call("GET", NODES).body["metadata"]["resourceVersion"]
    name = t.name()
    t.create_node(name, {"a": "1"})
    patched = t.call("PATCH", f"{NODES}/{name}", {"metadata": {"labels": {"b": "2"}}}, MERGE)
    assert patched.status == 200, patched
    deleted = t.call("DELETE", f"{NODES}/{name}")
    assert deleted.status == 200, deleted
    events, _ = t.watch(NODES, (("resourceVersion", version), ("timeoutSeconds", 10)), 10,
                        until=lambda evs: any(e.type == "DELETED" and e.name == name for e in evs))
    mine = [e for e in events if e.name == name]
    # a real cluster's controllers (TTL, node lifecycle) may modify a new node too: more MODIFIED
    types = [e.type for e in mine]
    assert types[0] == "ADDED" and types[-1] == "DELETED" and set(types[1:-1]) == {"MODIFIED"}, mine
    versions = [int(e.version) for e in mine]
    assert versions == sorted(versions) and len(set(versions)) == len(versions), versions
    assert int(version) < versions[0]
    ours = [e for e in mine if e.version == patched.body["metadata"]["resourceVersion"]]
    assert len(ours) == 1 and ours[0].type == "MODIFIED" and _labels(ours[0].obj) == {"a": "1", "b": "2"}
    assert _labels(mine[-1].obj) == {"a": "1", "b": "2"}, "DELETED carries the last state"


def check_node_watch_without_a_version_starts_with_the_existing_nodes_as_added(t: Target) -> None:
    name = t.name()
    node = t.create_node(name)
    for query in ((("resourceVersion", "0"),), ()):
        events, _ = t.watch(NODES, (*query, ("timeoutSeconds", 5)), 5,
                            until=lambda evs: any(e.name == name for e in evs))
        mine = [e for e in events if e.name == name]
        assert mine and mine[0].type == "ADDED", (query, events)
        assert int(mine[0].version) >= _version(node)


def check_node_watch_ends_at_its_timeout_without_an_error(t: Target) -> None:
    version = t.call("GET", NODES).body["metadata"]["resourceVersion"]
    events, took = t.watch(NODES, (("resourceVersion", version), ("timeoutSeconds", 1)), 1)
    assert 0.9 <= took < 5, took
    assert all(e.type in ("ADDED", "MODIFIED", "DELETED") for e in events), events


def check_bookmarks_come_only_when_asked_for_two_seconds_before_the_timeout(t: Target) -> None:
    """allowWatchBookmarks=true and timeoutSeconds=4: a BOOKMARK about 2 s before the end
    (kube-apiserver's watch cache; also about once a minute on a long watch); none without
    allowWatchBookmarks, none with timeoutSeconds=2 (its time would be the start)."""
    version = t.call("GET", NODES).body["metadata"]["resourceVersion"]
    results: dict[str, list[WatchEvent]] = {}

    def run(label: str, query: tuple[tuple[str, Any], ...], seconds: int) -> None:
        results[label] = t.watch(NODES, (("resourceVersion", version), ("timeoutSeconds", seconds),
                                         *query), seconds)[0]
    threads = [threading.Thread(target=run, args=args) for args in (
        ("asked", (("allowWatchBookmarks", "true"),), 4), ("not asked", (), 4),
        ("short", (("allowWatchBookmarks", "true"),), 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    bookmarks = [e for e in results["asked"] if e.type == "BOOKMARK"]
    assert bookmarks, results["asked"]
    first = bookmarks[0]
    assert 1.5 <= first.at <= 3.5, first
    assert (first.obj["kind"], first.obj["apiVersion"]) == ("Node", "v1"), first.obj
    assert "name" not in first.obj["metadata"], first.obj
    assert first.version.isdigit() and int(first.version) >= int(version), first
    seen = [int(e.version) for e in results["asked"] if e.type != "BOOKMARK" and e.at <= first.at]
    assert int(first.version) >= max(seen, default=0)
    assert not [e for e in results["not asked"] if e.type == "BOOKMARK"], results["not asked"]
    assert not [e for e in results["short"] if e.type == "BOOKMARK"], results["short"]


def check_watch_from_a_too_old_version_is_an_error_event_410_expired(t: Target) -> None:
    old = t.too_old_version()
    events, _ = t.watch(NODES, (("resourceVersion", old), ("timeoutSeconds", 5)), 5)
    assert [e.type for e in events] == ["ERROR"], events
    status = events[0].obj
    assert (status["kind"], status["status"], status["code"], status["reason"]) == \
        ("Status", "Failure", 410, "Expired"), status
    assert status["message"].startswith(f"too old resource version: {old}"), status
    try:  # the conductor's watch turns it into WatchExpired (re-LIST)
        list(t.client.watch_nodes(old, 5))
    except WatchExpired:
        pass
    else:
        raise AssertionError("KubeClient.watch_nodes did not raise WatchExpired")


def check_watch_from_a_malformed_version_is_500(t: Target) -> None:
    try:
        t.watch(NODES, (("resourceVersion", "abc"), ("timeoutSeconds", 1)), 1)
    except ApiException as err:
        body = json.loads(err.body or "{}")
        assert err.status == 500 and body["code"] == 500 and "reason" not in body, body
        assert 'resourceVersion: Invalid value: "abc"' in body["message"], body
    else:
        raise AssertionError("a watch from resourceVersion 'abc' was accepted")


# -- nodes: label patches ---------------------------------------------------------------------------
def check_label_patch_null_deletes_a_key_and_leaves_the_others(t: Target, content_type: str) -> None:
    name = t.name()
    node = t.create_node(name, {"a": "1", "b": "2", "keep": "x"})
    reply = t.call("PATCH", f"{NODES}/{name}", {"metadata": {"labels": {"a": None, "c": "3"}}},
                   content_type)
    assert reply.status == 200, reply
    assert _labels(reply.body) == {"b": "2", "keep": "x", "c": "3"}
    assert _version(reply.body) > _version(node)
    again = t.call("PATCH", f"{NODES}/{name}", {"metadata": {"labels": {"c": "3", "a": None}}},
                   content_type)
    assert again.status == 200 and _labels(again.body) == _labels(reply.body)
    assert again.body["metadata"]["resourceVersion"] == reply.body["metadata"]["resourceVersion"], \
        "a patch that changes nothing keeps the resourceVersion"
    got = t.call("GET", f"{NODES}/{name}")
    assert _labels(got.body) == {"b": "2", "keep": "x", "c": "3"}


def check_label_patch_of_a_missing_node_is_404_not_found(t: Target, content_type: str) -> None:
    name = t.name("missing")
    reply = t.call("PATCH", f"{NODES}/{name}", {"metadata": {"labels": {"a": None}}}, content_type)
    body = assert_status(reply, 404, "NotFound")
    assert body["message"] == f'nodes "{name}" not found'
    assert body["details"] == {"name": name, "kind": "nodes"}, body


def check_label_patch_with_a_stale_resource_version_is_409_conflict(t: Target) -> None:
    name = t.name()
    node = t.create_node(name, {"a": "1"})
    assert t.call("PATCH", f"{NODES}/{name}", {"metadata": {"labels": {"b": "2"}}}, MERGE).status == 200
    stale = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"], "labels": {"c": "3"}}}
    body = assert_status(t.call("PATCH", f"{NODES}/{name}", stale, MERGE), 409, "Conflict")
    assert body["message"] == (f'Operation cannot be fulfilled on nodes "{name}": the object has been '
                               "modified; please apply your changes to the latest version and try again")
    assert body["details"] == {"name": name, "kind": "nodes"}
    assert _labels(t.call("GET", f"{NODES}/{name}").body) == {"a": "1", "b": "2"}


def check_label_key_or_value_kubernetes_refuses_is_422_invalid(t: Target) -> None:
    name = t.name()
    t.create_node(name, {"a": "1"})
    for labels, shown in (({"a": "bad value!"}, "bad value!"), ({"-a/b/c": "ok"}, "-a/b/c"),
                          ({"a": "x" * 64}, "x" * 64)):
        reply = t.call("PATCH", f"{NODES}/{name}", {"metadata": {"labels": labels}}, MERGE)
        body = assert_status(reply, 422, "Invalid")
        assert body["message"].startswith(f'Node "{name}" is invalid: metadata.labels: Invalid value: '
                                          f'"{shown}"'), body
        assert (body["details"]["name"], body["details"]["kind"]) == (name, "Node"), body
        assert body["details"]["causes"][0]["field"] == "metadata.labels", body
    body = assert_status(t.call("PATCH", f"{NODES}/{name}", {"metadata": {"labels": {"a": 5}}}, MERGE),
                         422, "Invalid")  # a patch whose result cannot be decoded: 422 on "patch"
    assert body["message"].startswith(' "" is invalid: patch: Invalid value: "{'), body
    assert body["message"].endswith(": json: cannot unmarshal number into Go struct field "
                                    "ObjectMeta.metadata.labels of type string"), body
    assert body["details"]["causes"][0]["field"] == "patch", body
    body = assert_status(t.call("POST", NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": t.name(), "labels": {"a": 5}}}), 400, "BadRequest")
    assert body["message"].startswith('Node in version "v1" cannot be handled as a Node: json: cannot '
                                      "unmarshal number into Go struct field"), body
    assert _labels(t.call("GET", f"{NODES}/{name}").body) == {"a": "1"}


def check_strategic_merge_patch_merges_conditions_by_type_and_finalizers_as_a_set(t: Target) -> None:
    """What separates a strategic merge patch from a merge patch on a Node: status.conditions
    merged by ``type`` (through /status) and metadata.finalizers merged as a set; a merge patch
    replaces both lists."""
    name = t.name()
    t.create_node(name, status={"conditions": [{"type": "ContractA", "status": "True"}]})
    try:
        reply = t.call("PATCH", f"{NODES}/{name}/status",
                       {"status": {"conditions": [{"type": "ContractB", "status": "False"}]}}, STRATEGIC)
        assert reply.status == 200, reply
        mine = {c["type"]: c["status"] for c in reply.body["status"]["conditions"]
                if c["type"].startswith("Contract")}
        assert mine == {"ContractA": "True", "ContractB": "False"}, reply.body["status"]
        reply = t.call("PATCH", f"{NODES}/{name}/status",
                       {"status": {"conditions": [{"type": "ContractC", "status": "True"}]}}, MERGE)
        mine = {c["type"]: c["status"] for c in reply.body["status"]["conditions"]
                if c["type"].startswith("Contract")}
        assert reply.status == 200 and mine == {"ContractC": "True"}, reply
        for patch, content_type, expected in (
                (["example.com/a"], MERGE, ["example.com/a"]),
                (["example.com/b"], STRATEGIC, ["example.com/b", "example.com/a"]),  # the patch's first
                (["example.com/c"], MERGE, ["example.com/c"])):
            reply = t.call("PATCH", f"{NODES}/{name}", {"metadata": {"finalizers": patch}}, content_type)
            assert reply.status == 200 and reply.body["metadata"]["finalizers"] == expected, reply
    finally:  # a finalizer would keep the node from being deleted
        t.call("PATCH", f"{NODES}/{name}", {"metadata": {"finalizers": None}}, MERGE)


# -- nodes: status ---------------------------------------------------------------------------------
NODE_INFO = {"systemUUID": "6B8F2C1E-0000-4000-8000-00000000C0DE", "machineID": "m", "bootID": "b",
             "kernelVersion": "5.10", "osImage": "Debian", "containerRuntimeVersion": "fake://1",
             "kubeletVersion": "v1.34.1", "kubeProxyVersion": "", "operatingSystem": "linux",
             "architecture": "amd64"}


def check_node_create_keeps_its_status_and_defaults_allocatable_to_capacity(t: Target) -> None:
    name = t.name()
    created = t.create_node(name, status={"nodeInfo": NODE_INFO, "capacity": {"cpu": "4"}})
    for node in (created, t.call("GET", f"{NODES}/{name}").body):
        assert node["status"]["nodeInfo"]["systemUUID"] == NODE_INFO["systemUUID"], node
        assert node["status"]["capacity"] == {"cpu": "4"}
        assert node["status"]["allocatable"] == {"cpu": "4"}


def check_node_status_is_written_only_through_the_status_subresource(t: Target) -> None:
    name = t.name()
    t.create_node(name, {"a": "1"}, status={"nodeInfo": NODE_INFO, "capacity": {"cpu": "4"}})
    main = t.call("PATCH", f"{NODES}/{name}", {"spec": {"unschedulable": True},
                                                "status": {"capacity": {"cpu": "8"}}}, MERGE)
    assert main.status == 200, main
    assert main.body["spec"].get("unschedulable") is True
    assert main.body["status"]["capacity"] == {"cpu": "4"}, "status ignored on the main resource"
    sub = t.call("PATCH", f"{NODES}/{name}/status", {"metadata": {"labels": {"b": "2"}},
                                                      "spec": {"unschedulable": False},
                                                      "status": {"capacity": {"cpu": "16"}}}, MERGE)
    assert sub.status == 200, sub
    assert sub.body["status"]["capacity"] == {"cpu": "16"}
    assert sub.body["spec"].get("unschedulable") is True, "spec ignored on /status"
    assert _labels(sub.body) == {"a": "1", "b": "2"}, "labels may change through /status"


# -- errors -----------------------------------------------------------------------------------------
def check_error_bodies_are_status_objects(t: Target) -> None:
    name = t.name("missing")
    body = assert_status(t.call("GET", f"{NODES}/{name}"), 404, "NotFound")
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": f'nodes "{name}" not found', "reason": "NotFound",
                    "details": {"name": name, "kind": "nodes"}, "code": 404}
    body = assert_status(t.call("GET", "/api/v1/nodez"), 404, "NotFound")
    assert body["message"] == "the server could not find the requested resource"
    assert body["details"] == {}, body
    node = t.name()
    t.create_node(node)
    body = assert_status(t.call("POST", NODES, {"apiVersion": "v1", "kind": "Node",
                                                "metadata": {"name": node}}), 409, "AlreadyExists")
    assert body["message"] == f'nodes "{node}" already exists'
    assert body["details"] == {"name": node, "kind": "nodes"}
    body = assert_status(t.call("PATCH", f"{NODES}/{node}", [{"op": "add"}], MERGE), 400, "BadRequest")
    assert body["message"].startswith("error decoding patch: json: cannot unmarshal array"), body
    deleted = t.call("DELETE", f"{NODES}/{node}")
    assert deleted.status == 200 and deleted.body["kind"] == "Status" and \
        deleted.body["status"] == "Success", deleted
    assert {k: v for k, v in deleted.body["details"].items() if k != "uid"} == \
        {"name": node, "kind": "nodes"}
    elsewhere = "/apis/coordination.k8s.io/v1/namespaces/nowhere/leases"
    body = assert_status(t.call("POST", elsewhere, {**lease_body("x", {}), "metadata": {
        "name": "x", "namespace": "nowhere"}}), 404, "NotFound")
    assert body["details"] == {"name": "nowhere", "kind": "namespaces"}
    body = assert_status(t.call("POST", elsewhere, lease_body("x", {})), 400, "BadRequest")
    assert body["message"] == "the namespace of the provided object does not match the namespace sent on " \
        "the request", "checked before the namespace's existence"


# -- Leases -----------------------------------------------------------------------------------------
LEASE_DETAILS = {"group": "coordination.k8s.io", "kind": "leases"}


def check_lease_create_get_update_and_conflicts(t: Target) -> None:
    name = t.name("lease")
    spec = {"holderIdentity": "a", "leaseDurationSeconds": 15,
            "renewTime": "2026-12-06T22:00:00.123456Z", "leaseTransitions": 0}
    created = t.create_lease(name, spec)
    assert created.status == 201, created
    assert created.body["spec"] == spec
    first = created.body["metadata"]["resourceVersion"]
    again = assert_status(t.call("POST", LEASES, lease_body(name, spec)), 409, "AlreadyExists")
    assert again["message"] == f'leases.coordination.k8s.io "{name}" already exists'
    assert again["details"] == {"name": name, **LEASE_DETAILS}
    got = t.call("GET", f"{LEASES}/{name}")
    assert got.status == 200 and got.body["metadata"]["resourceVersion"] == first
    updated = t.call("PUT", f"{LEASES}/{name}", lease_body(name, {**spec, "holderIdentity": "b"}, first))
    assert updated.status == 200, updated
    assert updated.body["spec"]["holderIdentity"] == "b"
    assert int(updated.body["metadata"]["resourceVersion"]) > int(first)
    stale = t.call("PUT", f"{LEASES}/{name}", lease_body(name, {**spec, "holderIdentity": "c"}, first))
    body = assert_status(stale, 409, "Conflict")
    assert body["message"] == (f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": '
                               "the object has been modified; please apply your changes to the "
                               "latest version and try again")
    assert body["details"] == {"name": name, **LEASE_DETAILS}
    body = assert_status(t.call("PUT", f"{LEASES}/{name}", lease_body(name, spec)), 422, "Invalid")
    assert "metadata.resourceVersion: Invalid value: 0: must be specified for an update" in body["message"]
    body = assert_status(t.call("PUT", f"{LEASES}/{name}", lease_body("other", spec, first)), 400,
                         "BadRequest")
    assert body["message"] == f"the name of the object (other) does not match the name on the URL ({name})"
    assert t.call("GET", f"{LEASES}/{name}").body["spec"]["holderIdentity"] == "b"
    deleted = t.call("DELETE", f"{LEASES}/{name}")
    assert deleted.status == 200 and deleted.body["status"] == "Success", deleted
    assert {k: v for k, v in deleted.body["details"].items() if k != "uid"} == {"name": name, **LEASE_DETAILS}


def check_lease_put_of_a_missing_lease_creates_it(t: Target) -> None:
    name = t.name("lease")
    reply = t.call("PUT", f"{LEASES}/{name}", lease_body(name, {"holderIdentity": "a"}))
    t.created.append(f"{LEASES}/{name}")
    assert reply.status == 201, reply
    assert t.call("GET", f"{LEASES}/{name}").body["spec"] == {"holderIdentity": "a"}


def check_lease_spec_that_is_not_an_object_is_refused_400(t: Target, spec: Any) -> None:
    reply = t.create_lease(t.name("lease"), spec)
    body = assert_status(reply, 400, "BadRequest")
    assert body["message"].startswith('Lease in version "v1" cannot be handled as a Lease: json: '
                                      "cannot unmarshal"), body


def check_lease_spec_null_is_stored_as_an_empty_spec(t: Target) -> None:
    reply = t.create_lease(t.name("lease"), None)
    assert reply.status == 201 and reply.body["spec"] == {}, reply


def check_lease_duration_is_a_positive_int32(t: Target) -> None:
    accepted = t.create_lease(t.name("lease"), {"holderIdentity": "x", "leaseDurationSeconds": 2147483647})
    assert accepted.status == 201 and accepted.body["spec"]["leaseDurationSeconds"] == 2147483647, accepted
    for duration in (2147483648, "fifteen", [15], 1.5, True):
        body = assert_status(t.create_lease(t.name("lease"), {"leaseDurationSeconds": duration}), 400,
                             "BadRequest")
        assert "cannot be handled as a Lease" in body["message"], body
    for duration in (0, -1):
        name = t.name("lease")
        body = assert_status(t.create_lease(name, {"leaseDurationSeconds": duration}), 422, "Invalid")
        assert body["message"] == (f'Lease.coordination.k8s.io "{name}" is invalid: '
                                   f"spec.leaseDurationSeconds: Invalid value: {duration}: must be "
                                   "greater than 0"), body
        assert body["details"]["causes"] == [{
            "reason": "FieldValueInvalid", "field": "spec.leaseDurationSeconds",
            "message": f"Invalid value: {duration}: must be greater than 0"}]
    body = assert_status(t.create_lease(t.name("lease"), {"leaseTransitions": -1}), 422, "Invalid")
    assert "spec.leaseTransitions" in body["message"], body


def check_lease_times_need_six_fraction_digits_and_come_back_in_utc(t: Target) -> None:
    """MicroTime is parsed with Go's layout 2006-01-02T15:04:05.000000Z07:00: exactly six digits
    (the conductor's _TIME writes six); another offset comes back as UTC."""
    reply = t.create_lease(t.name("lease"), {"holderIdentity": "x",
                                             "acquireTime": "2026-12-06T22:00:00.000000Z",
                                             "renewTime": "2026-12-06T23:00:00.500000+01:00"})
    assert reply.status == 201, reply
    assert reply.body["spec"]["acquireTime"] == "2026-12-06T22:00:00.000000Z", reply.body
    assert reply.body["spec"]["renewTime"] == "2026-12-06T22:00:00.500000Z", reply.body
    for when in ("2026-12-06T22:00:00Z", "2026-12-06T22:00:00.5Z", "yesterday"):
        body = assert_status(t.create_lease(t.name("lease"), {"renewTime": when}), 400, "BadRequest")
        assert body["message"].startswith(
            'Lease in version "v1" cannot be handled as a Lease: parsing time '
            f'"{when}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse'), body


def check_stored_lease_whose_spec_is_not_an_object_is_500_on_read(t: Target) -> None:
    """No request can store such a Lease (400 above); one written into storage behind the
    server's back cannot be decoded: every GET is 500 without a reason (the conductor never
    sees the spec) until it is deleted."""
    name = t.name("corrupt")
    remove = t.store_raw({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
                          "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4()),
                                       "creationTimestamp": "2026-12-06T22:00:00Z"},
                          "spec": "garbage"})
    try:
        body = assert_status(t.call("GET", f"{LEASES}/{name}"), 500, None)
        assert body["message"] == ("json: cannot unmarshal string into Go struct field Lease.spec of "
                                   "type v1.LeaseSpec"), body
    finally:
        remove()


#: every check, with its parameters (one test per entry)
CHECKS: list[tuple[str, Callable[..., None], tuple[Any, ...]]] = [
    ("node_list_version", check_node_list_has_a_resource_version_no_older_than_its_nodes, ()),
    ("node_watch_order", check_node_watch_from_the_list_version_sees_added_modified_deleted_in_order, ()),
    ("node_watch_from_zero", check_node_watch_without_a_version_starts_with_the_existing_nodes_as_added, ()),
    ("node_watch_timeout", check_node_watch_ends_at_its_timeout_without_an_error, ()),
    ("bookmarks", check_bookmarks_come_only_when_asked_for_two_seconds_before_the_timeout, ()),
    ("watch_410", check_watch_from_a_too_old_version_is_an_error_event_410_expired, ()),
    ("watch_bad_version", check_watch_from_a_malformed_version_is_500, ()),
    ("merge_patch_labels", check_label_patch_null_deletes_a_key_and_leaves_the_others, (MERGE,)),
    ("strategic_patch_labels", check_label_patch_null_deletes_a_key_and_leaves_the_others, (STRATEGIC,)),
    ("merge_patch_404", check_label_patch_of_a_missing_node_is_404_not_found, (MERGE,)),
    ("strategic_patch_404", check_label_patch_of_a_missing_node_is_404_not_found, (STRATEGIC,)),
    ("patch_409", check_label_patch_with_a_stale_resource_version_is_409_conflict, ()),
    ("label_422", check_label_key_or_value_kubernetes_refuses_is_422_invalid, ()),
    ("strategic_lists", check_strategic_merge_patch_merges_conditions_by_type_and_finalizers_as_a_set, ()),
    ("node_create_status", check_node_create_keeps_its_status_and_defaults_allocatable_to_capacity, ()),
    ("node_status_subresource", check_node_status_is_written_only_through_the_status_subresource, ()),
    ("error_bodies", check_error_bodies_are_status_objects, ()),
    ("lease_conflicts", check_lease_create_get_update_and_conflicts, ()),
    ("lease_put_creates", check_lease_put_of_a_missing_lease_creates_it, ()),
    *[(f"lease_spec_{label}", check_lease_spec_that_is_not_an_object_is_refused_400, (spec,))
      for label, spec in (("string", "garbage"), ("list", [1, 2]), ("number", 42), ("bool", True))],
    ("lease_spec_null", check_lease_spec_null_is_stored_as_an_empty_spec, ()),
    ("lease_duration", check_lease_duration_is_a_positive_int32, ()),
    ("lease_times", check_lease_times_need_six_fraction_digits_and_come_back_in_utc, ()),
    ("lease_stored_corrupt", check_stored_lease_whose_spec_is_not_an_object_is_500_on_read, ()),
]
