"""In-memory object store of the emulated Kubernetes API server (tests/fakes/kube_api.py).

Owns the objects and the API semantics of one request: GET/list/POST/PUT/PATCH/DELETE with
Kubernetes' status codes, resourceVersion (a global counter, unchanged by no-op writes), uid and
generation. Knows nothing of HTTP. EMULATED: see kube_semantics for what patching leaves out.

As kube-apiserver v1.34.1 does (pinned by tests/kube_contract.py on both): a write through the
main resource of a kind with a status subresource keeps the stored ``status`` and one through
``/status`` keeps the stored ``spec``; a Lease may be created by PUT and must carry a
resourceVersion to be updated; a PUT whose body names another object is 400; a Node created
without ``status.allocatable`` gets its ``capacity``; Status ``details`` name the group only
when there is one; kube_validation refuses what the real server cannot decode or validate.
``put_object`` is the tests' back door (like writing etcd): it stores anything, unchecked.
"""
from __future__ import annotations

import copy
import threading
import uuid
from datetime import datetime, timezone
from typing import Any

from tests.fakes.kube_semantics import (
    PATCH_TYPES,
    RESOURCES,
    ApiError,
    Key,
    Obj,
    discovery,
    json_patch,
    match_fields,
    match_labels,
    merge_patch,
    route,
)
from tests.fakes.kube_validation import check, patch_error, storage_error
from tests.fakes.kube_watch import EventLog

#: kinds whose status is written only through /status (and spec only through the main resource)
STATUS_SUBRESOURCE = frozenset({("", "v1", "nodes"), ("", "v1", "pods"), ("apps", "v1", "daemonsets"),
                                ("apps", "v1", "deployments")})
#: kinds a PUT may create (the Lease strategy's AllowCreateOnUpdate) and that a PUT must not
#: update without metadata.resourceVersion (AllowUnconditionalUpdate false)
CREATE_ON_UPDATE = frozenset({("coordination.k8s.io", "v1", "leases")})


def resource_name(group: str, plural: str) -> str:
    """``nodes``, ``leases.coordination.k8s.io``: how Status messages name a resource."""
    return f"{plural}.{group}" if group else plural


def details(name: str, group: str, plural: str) -> Obj:
    """Status details as the real server writes them (no ``group`` key for the core group)."""
    return {"name": name, **({"group": group} if group else {}), "kind": plural}


