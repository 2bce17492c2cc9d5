"""Filter ``bringup_kubemaster_plugins``: normalise the role's plugin selection into one dict.

Accepts ``kube_plugins`` / StarlingX ``k8s_plugins`` in every form they took: a list of plugin
names, a list of label keys (2023, e.g. ``intelgpu``), or a dict name -> "key=value" (2019).
Returns ``{"plugins": {name: "key=value"}, "errors": [message, ...]}`` so that the role's
preflight can assert with a message naming each bad entry before anything changes.
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


def normalize(selection: Any, catalog: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Resolve a list or dict plugin selection against ``catalog`` (name -> {label: ...})."""
    by_key = {str(entry["label"]).split("=")[0]: name for name, entry in catalog.items()}
    plugins: dict[str, str] = {}
    errors: list[str] = []
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
        plugins[name] = str(label)
    return {"plugins": plugins, "errors": errors}


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {"bringup_kubemaster_plugins": normalize}
