"""Node labels for Intel GPUs, computed as upstream's labeler does (cmd/internal/labeler/labeler.go).

Owns the label names, value formats and the splitting of long values over several keys
(``pluginutils.SplitAtLastAlphaNum``), so that `intel-gpu-nfdhook` prints exactly what the Go
hook prints for the same sysfs tree. Pure functions over a sysfs ``class/drm`` directory and an
environment mapping; no process state.
"""
from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Callable, Mapping

from gpu_plugin.common.atomic_file import replace_file
from gpu_plugin.common.label_split import concat_split_chunks as concat_split_chunks  # re-exported
from gpu_plugin.common.label_split import split as split
from gpu_plugin.common.label_split import split_at_last_alnum as split_at_last_alnum

LOG = logging.getLogger(__name__)

LABEL_NAMESPACE = "gpu.intel.com/"
LABEL_MAX_LENGTH = 63
LABEL_CONTROL_CHAR = "Z"
MILLICORES_PER_GPU = 1000
MEMORY_OVERRIDE_ENV = "GPU_MEMORY_OVERRIDE"
MEMORY_RESERVED_ENV = "GPU_MEMORY_RESERVED"
PCI_GROUPING_ENV = "GPU_PCI_GROUPING_LEVEL"
INTEL_VENDOR = "0x8086"

_GPU_RE = re.compile(r"^card[0-9]+$")
_UINT64 = 2**64
_MAX_INT64 = 2**63 - 1

#: bdf -> device memory in bytes; raises on failure (the Level-Zero sidecar's GetDeviceMemoryAmount)
MemorySource = Callable[[str], int]


class LabelerError(Exception):
    """The sysfs tree cannot be labelled at all (upstream returns an error and prints nothing)."""


def add_splittable(labels: dict[str, str], base: str, value: str) -> None:
    """``labelMap.addSplittableString``: ``base``, ``base2``, ``base3`` … for a long value."""
    chunks = split_at_last_alnum(value, LABEL_MAX_LENGTH, LABEL_CONTROL_CHAR)
    if not chunks:
        return
    labels[base] = chunks[0]
    for i, chunk in enumerate(chunks[1:], start=2):
        labels[f"{base}{i}"] = chunk


def _add_numeric(labels: dict[str, str], name: str, value: int) -> None:
    labels[name] = str(int(labels.get(name, "0")) + value)


def env_number(env: Mapping[str, str], name: str) -> int:
    """``getEnvVarNumber``: a base-10 uint64 from the environment, else 0."""
    text = env.get(name, "")
    if text.isascii() and text.isdigit() and int(text) < _UINT64:
        return int(text)
    return 0


def _parse_uint_base0(text: str) -> int:
    """``strconv.ParseUint(s, 0, 64)``: 0x/0o/0b prefixes, legacy leading-0 octal, Go digit underscores."""
    if not text or not text.isascii() or text[0] in "+-":
        raise ValueError(f"invalid syntax: {text!r}")
    if len(text) > 1 and text[0] == "0" and text[1].isdigit():
        text = "0o" + text[1:]
    value = int(text, 0)
    if value >= _UINT64:
        raise ValueError(f"value out of range: {text!r}")
    return value


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def is_sriov_pf_with_vfs(card_path: str) -> bool:
    """``pluginutils.IsSriovPFwithVFs``: ``device/sriov_numvfs`` readable and not 0."""
    try:
        numvfs = _read(os.path.join(card_path, "device", "sriov_numvfs")).strip()
    except OSError:
        return False
    return numvfs not in ("-1", "0")


def scan_cards(drm_dir: str) -> list[str]:
    """Names of the Intel GPU cards under ``drm_dir`` in directory (plain string) order."""
    try:
        entries = sorted(os.listdir(drm_dir))
    except OSError as err:
        raise LabelerError(f"can't read sysfs folder {drm_dir}: {err}") from err
    cards = []
    for name in entries:
        if not _GPU_RE.match(name):
            continue
        card = os.path.join(drm_dir, name)
        try:
            vendor = _read(os.path.join(card, "device", "vendor")).strip()
        except OSError as err:
            LOG.warning("skipping %s: can't read vendor file: %s", name, err)
            continue
        if vendor != INTEL_VENDOR or is_sriov_pf_with_vfs(card):
            continue
        try:
            os.listdir(os.path.join(card, "device", "drm"))
        except OSError as err:
            raise LabelerError(f"can't read device folder of {name}: {err}") from err
        cards.append(name)
    return cards


def tile_count(card_path: str) -> int:
    """``GetTileCount``: ``gt/gt*`` (i915) plus ``device/tile?`` (xe); at least 1."""
    found = glob.glob(os.path.join(glob.escape(card_path), "gt", "gt*"))
    found += glob.glob(os.path.join(glob.escape(card_path), "device", "tile?"))
    return len(found) or 1


def numa_node(card_path: str) -> int:
    """``GetNumaNode``: ``device/numa_node`` as int32 within int16 range, else -1."""
    try:
        text = _read(os.path.join(card_path, "device", "numa_node")).strip()
    except OSError:
        return -1
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return -1
    value = int(text)
    if not -(2**31) <= value < 2**31 or value > 2**15 - 1:
        return -1
    return value


