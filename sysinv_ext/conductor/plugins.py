"""The enabled Kubernetes device plugins: parsing of ``enabled_kube_plugins`` and change-watching.

``parse_enabled_plugins`` is pure: it turns any StarlingX form of the file (2019 dict
name -> "key=value", 2023 list of label keys, list of plugin names) into label key -> value.
``PluginsFile`` re-reads the file only when its mtime/size/inode change; a missing file means
nothing is enabled, a corrupt file is logged once and the previous content stays in force.
"""
from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from oslo_log import log as logging

from sysinv_ext.common import exception

LOG = logging.getLogger(__name__)

DEFAULT_LABEL_VALUE = "enabled"

# Plugin name (DaemonSet name, ansible k8s_plugins entry) -> (label key, label value).
CATALOG: Mapping[str, tuple[str, str]] = MappingProxyType({
    "intel-gpu-plugin": ("intelgpu", "enabled"),
})

# Kubernetes label syntax: optional DNS-subdomain prefix and "/", a name of at most 63 characters.
_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")

EnabledLabels = Mapping[str, str]


def is_label_key(key: object) -> bool:
    """True when ``key`` is a valid Kubernetes label key ("name" or "prefix/name")."""
    if not isinstance(key, str) or not key:
        return False
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _PREFIX_RE.match(prefix)):
        return False
    if key.endswith("/") or (not prefix and "/" in key):
        return False
    return bool(_NAME_RE.match(name))


def is_label_value(value: object) -> bool:
    """True when ``value`` is a valid Kubernetes label value (may be empty)."""
    return isinstance(value, str) and len(value) <= 63 and bool(_VALUE_RE.match(value))


def _split_label(entry: str, where: str) -> tuple[str, str]:
    key, sep, value = entry.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not is_label_key(key) or not is_label_value(value):
        raise ValueError(f"{where}: {entry!r} is not a key=value label")
    return key, value


def _from_list_entry(entry: object, index: int) -> tuple[str, str]:
    where = f"entry {index}"
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError(f"{where}: {entry!r} is not a plugin name or label key")
    entry = entry.strip()
    if entry in CATALOG:
        return CATALOG[entry]
    if "=" in entry:
        return _split_label(entry, where)  # 2019 conductors read the dict's values as a list
    if is_label_key(entry):
        return entry, DEFAULT_LABEL_VALUE  # 2023: the label key itself, value "enabled"
    raise ValueError(f"{where}: {entry!r} is not a plugin name or label key")


def parse_enabled_plugins(data: object) -> dict[str, str]:
    """Label key -> value for the decoded JSON of an enabled_kube_plugins file.

    Raises ValueError naming the offending entry; ``None`` (JSON null) means nothing enabled.
    """
    pairs: list[tuple[str, str]] = []
    if data is None:
        return {}
    if isinstance(data, dict):
        for name, label in data.items():
            if not isinstance(label, str):
                raise ValueError(f"plugin {name!r}: label {label!r} is not a key=value string")
            pairs.append(_split_label(label, f"plugin {name!r}"))
    elif isinstance(data, list):
        pairs.extend(_from_list_entry(entry, i) for i, entry in enumerate(data))
    else:
        raise ValueError(f"expected a JSON object or list, got {type(data).__name__}")
    result: dict[str, str] = {}
    for key, value in pairs:
        if result.get(key, value) != value:
            raise ValueError(f"label {key!r} is enabled with two values ({result[key]!r}, {value!r})")
        result[key] = value
    return result


def parse_enabled_plugins_text(text: str) -> dict[str, str]:
    """``parse_enabled_plugins`` for the raw file text; raises ValueError on bad JSON too."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON: {err}") from err
    return parse_enabled_plugins(data)


@dataclass(frozen=True)
class FileStamp:
    """What identifies one version of the file on disk."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


class PluginsFile:
    """The enabled plugins of one file path, re-read only when the file changes. Thread-safe."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: FileStamp | None = None
        self._missing_logged = False
        self._labels: EnabledLabels = MappingProxyType({})
        self._valid = True

    @property
    def valid(self) -> bool:
        """False while the file on disk is corrupt (the labels in force are an older version,
        or nothing at all if the file was corrupt from the start)."""
        with self._lock:
            return self._valid

    def current(self) -> EnabledLabels:
        """The enabled label key -> value mapping now (read-only)."""
        with self._lock:
            try:
                stamp = FileStamp.of(os.stat(self.path))
            except FileNotFoundError:
                if not self._missing_logged:
                    LOG.info("Enabled kube plugins file %s is absent: no device plugin is enabled",
                             self.path)
                    self._missing_logged = True
                self._stamp, self._labels, self._valid = None, MappingProxyType({}), True
                return self._labels
            except OSError as err:
                LOG.error("Cannot stat enabled kube plugins file %s: %s; keeping %s",
                          self.path, err, dict(self._labels))
                return self._labels
            self._missing_logged = False
            if stamp != self._stamp:
                self._stamp = stamp  # a corrupt version is reported once, not on every call
                self._reload()
            return self._labels

    def _reload(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
            labels = parse_enabled_plugins_text(text)
        except (OSError, UnicodeDecodeError, ValueError) as err:
            error = exception.PluginsFileError(path=self.path, reason=str(err))
            LOG.error("%s; keeping the previous enabled plugins %s", error, dict(self._labels))
            self._valid = False
            return
        self._valid = True
        if labels != dict(self._labels):
            LOG.info("Enabled kube plugin labels from %s: %s", self.path, labels)
        self._labels = MappingProxyType(labels)