class KubeStore:
    """Thread-safe objects keyed by (group, version, plural, namespace, name)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._objects: dict[Key, Obj] = {}
        self._revision = 0
        self.events = EventLog()
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    def put_object(self, obj: Obj) -> Obj:
        """Create or replace any served object from its apiVersion/kind/metadata."""
        group, _, version = obj["apiVersion"].rpartition("/")
        plural = next(p for (g, v, p), (k, _, _) in RESOURCES.items()
                      if (g, v, k) == (group, version, obj["kind"]))
        key = (group, version, plural, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        with self._lock:
            return copy.deepcopy(self._save(key, copy.deepcopy(obj), self._objects.get(key)))

    def get_object(self, api_version: str, plural: str, name: str, namespace: str = "") -> Obj | None:
        group, _, version = api_version.rpartition("/")
        with self._lock:
            found = self._objects.get((group, version, plural, namespace, name))
            return copy.deepcopy(found) if found else None

    def list_objects(self, api_version: str, plural: str) -> list[Obj]:
        group, _, version = api_version.rpartition("/")
        with self._lock:
            return [copy.deepcopy(o) for k, o in sorted(self._objects.items())
                    if k[:3] == (group, version, plural)]

    def _save(self, key: Key, obj: Obj, old: Obj | None) -> Obj:
        group, version, plural = key[:3]
        meta = obj["metadata"] = dict(obj.get("metadata") or {})  # never mutate a saved object's
        if old is not None and _strip_meta(old) == _strip_meta(obj):
            return old  # no-op: keep resourceVersion (kubectl apply then reports "unchanged")
        obj["apiVersion"] = f"{group}/{version}" if group else version
        obj["kind"] = RESOURCES[(group, version, plural)][0]
        meta["name"] = key[4]
        if key[3]:
            meta["namespace"] = key[3]
        old_meta = (old or {}).get("metadata", {})
        meta["uid"] = old_meta.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = old_meta.get("creationTimestamp") or \
            datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        spec_changed = old is None or old.get("spec") != obj.get("spec")
        meta["generation"] = int(old_meta.get("generation", 0)) + (1 if spec_changed else 0)
        self._revision += 1
        meta["resourceVersion"] = str(self._revision)
        self._objects[key] = obj
        self.events.append(self._revision, "ADDED" if old is None else "MODIFIED", key, obj)
        return obj

    def snapshot(self, key: Key) -> tuple[list[Obj], int]:
        """The objects of ``key``'s collection and the revision they are at (a watch from 0)."""
        with self._lock:
            items = [o for k, o in sorted(self._objects.items())
                     if k[:3] == key[:3] and (not key[3] or k[3] == key[3])]
            return items, self._revision

    @property
    def revision(self) -> int:
        with self._lock:
            return self._revision

    def delete_object(self, key: Key) -> Obj | None:
        """Remove the object at ``key`` (a DELETED event at a new resourceVersion)."""
        with self._lock:
            current = self._objects.pop(key, None)
            if current is not None:
                self._revision += 1
                gone = {**current, "metadata": {**current["metadata"],
                                                "resourceVersion": str(self._revision)}}
                self.events.append(self._revision, "DELETED", key, gone)
            return current

    def handle(self, method: str, path: str, query: dict[str, list[str]], ctype: str,
                body: Any) -> tuple[int, Obj]:
        """One request. The answer may share objects with the store: serialize it, never
        mutate it (saved objects are replaced, never changed in place)."""
        parts = [p for p in path.split("/") if p]
        document = discovery(parts)
        if document is not None:
            if method != "GET":
                raise ApiError(405, f"{method} not allowed on {path}")
            return 200, document
        key, subresource = route(parts)
        if key is None:
            raise ApiError(404, "the server could not find the requested resource", details={})
        group, version, plural, ns, name = key
        kind, namespaced, _ = RESOURCES[(group, version, plural)]
        with self._lock:
            sent_ns = (body.get("metadata") or {}).get("namespace") if isinstance(body, dict) and \
                isinstance(body.get("metadata"), dict) else None
            if method == "POST" and ns and sent_ns and sent_ns != ns:  # checked before the namespace exists
                raise ApiError(400, "the namespace of the provided object does not match the namespace "
                               "sent on the request")
            if namespaced and ns and method in ("POST", "PUT", "PATCH") and \
                    ("", "v1", "namespaces", "", ns) not in self._objects:
                raise ApiError(404, f'namespaces "{ns}" not found', details=details(ns, "", "namespaces"))
            if not name:
                if method == "GET":
                    return 200, self._list(key, kind, query)
                if method == "POST":
                    return 201, self._create(key, body)
                raise ApiError(405, f"{method} not allowed on a collection")
            current = self._objects.get(key)
            if current is None and method == "PUT" and key[:3] in CREATE_ON_UPDATE:
                new = _checked(body, None, key)
                check(key, new)
                return 201, self._save(key, new, None)
            if current is None:
                raise ApiError(404, f'{resource_name(group, plural)} "{name}" not found',
                               details=details(name, group, plural))
            if method in ("GET", "PUT", "PATCH"):
                corrupt = storage_error(key, current)
                if corrupt is not None:
                    raise corrupt
            if method == "GET":
                return 200, current
            if method == "DELETE":
                self.delete_object(key)
                return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                             "details": {**details(name, group, plural),
                                         "uid": current["metadata"]["uid"]}}
            if method == "PUT":
                new = _checked(body, current, key)
            elif method == "PATCH":
                new = _patched(current, ctype, body, key)
                undecodable = patch_error(key, new)
                if undecodable is not None:
                    raise undecodable
            else:
                raise ApiError(405, f"{method} not allowed")
            if key[:3] in STATUS_SUBRESOURCE:
                kept = "spec" if subresource == "status" else "status"
                new.pop(kept, None)
                if kept in current:
                    new[kept] = copy.deepcopy(current[kept])
            check(key, new)
            return 200, self._save(key, new, current)

    def _list(self, key: Key, kind: str, query: dict[str, list[str]]) -> Obj:
        selector = query.get("labelSelector", [""])[0]
        fields = query.get("fieldSelector", [""])[0]
        items = [o for k, o in sorted(self._objects.items())
                 if k[:3] == key[:3] and (not key[3] or k[3] == key[3])
                 and match_labels(o["metadata"].get("labels") or {}, selector)
                 and match_fields(o, fields)]
        return {"kind": f"{kind}List", "apiVersion": items[0]["apiVersion"] if items else
                (f"{key[0]}/{key[1]}" if key[0] else key[1]),
                "metadata": {"resourceVersion": str(self._revision)}, "items": items}

    def _create(self, key: Key, body: Any) -> Obj:
        if not isinstance(body, dict) or not body.get("metadata", {}).get("name"):
            raise ApiError(422, "metadata.name: Required value: name is required")
        name = body["metadata"]["name"]
        body_ns = body["metadata"].get("namespace")
        if key[3] and body_ns and body_ns != key[3]:
            raise ApiError(400, "the namespace of the provided object does not match the namespace sent "
                           "on the request")
        full = key[:4] + (name,)
        if full in self._objects:
            raise ApiError(409, f'{resource_name(key[0], key[2])} "{name}" already exists',
                           "AlreadyExists", details(name, key[0], key[2]))
        new = copy.deepcopy(body)
        check(full, new)
        if key[:3] == ("", "v1", "nodes") and isinstance(new.get("status"), dict) \
                and not new["status"].get("allocatable") and new["status"].get("capacity"):
            new["status"]["allocatable"] = dict(new["status"]["capacity"])  # SetDefaults_NodeStatus
        return self._save(full, new, None)


