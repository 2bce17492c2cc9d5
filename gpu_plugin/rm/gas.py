"""GPU Aware Scheduling (GAS) pod data: annotations, GPU-using containers, card and tile choice.

Pure functions over :class:`Pod` (parsed from the Kubernetes JSON of a pod), ported from
upstream's removed ``cmd/gpu_plugin/rm/gpu_plugin_resource_manager.go`` (parent of 281ca081)
with its exact annotation names, separators and Level-Zero affinity-mask rules.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

LOG = logging.getLogger(__name__)

GAS_TS_ANNOTATION = "gas-ts"
GAS_CARD_ANNOTATION = "gas-container-cards"
GAS_TILE_ANNOTATION = "gas-container-tiles"
LEVELZERO_AFFINITY_MASK_ENV = "ZE_AFFINITY_MASK"
LEVELZERO_HIERARCHY_ENV = "ZE_FLAT_DEVICE_HIERARCHY"
HIERARCHY_COMPOSITE, HIERARCHY_FLAT, HIERARCHY_COMBINED = "COMPOSITE", "FLAT", "COMBINED"

_SUFFIXES: dict[str, int | Decimal] = {
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "m": Decimal("0.001"), "u": Decimal("0.000001"), "n": Decimal("0.000000001")}


@dataclass(frozen=True)
class Container:
    """One container of a pod spec: its resource requests and its plain env values."""

    name: str = ""
    requests: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pod:
    """What the resource manager needs of a pod (``key`` is upstream's ``namespace&name``)."""

    name: str
    namespace: str = ""
    phase: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    containers: tuple[Container, ...] = ()

    @property
    def key(self) -> str:
        return pod_key(self.namespace, self.name)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Pod:
        """A pod from its Kubernetes JSON form (API server or kubelet ``/pods``)."""
        meta = obj.get("metadata") or {}
        containers = []
        for c in (obj.get("spec") or {}).get("containers") or []:
            requests = ((c.get("resources") or {}).get("requests")) or {}
            env = {e.get("name", ""): e.get("value", "") for e in c.get("env") or [] if isinstance(e, dict)}
            requests = {str(k): str(v) for k, v in requests.items()}
            containers.append(Container(c.get("name", ""), requests, env))
        return cls(name=meta.get("name", ""), namespace=meta.get("namespace", ""),
                   phase=(obj.get("status") or {}).get("phase", ""),
                   annotations=dict(meta.get("annotations") or {}), containers=tuple(containers))


def pod_key(namespace: str, name: str) -> str:
    """Upstream's getPodKey / getPodResourceKey."""
    return namespace + "&" + name


def quantity_as_int(text: str) -> int:
    """Kubernetes ``Quantity.AsInt64``: the integer value, 0 when not a whole number or invalid."""
    text = text.strip()
    number, multiplier = text, Decimal(1)
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix) and suffix != text:
            number, multiplier = text[: -len(suffix)], Decimal(_SUFFIXES[suffix])
            break
    try:
        value = Decimal(number) * multiplier
    except InvalidOperation:
        return 0
    return int(value) if value == value.to_integral_value() else 0


def num_gpu_using_containers(pod: Pod, resource_names: Sequence[str]) -> int:
    """Containers requesting > 0 of any of ``resource_names`` (upstream's numGPUUsingContainers)."""
    return sum(1 for c in pod.containers
               if any(quantity_as_int(q) > 0 for r, q in c.requests.items() if r in resource_names))


def container_cards(pod: Pod, gpu_container_index: int) -> list[str]:
    """Cards GAS chose for the n-th GPU-using container (``gas-container-cards``: ``|`` and ``,``)."""
    i = 0
    for card_list in pod.annotations.get(GAS_CARD_ANNOTATION, "").split("|"):
        if card_list:
            if i == gpu_container_index:
                LOG.debug("Cards for container nr %d in pod %s are %s", i, pod.key, card_list.split(","))
                return card_list.split(",")
            i += 1
    LOG.warning("couldn't find cards for gpu using container index %d", gpu_container_index)
    return []


def hierarchy_mode(pod: Pod, container_index: int) -> str:
    """The container's valid ``ZE_FLAT_DEVICE_HIERARCHY``, else FLAT (guessLevelzeroHierarchyMode)."""
    if container_index < len(pod.containers):
        value = pod.containers[container_index].env.get(LEVELZERO_HIERARCHY_ENV)
        if value in (HIERARCHY_COMPOSITE, HIERARCHY_FLAT, HIERARCHY_COMBINED):
            return value
    return HIERARCHY_FLAT


def tile_info_to_mask(tile_info: str, tiles_per_card: int, mode: str) -> str:
    """``card1:gt1+gt2,card2:gt0`` -> an affinity mask; "" on any syntax error (convertTileInfoToEnvMask)."""
    per_card = []
    for i, combo in enumerate(tile_info.split(",")):
        parts = combo.split(":")
        if len(parts) != 2:
            LOG.warning("invalid card tile combo string (%s)", combo)
            return ""
        items = []
        for tile in parts[1].split("+"):
            number = tile[2:] if tile.startswith("gt") else ""
            try:
                tile_no = int(number, 10)
            except ValueError:
                tile_no = None
            # Go's strconv.ParseInt(s, 10, 16): optional sign, digits only, int16 range
            if tile_no is None or not number.lstrip("+-").isdigit() or not -(2**15) <= tile_no < 2**15:
                LOG.warning("invalid tile syntax (%s)", tile)
                return ""
            # COMPOSITE: card.tile; FLAT and COMBINED: a flat device index
            items.append(f"{i}.{tile_no}" if mode == HIERARCHY_COMPOSITE
                         else str(i * tiles_per_card + tile_no))
        per_card.append(",".join(items))
    return ",".join(per_card)


def container_tile_affinity_mask(pod: Pod, gpu_container_index: int, tiles_per_card: int) -> str:
    """``ZE_AFFINITY_MASK`` for the n-th GPU-using container from ``gas-container-tiles``.

    Empty for 1-tile GPUs (exposing the GPU is enough) and when the annotation is absent.
    The hierarchy mode comes from the container at the annotation's raw index, as upstream.
    """
    full = pod.annotations.get(GAS_TILE_ANNOTATION, "")
    if not full or full.count("|") == len(full) or tiles_per_card <= 1:
        return ""
    i = 0
    for container_index, info in enumerate(full.split("|")):
        if not info:
            continue
        if i == gpu_container_index:
            return tile_info_to_mask(info, tiles_per_card, hierarchy_mode(pod, container_index))
        i += 1
    LOG.warning("couldn't find tile info for gpu using container index %d", gpu_container_index)
    return ""


def select_device_ids(requested: int, cards: Sequence[str], available: Sequence[str],
                      must_include: Sequence[str]) -> list[str]:
    """One device ID per chosen card, must-include IDs first (selectDeviceIDsForContainer)."""
    if requested < len(cards):
        LOG.warning("Requested count is less than card count: %d vs %d.", requested, len(cards))
        cards = cards[:requested]
    if requested > len(cards):
        LOG.warning("Requested count is higher than card count: %d vs %d.", requested, len(cards))
    by_card: dict[str, list[str]] = {}
    for device_id in (*must_include, *available):
        by_card.setdefault(device_id.split("-")[0], []).append(device_id)
    used: dict[str, int] = {}
    selected = []
    for card in cards:
        if card not in by_card:
            LOG.warning("card %s is not found from known devices: %s", card, by_card)
            continue
        index = used.get(card, 0)
        if index < len(by_card[card]):
            selected.append(by_card[card][index])
            used[card] = index + 1
    return selected
