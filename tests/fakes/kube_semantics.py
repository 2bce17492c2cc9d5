"""What the emulated Kubernetes API server (tests/fakes/kube_api.py) serves, as pure functions.

The resource table, discovery documents, URL routing, RFC 7386 merge patch, an emulated strategic
merge patch (deep merge; lists of dicts merged by ``name``, ``conditions``/``addresses`` by
``type``, ``finalizers`` as a set with the patch's items first, as kube-apiserver v1.34.1 does),
RFC 6902 JSON patch, label selectors and Status bodies. EMULATED: no OpenAPI-driven patch
strategies (the keys above are a fixed table), no ``$retainKeys``.
"""
from __future__ import annotations

import copy
import re
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str, str, str, str]  # group, version, plural, namespace ("" = cluster), name

# (group, version, plural) -> (kind, namespaced, short names)
RESOURCES: dict[tuple[str, str, str], tuple[str, bool, tuple[str, ...]]] = {
    ("", "v1", "nodes"): ("Node", False, ("no",)),
    ("", "v1", "namespaces"): ("Namespace", False, ("ns",)),
    ("", "v1", "serviceaccounts"): ("ServiceAccount", True, ("sa",)),
    ("", "v1", "configmaps"): ("ConfigMap", True, ("cm",)),
    ("", "v1", "secrets"): ("Secret", True, ()),
    ("", "v1", "services"): ("Service", True, ("svc",)),
    ("", "v1", "pods"): ("Pod", True, ("po",)),
    ("apps", "v1", "daemonsets"): ("DaemonSet", True, ("ds",)),
    ("apps", "v1", "deployments"): ("Deployment", True, ("deploy",)),
    ("coordination.k8s.io", "v1", "leases"): ("Lease", True, ()),
    ("rbac.authorization.k8s.io", "v1", "clusterroles"): ("ClusterRole", False, ()),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"): ("ClusterRoleBinding", False, ()),
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json")


class ApiError(Exception):
    """Turned into a Kubernetes Status response by the handler."""

    REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
               405: "MethodNotAllowed", 409: "AlreadyExists", 415: "UnsupportedMediaType", 422: "Invalid",
               429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}

    def __init__(self, code: int, message: str, reason: str | None = None,
                 details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details
        # reason None: the usual one for the code; "" : none at all (some real 500s have none)
        self.reason = self.REASONS.get(code, "Unknown") if reason is None else reason


def status_body(code: int, message: str, reason: str, details: Obj | None = None) -> Obj:
    """A Kubernetes ``Status`` object as the real API server returns for failures."""
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": message, "reason": reason, "code": code}
    if not reason:
        del body["reason"]
    if details is not None:
        body["details"] = details
    return body


def merge_patch(target: Any, patch: Any, strategic: bool = False) -> Any:
    """RFC 7386 merge patch; ``strategic`` also merges lists of dicts by ``name`` (emulated SMP)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    order: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if strategic and key.startswith("$setElementOrder/"):
            order[key.split("/", 1)[1]] = value
        elif strategic and key.startswith("$"):
            continue  # $retainKeys, $patch, $deleteFromPrimitiveList/...: not emulated
        elif value is None:
            result.pop(key, None)
        elif strategic and key in SET_LISTS and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = list(dict.fromkeys([*value, *result[key]]))  # the patch's first (as real)
        elif strategic and _named_dicts(value, MERGE_KEYS.get(key, "name")) and \
                isinstance(result.get(key), list):
            result[key] = _merge_named(result[key], value, order.get(key), MERGE_KEYS.get(key, "name"))
        else:
            result[key] = merge_patch(result.get(key), value, strategic)
    return result


#: list fields merged by another key than ``name`` (patchMergeKey of the Kubernetes types)
MERGE_KEYS = {"conditions": "type", "addresses": "type"}
#: lists of strings merged as sets (patchStrategy merge on a primitive list)
SET_LISTS = frozenset({"finalizers"})


def _named_dicts(items: Any, key: str = "name") -> bool:
    return isinstance(items, list) and bool(items) and all(isinstance(i, dict) and key in i for i in items)


def _merge_named(current: list[Any], patch: list[Obj], order: list[Any] | None,
                 key: str = "name") -> list[Any]:
    merged = {i.get(key): i for i in current if isinstance(i, dict)}
    for item in patch:
        if item.get("$patch") == "delete":
            merged.pop(item[key], None)
        else:
            merged[item[key]] = merge_patch(merged.get(item[key]), item, strategic=True)
    names = [o[key] for o in order or [] if isinstance(o, dict) and key in o]
    names += [n for n in merged if n not in names]
    return [merged[n] for n in names if n in merged]


def json_patch(doc: Any, ops: list[Obj]) -> Any:
    """RFC 6902 JSON patch (add, replace, remove, test, copy, move) with ``~0``/``~1`` escaping."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        if kind in ("copy", "move"):
            value = _resolve(doc, op["from"])
            if kind == "move":
                doc = _apply_op(doc, "remove", op["from"], None)
            doc = _apply_op(doc, "add", path, copy.deepcopy(value))
        elif kind == "test":
            if _resolve(doc, path) != op.get("value"):
                raise ApiError(422, f"json patch test failed at {path}")
        elif kind in ("add", "replace", "remove"):
            doc = _apply_op(doc, kind, path, op.get("value"))
        else:
            raise ApiError(400, f"unknown json patch op {kind!r}")
    return doc


def _tokens(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, f"json patch path {path!r} must start with /")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _resolve(doc: Any, path: str) -> Any:
    for tok in _tokens(path):
        try:
            doc = doc[int(tok)] if isinstance(doc, list) else doc[tok]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(422, f"json patch path {path!r} does not exist") from None
    return doc


def _apply_op(doc: Any, kind: str, path: str, value: Any) -> Any:
    toks = _tokens(path)
    if not toks:
        return value
    parent = _resolve(doc, "/" + "/".join(t.replace("~", "~0").replace("/", "~1") for t in toks[:-1])) \
        if len(toks) > 1 else doc
    last = toks[-1]
    if isinstance(parent, list):
        idx = len(parent) if last == "-" else _index(last, path)
        if kind == "add" and 0 <= idx <= len(parent):
            parent.insert(idx, value)
        elif kind != "add" and 0 <= idx < len(parent):
            if kind == "remove":
                parent.pop(idx)
            else:
                parent[idx] = value
        else:
            raise ApiError(422, f"json patch index out of range at {path!r}")
    elif isinstance(parent, dict):
        if kind != "add" and last not in parent:
            raise ApiError(422, f"json patch path {path!r} does not exist")
        if kind == "remove":
            del parent[last]
        else:
            parent[last] = value
    else:
        raise ApiError(422, f"json patch parent of {path!r} is not a container")
    return doc


def _index(tok: str, path: str) -> int:
    try:
        return int(tok)
    except ValueError:
        raise ApiError(422, f"json patch index {tok!r} invalid at {path!r}") from None


def match_fields(obj: dict[str, Any], selector: str) -> bool:
    """Field selector: ``a.b=v``, ``a.b==v``, ``a.b!=v`` over the object's dotted paths (absent = "")."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        path, value = (s.strip() for s in re.split(r"!=|==|=", term, maxsplit=1))
        current: Any = obj
        for part in path.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        actual = "" if current is None else str(current)
        if (actual == value) == negate:
            return False
    return True


def match_labels(labels: dict[str, str], selector: str) -> bool:
    """Label selector: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)``."""
    for term in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        term = term.strip()
        if not term:
            continue
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term)
        if m:
            values = {v.strip() for v in m.group(3).split(",")}
            if (labels.get(m.group(1)) in values) != (m.group(2) == "in"):
                return False
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in re.split("==?", term, maxsplit=1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def route(parts: list[str]) -> tuple[Key | None, str]:
    """Map path segments to (group, version, plural, namespace, name) and a subresource name."""
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None, ""
    ns = ""
    namespaced = len(rest) >= 3 and RESOURCES.get((group, version, rest[2]), ("", False, ()))[1]
    if rest[:1] == ["namespaces"] and namespaced:
        ns, rest = rest[1], rest[2:]
    if not rest or (group, version, rest[0]) not in RESOURCES or len(rest) > 3:
        return None, ""
    return (group, version, rest[0], ns, rest[1] if len(rest) > 1 else ""), (rest[2] if len(rest) > 2 else "")


def discovery(parts: list[str]) -> Obj | None:
    groups = sorted({g for g, _, _ in RESOURCES if g})
    if parts == ["version"]:
        return {"major": "1", "minor": "32", "gitVersion": "v1.32.4-fake", "platform": "linux/amd64"}
    if parts == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
    if parts == ["apis"]:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in groups]}
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1])}
    gv = ("", "v1") if parts == ["api", "v1"] else None
    if len(parts) == 3 and parts[0] == "apis":
        gv = (parts[1], parts[2])
    if gv is None or not any((g, v) == gv for g, v, _ in RESOURCES):
        return None
    resources = [{"name": p, "singularName": k.lower(), "namespaced": n, "kind": k, "verbs": VERBS,
                  "shortNames": list(s)} for (g, v, p), (k, n, s) in RESOURCES.items() if (g, v) == gv]
    resources += [{"name": f"{p}/status", "singularName": "", "namespaced": n, "kind": k,
                   "verbs": ["get", "patch", "update"]}
                  for (g, v, p), (k, n, _) in RESOURCES.items()
                  if (g, v) == gv and p in ("nodes", "daemonsets")]
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{gv[0]}/{gv[1]}" if gv[0] else gv[1], "resources": resources}


def _group(name: str) -> Obj:
    versions = [{"groupVersion": f"{name}/{v}", "version": v} for g, v, _ in dict.fromkeys(
        (g, v, "") for g, v, _ in RESOURCES) if g == name]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}
