"""GetPreferredAllocation policies for shared GPUs: none, balanced, packed.

Pure functions over device-ID strings, ported from upstream's
``cmd/gpu_plugin/allocationpolicy.go`` with its results: IDs ``cardN-i`` are
grouped by the part before the first ``-`` and ordered by plain string sort
(``card10`` before ``card2``), as upstream's tests pin.  Must-include IDs are
ignored, as upstream does.  :class:`PolicyAllocator` plugs one into the framework.
"""
from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Sequence
from typing import cast

from gpu_plugin.deviceplugin.api import AllocationError, DeviceID, ResourceType

LOG = logging.getLogger(__name__)

Policy = Callable[[Sequence[str], Sequence[str], int], list[str]]

__all__ = ["Policy", "POLICIES", "none", "balanced", "packed", "PolicyAllocator"]


def _card(device_id: str) -> str:
    return device_id.split("-", 1)[0]


def _check(available: Sequence[str], size: int) -> None:
    if size > len(available):
        raise AllocationError(
            f"AllocationSize ({size}) is greater than the number of available device IDs ({len(available)})")
    if size < 0:
        raise AllocationError(f"AllocationSize ({size}) is negative")


def none(available: Sequence[str], must_include: Sequence[str], size: int) -> list[str]:
    """As many distinct GPUs as possible in kubelet's order, then the remaining IDs in order."""
    _check(available, size)
    selected: list[str] = []
    cards: set[str] = set()
    for device_id in available:
        if len(selected) == size:
            break
        if _card(device_id) not in cards:
            cards.add(_card(device_id))
            selected.append(device_id)
    taken = set(selected)
    for device_id in available:
        if len(selected) == size:
            break
        if device_id not in taken:
            taken.add(device_id)
            selected.append(device_id)
    return selected


def balanced(available: Sequence[str], must_include: Sequence[str], size: int) -> list[str]:
    """One ID at a time from the GPU with the most free IDs (ties: lowest card name), lowest ID first.

    Upstream rescans every card for each pick (O(size x cards)); a heap keyed by (-free IDs,
    card rank) picks the same card in O(log cards), so the whole call is O(n log n).
    """
    _check(available, size)
    per_card: dict[str, list[str]] = {}
    for device_id in available:
        card = device_id.split("-", 1)[0]
        ids = per_card.get(card)
        if ids is None:
            per_card[card] = [device_id]
        else:
            ids.append(device_id)
    order = sorted(per_card)
    queues = [per_card[card] for card in order]
    for ids in queues:
        ids.sort()
    taken = [0] * len(queues)
    heap = [(-len(ids), rank) for rank, ids in enumerate(queues)]
    heapq.heapify(heap)
    selected: list[str] = []
    while len(selected) < size:
        neg_free, rank = heapq.heappop(heap)
        selected.append(queues[rank][taken[rank]])
        taken[rank] += 1
        if neg_free + 1 < 0:
            heapq.heappush(heap, (neg_free + 1, rank))
    return selected


def packed(available: Sequence[str], must_include: Sequence[str], size: int) -> list[str]:
    """The first ``size`` IDs in string order: fill one GPU before the next."""
    _check(available, size)
    return sorted(available)[:size]


POLICIES: dict[str, Policy] = {"none": none, "balanced": balanced, "packed": packed}


class PolicyAllocator:
    """A :class:`~gpu_plugin.deviceplugin.api.PreferredAllocator` running one policy for every resource."""

    def __init__(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown allocation policy {policy!r}")
        self.name = policy
        self._policy = POLICIES[policy]

    def preferred_allocation(self, resource: ResourceType, available: Sequence[DeviceID],
                             must_include: Sequence[DeviceID], size: int) -> list[DeviceID]:
        debug = LOG.isEnabledFor(logging.DEBUG)
        if debug:
            LOG.debug("%s: %s policy, available %s, must include %s, size %d",
                      resource, self.name, list(available), list(must_include), size)
        ids = cast(list[DeviceID], self._policy(available, must_include, size))
        if debug:
            LOG.debug("%s: preferred %s", resource, ids)
        return ids