def _legacy_memory(card_path: str, tiles: int, env: Mapping[str, str]) -> int:
    reserved = env_number(env, MEMORY_RESERVED_ENV)
    try:
        per_tile = _parse_uint_base0(_read(os.path.join(card_path, "lmem_total_bytes")).strip())
    except (OSError, ValueError) as err:
        LOG.debug("no lmem_total_bytes for %s (%s); using %s", card_path, err, MEMORY_OVERRIDE_ENV)
        return env_number(env, MEMORY_OVERRIDE_ENV)
    return (per_tile * tiles - reserved) % _UINT64  # uint64 arithmetic, as upstream


def memory_amount(card_path: str, tiles: int, env: Mapping[str, str],
                  memory_source: MemorySource | None = None) -> int:
    """``GetMemoryAmount``: the Level-Zero amount when available and non-zero, else sysfs/env."""
    try:
        bdf = os.path.basename(os.readlink(os.path.join(card_path, "device")))
    except OSError:
        return _legacy_memory(card_path, tiles, env)
    if memory_source is not None:
        try:
            amount = memory_source(bdf)
        except Exception as err:  # noqa: BLE001 - any sidecar failure means "use the fallback"
            LOG.debug("memory amount for %s from Level-Zero failed: %s", bdf, err)
            amount = 0
        if amount:
            return amount
    return _legacy_memory(card_path, tiles, env)


def pci_path_parts(levels: int, full_path: str) -> str:
    """``getPCIPathParts``: ``levels`` path components starting at the first one named ``pci*``."""
    parts = full_path.split("/")
    if len(parts) == 1:
        return ""
    found = False
    picked: list[str] = []
    for part in parts:
        if not found and part.startswith("pci"):
            found = True
        if found and levels > 0:
            picked.append(part)
            levels -= 1
        if levels == 0:
            return "/".join(picked)
    return ""


def pci_groups(drm_dir: str, gpu_numbers: list[str], level: int) -> str:
    """``createPCIGroupLabel``: GPUs sharing the first ``level`` PCI path parts, groups by ``_``."""
    if level == 0:
        return ""
    groups: dict[str, list[str]] = {}
    for num in gpu_numbers:
        target = os.path.realpath(os.path.join(drm_dir, "card" + num))
        if not os.path.exists(target):
            continue
        key = pci_path_parts(level, target)
        if key:
            groups.setdefault(key, []).append(num)
    return "_".join(".".join(groups[key]) for key in sorted(groups))


def numa_mapping_value(mapping: Mapping[int, list[str]]) -> str:
    """``createNumaNodeMappingLabel``: ``0-0.1_1-2.3``."""
    return "_".join(f"{node}-{'.'.join(mapping[node])}" for node in sorted(mapping))


def create_labels(drm_dir: str, env: Mapping[str, str] | None = None,
                  memory_source: MemorySource | None = None) -> dict[str, str]:
    """``createLabels``: every label for the GPUs under ``drm_dir`` (``<sysfs>/class/drm``).

    Raises :class:`LabelerError` when upstream's labeler would fail as a whole.
    """
    env = os.environ if env is None else env
    labels: dict[str, str] = {}
    cards = scan_cards(drm_dir)
    numbers: list[str] = []
    tiles_total = 0
    numa: dict[int, list[str]] = {}
    for name in cards:
        card = os.path.join(drm_dir, name)
        tiles = tile_count(card)
        tiles_total += tiles
        memory = memory_amount(card, tiles, env, memory_source)
        number = name[len("card"):]
        numbers.append(number)
        node = numa_node(card)
        if node >= 0:
            numa.setdefault(node, []).append(number)
        if memory < _MAX_INT64:
            _add_numeric(labels, LABEL_NAMESPACE + "memory.max", memory)
    _add_numeric(labels, LABEL_NAMESPACE + "tiles", tiles_total)
    if cards:
        cards_value = split_at_last_alnum(".".join(cards), LABEL_MAX_LENGTH, LABEL_CONTROL_CHAR)
        if cards_value:
            labels[LABEL_NAMESPACE + "cards"] = cards_value[0]  # deprecated label: first chunk only
        add_splittable(labels, LABEL_NAMESPACE + "gpu-numbers", ".".join(numbers))
        if numa:
            add_splittable(labels, LABEL_NAMESPACE + "numa-gpu-map", numa_mapping_value(numa))
        _add_numeric(labels, LABEL_NAMESPACE + "millicores", MILLICORES_PER_GPU * len(cards))
        groups = pci_groups(drm_dir, numbers, env_number(env, PCI_GROUPING_ENV))
        if groups:
            add_splittable(labels, LABEL_NAMESPACE + "pci-groups", groups)
    return labels


def format_labels(labels: Mapping[str, str]) -> str:
    """``key=value`` lines in sorted key order (upstream prints in Go map order)."""
    return "".join(f"{key}={labels[key]}\n" for key in sorted(labels))


def write_labels_file(labels: Mapping[str, str], path: str) -> None:
    """``atomicPrintLabelsToFile``: write in a temporary directory beside ``path`` (NFD ignores
    directories in features.d), then os.replace; for the plugin's NFD feature file."""
    replace_file(path, format_labels(labels), tmp_dir=os.path.dirname(path) or ".", prefix="labels",
                 name="labels.txt")
