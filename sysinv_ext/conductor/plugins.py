"""The enabled Kubernetes device plugins: parsing of ``enabled_kube_plugins`` and change-watching.

``parse_enabled_plugins`` is pure: it turns any StarlingX form of the file (2019 dict
name -> "key=value", 2023 list of label keys, list of plugin names) into label key -> value.
``split_allowed`` (pure) keeps only label keys of known device plugins (the catalog, plus
``[conductor]allowed_label_keys``): one typo in the file must never let the conductor set or
remove ``kubernetes.io/hostname`` or ``node-role.*``, which the scheduler and control plane own.
``PluginsFile`` re-reads the file only when its mtime/size/inode change; a missing file means
nothing is enabled, a corrupt file is logged once and the previous content stays in force. It
opens without blocking (a FIFO in the file's place must not stall the conductor), reads only
regular files of bounded size, and its error lines name the file and the reason, never the
content (the path may be a symlink to a credentials file).
"""
from __future__ import annotations

import json
import os
import re
import stat
import threading
from collections.abc import Iterable, Mapping
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

MAX_FILE_BYTES = 1 << 20  # the real file is tens of bytes; anything near this is not it
# Label prefixes Kubernetes reserves for itself (and node-role.*, which kubeadm and the
# control plane use): never set or removed by the conductor, whatever a file or option says.
_RESERVED_DOMAINS = ("kubernetes.io", "k8s.io")


def is_reserved_label_key(key: str) -> bool:
    """True for ``kubernetes.io/*``, ``k8s.io/*`` (and their subdomains) and ``node-role*``."""
    prefix = key.rpartition("/")[0]
    if any(prefix == domain or prefix.endswith("." + domain) for domain in _RESERVED_DOMAINS):
        return True
    return key.startswith("node-role")


def catalog_label_keys() -> frozenset[str]:
    return frozenset(key for key, _ in CATALOG.values())


def allowed_keys(extra: Iterable[str] = ()) -> tuple[frozenset[str], list[str]]:
    """(keys the conductor may manage, entries of ``extra`` refused): the catalog's label keys
    plus the valid, non-reserved keys of ``extra`` ([conductor]allowed_label_keys)."""
    allowed, refused = set(catalog_label_keys()), []
    for key in extra:
        if is_label_key(key) and not is_reserved_label_key(key):
            allowed.add(key)
        else:
            refused.append(_short(key))
    return frozenset(allowed), refused


def split_allowed(labels: Mapping[str, str], allowed: frozenset[str]) -> tuple[dict[str, str], list[str]]:
    """(labels whose key is allowed, sorted refused keys). Pure."""
    kept = {key: value for key, value in labels.items()
            if key in allowed and not is_reserved_label_key(key)}
    return kept, sorted(key for key in labels if key not in kept)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


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


# Error messages name an entry by position (or by its catalog plugin name) and say what is
# wrong, never quoting the entry: the "file" may be a symlink to a credentials file.

def _split_label(entry: str, where: str) -> tuple[str, str]:
    key, sep, value = entry.partition("=")
    key, value = key.strip(), value.strip()
    if not sep:
        raise ValueError(f"{where}: not a key=value label (no '=')")
    if not is_label_key(key):
        raise ValueError(f"{where}: not a key=value label (the key is not a label key)")
    if not is_label_value(value):
        raise ValueError(f"{where}: not a key=value label (the value is not a label value)")
    return key, value


def _from_list_entry(entry: object, index: int) -> tuple[str, str]:
    where = f"entry {index}"
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError(f"{where}: a {type(entry).__name__} is not a plugin name or label key")
    entry = entry.strip()
    if entry in CATALOG:
        return CATALOG[entry]
    if "=" in entry:
        return _split_label(entry, where)  # 2019 conductors read the dict's values as a list
    if is_label_key(entry):
        return entry, DEFAULT_LABEL_VALUE  # 2023: the label key itself, value "enabled"
    raise ValueError(f"{where}: not a plugin name or label key")


def _dict_where(name: object, index: int) -> str:
    return f"plugin {name!r}" if name in CATALOG else f"entry {index}"


def parse_enabled_plugins(data: object) -> dict[str, str]:
    """Label key -> value for the decoded JSON of an enabled_kube_plugins file.

    Raises ValueError naming the offending entry; ``None`` (JSON null) means nothing enabled.
    """
    pairs: list[tuple[str, str]] = []
    if data is None:
        return {}
    if isinstance(data, dict):
        for index, (name, label) in enumerate(data.items()):
            where = _dict_where(name, index)
            if not isinstance(label, str):
                raise ValueError(f"{where}: a {type(label).__name__} is not a key=value string")
            pairs.append(_split_label(label, where))
    elif isinstance(data, list):
        pairs.extend(_from_list_entry(entry, i) for i, entry in enumerate(data))
    else:
        raise ValueError(f"expected a JSON object or list, got {type(data).__name__}")
    result: dict[str, str] = {}
    for key, value in pairs:
        if result.get(key, value) != value:
            raise ValueError(f"label {_short(key)} is enabled with two values")
        result[key] = value
    return result


def parse_enabled_plugins_text(text: str) -> dict[str, str]:
    """``parse_enabled_plugins`` for the raw file text; raises ValueError on bad JSON too."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:  # its message gives a position, never the text
        raise ValueError(f"not JSON: {err}") from err
    except RecursionError as err:  # e.g. [[[[...]]]] 100,000 deep
        raise ValueError("not usable JSON: nested too deeply") from err
    return parse_enabled_plugins(data)


def read_regular_file(path: str, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of ``path``; never blocks on open (a FIFO, a device) and refuses anything
    but a regular file of at most ``limit`` bytes. Raises ValueError or OSError with a reason
    that never quotes the content."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > limit:
            raise ValueError(f"{st.st_size} bytes (at most {limit})")
        data = b""
        while len(data) <= limit and (chunk := os.read(fd, limit + 1 - len(data))):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"more than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text (byte {err.start})") from err


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

    def __init__(self, path: str, allowed_label_keys: Iterable[str] = ()) -> None:
        self.path = path
        self.allowed, refused = allowed_keys(allowed_label_keys)
        if refused:
            LOG.error("[conductor]allowed_label_keys: %s refused (not a label key, or reserved "
                      "by Kubernetes)", ", ".join(refused))
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
            labels = parse_enabled_plugins_text(read_regular_file(self.path))
        except OSError as err:  # strerror + path only (str(err) is the same, but be explicit)
            self._refuse(err.strerror or type(err).__name__)
            return
        except ValueError as err:
            self._refuse(str(err))
            return
        labels, refused = split_allowed(labels, self.allowed)
        if refused:  # the rest of the file still applies
            LOG.error("Enabled kube plugins file %s: label keys %s refused: not a known device "
                      "plugin's (catalog or [conductor]allowed_label_keys); never set or removed",
                      self.path, ", ".join(_short(key) for key in refused[:10])
                      + (f" and {len(refused) - 10} more" if len(refused) > 10 else ""))
        self._valid = True
        if labels != dict(self._labels):
            LOG.info("Enabled kube plugin labels from %s: %s", self.path, labels)
        self._labels = MappingProxyType(labels)

    def _refuse(self, reason: str) -> None:
        error = exception.PluginsFileError(path=self.path, reason=reason)
        LOG.error("%s; keeping the previous enabled plugins %s", error, dict(self._labels))
        self._valid = False