def _strip_meta(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    for k in ("resourceVersion", "generation", "uid", "creationTimestamp", "managedFields"):
        out.get("metadata", {}).pop(k, None)
    return out


def _checked(body: Any, current: Obj | None, key: Key) -> Obj:
    """A PUT body (or a merge patch) checked against the stored object: same name (400), the
    resourceVersion it names still current (409), one named at all for kinds that need it (422)."""
    group, _, plural, _, name = key
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    meta: Obj = body["metadata"] if isinstance(body.get("metadata"), dict) else {}
    sent_name = meta.get("name")
    if sent_name is not None and sent_name != name:
        raise ApiError(400, f"the name of the object ({sent_name}) does not match the name on the URL "
                       f"({name})")
    sent = meta.get("resourceVersion")
    if current is None:
        return copy.deepcopy(body)
    if sent and sent != current["metadata"]["resourceVersion"]:
        raise ApiError(409, f'Operation cannot be fulfilled on {resource_name(group, plural)} "{name}": '
                       "the object has been modified; please apply your changes to the latest "
                       "version and try again", "Conflict", details(name, group, plural))
    if not sent and key[:3] in CREATE_ON_UPDATE:
        message = "Invalid value: 0: must be specified for an update"
        raise ApiError(422, f'{resource_name(group, plural)} "{name}" is invalid: '
                       f"metadata.resourceVersion: {message}", "Invalid",
                       {**details(name, group, plural), "causes": [
                           {"reason": "FieldValueInvalid", "message": message,
                            "field": "metadata.resourceVersion"}]})
    return copy.deepcopy(body)


def _patched(current: Obj, ctype: str, body: Any, key: Key) -> Obj:
    base = ctype.split(";")[0].strip()
    if base == "application/json-patch+json":
        if not isinstance(body, list):
            raise ApiError(400, "json patch body must be a list of operations")
        result = json_patch(current, body)
        if not isinstance(result, dict):
            raise ApiError(422, "json patch must leave an object")
        return result
    if base in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        if not isinstance(body, dict):
            raise ApiError(400, "error decoding patch: json: cannot unmarshal array into Go value of "
                           "type map[string]interface {}")
        if isinstance(body.get("metadata"), dict) and body["metadata"].get("resourceVersion"):
            _checked({"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]}}, current, key)
        new = merge_patch(current, body, strategic=base.startswith("application/strategic"))
        new.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        return dict(new)
    raise ApiError(415, f"the body of the request was in an unknown format - accepted media types include: "
                   f"{', '.join(PATCH_TYPES)}")
