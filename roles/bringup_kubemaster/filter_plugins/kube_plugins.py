"""Filter ``bringup_kubemaster_plugins``: normalise the role's plugin selection into one dict.

Accepts ``kube_plugins`` / StarlingX ``k8s_plugins`` in every form they took: a list of plugin
names, a list of label keys (2023, e.g. ``intelgpu``), or a dict name -> "key=value" (2019).
Returns ``{"plugins": {name: "key=value"}, "errors": [message, ...]}`` so that the role's
preflight can assert with a message naming each bad entry before anything changes.
A label key must be the plugin's own (the catalog's) or one listed in
``bringup_kubemaster_allowed_label_keys``; keys Kubernetes owns (``kubernetes.io/*``, ``k8s.io/*``,
``node-role.*``) are refused always: the conductor sets and removes the keys this file names.
``bringup_kubemaster_path_error`` checks the role's path variables in Python, not in a regex
inside YAML (where a folded scalar kept ``\\.`` and the ``..`` check never matched).
"""
from __future__ import annotations

import re
from typing import Any

# Kubernetes label syntax (k8s.io/apimachinery validation): [prefix/]name=value
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"


def label_error(label: Any) -> str | None:
    """Why ``label`` is not a valid ``key=value`` Kubernetes label, or None when it is."""
    if not isinstance(label, str) or label.count("=") != 1:
        return "must be one key=value Kubernetes label"
    key, value = label.split("=")
    prefix, _, name = key.rpartition("/")
    if not re.fullmatch(_NAME, name):
        return f"label key {key!r} is not a valid Kubernetes label key"
    if prefix and (len(prefix) > 253 or not re.fullmatch(_PREFIX, prefix)):
        return f"label key prefix {prefix!r} is not a DNS subdomain"
    if value and not re.fullmatch(_NAME, value):
        return f"label value {value!r} is not a valid Kubernetes label value"
    return None


_RESERVED_DOMAINS = ("kubernetes.io", "k8s.io")
ALLOWED_VAR = "bringup_kubemaster_allowed_label_keys"


def is_reserved_label_key(key: str) -> bool:
    """``kubernetes.io/*``, ``k8s.io/*`` (and subdomains) and ``node-role*``: Kubernetes' own."""
    prefix = key.rpartition("/")[0]
    if any(prefix == domain or prefix.endswith("." + domain) for domain in _RESERVED_DOMAINS):
        return True
    return key.startswith("node-role")


def _key_error(key: str, own_key: str, allowed: Any) -> str | None:
    if is_reserved_label_key(key):
        return f"label key {key!r} belongs to Kubernetes (kubernetes.io/, k8s.io/, node-role.*)"
    if key != own_key and key not in allowed:
        return f"label key {key!r} is neither the plugin's ({own_key!r}) nor in {ALLOWED_VAR}"
    return None


def normalize(selection: Any, catalog: dict[str, dict[str, Any]],
              allowed_keys: Any = ()) -> dict[str, Any]:
    """Resolve a list or dict plugin selection against ``catalog`` (name -> {label: ...});
    ``allowed_keys`` are label keys allowed besides each plugin's own."""
    by_key = {str(entry["label"]).split("=")[0]: name for name, entry in catalog.items()}
    plugins: dict[str, str] = {}
    errors: list[str] = []
    allowed = list(allowed_keys or ())
    for key in allowed:
        if not isinstance(key, str) or is_reserved_label_key(key):
            errors.append(f"{ALLOWED_VAR}: {key!r} refused (not a string, or a key Kubernetes owns)")
    if selection is None or selection == "":
        return {"plugins": plugins, "errors": errors}
    if isinstance(selection, dict):
        items = [(str(name), label) for name, label in selection.items()]
    elif isinstance(selection, list):
        items = [(str(entry), None) for entry in selection]
    else:
        errors.append(f"plugin selection must be a list or a dict, not {selection!r}")
        return {"plugins": plugins, "errors": errors}
    for entry, label in items:
        name = entry if entry in catalog else by_key.get(entry)
        if name is None:
            errors.append(f"unknown plugin {entry!r} (known: {', '.join(sorted(catalog))})")
            continue
        if name in plugins:
            errors.append(f"plugin {entry!r} is selected more than once (as {name!r})")
            continue
        label = catalog[name]["label"] if label in (None, "") else label
        problem = label_error(label)
        if problem:
            errors.append(f"plugin {entry!r}: label {label!r} {problem}")
            continue
        problem = _key_error(str(label).split("=")[0], str(catalog[name]["label"]).split("=")[0],
                             allowed)
        if problem:
            errors.append(f"plugin {entry!r}: {problem}")
            continue
        plugins[name] = str(label)
    return {"plugins": plugins, "errors": errors}


def path_error(path: Any, variable: str, socket: bool = False) -> str | None:
    """Why ``path`` is not acceptable for ``variable`` (absolute, no ``.``/``..`` component, no
    ``//``, no trailing ``/``; a socket sits below a directory other than / and fits in 107
    bytes), or None. An empty path is the caller's business (often: the feature is off)."""
    text = "" if path is None else str(path)
    problems = []
    if not text.startswith("/"):
        problems.append("is not absolute")
    parts = text.split("/")[1:]
    if any(part in (".", "..") for part in parts):
        problems.append("has a '.' or '..' component")
    if "//" in text or (text.endswith("/") and text != "/"):
        problems.append("has an empty component")
    if socket and (len(parts) < 2 or not parts[0]):
        problems.append("is not below a directory other than /")
    if socket and len(text.encode()) > 107:
        problems.append(f"is {len(text.encode())} bytes (a socket path has at most 107)")
    if not problems:
        return None
    return f"{variable} {' and '.join(problems)}: {text!r}"


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {"bringup_kubemaster_plugins": normalize,
                "bringup_kubemaster_path_error": path_error}
