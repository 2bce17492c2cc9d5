"""The fractional resource manager: GetPreferredAllocation and Allocate as GAS decided them.

Port of upstream's removed ``resourceManager`` (cmd/gpu_plugin/rm, parent of 281ca081).
GetPreferredAllocation finds the pending pod kubelet is admitting (pending GPU pods of this
node minus containers that already hold devices per the pod resources API; several -> the
oldest ``gas-ts``), picks one device ID per card of ``gas-container-cards`` and remembers it
with the tile mask; Allocate returns those devices plus ``ZE_AFFINITY_MASK``.  Any failure
means "use the default" (never an admission error), as upstream.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gpu_plugin.deviceplugin.api import (
    Allocator,
    ContainerAllocation,
    DeviceID,
    DeviceInfo,
    DeviceSpec,
    Mount,
    ResourceType,
)
from gpu_plugin.rm import gas
from gpu_plugin.rm.gas import Pod
from gpu_plugin.rm.podresources import PodResources, PodResourcesError

LOG = logging.getLogger(__name__)

SKIP_ID = "all"  #: the monitoring resource's device (upstream's monitorID): never handled here
RETRY_TIMEOUT = 1.0
CLEANUP_INTERVAL = 20 * 60.0
PHASE_PENDING, PHASE_RUNNING = "Pending", "Running"

__all__ = ["ResourceManager", "Candidate", "RetryError", "ZeroPendingError"]


class PodSource(Protocol):
    def with_phases(self, phases: tuple[str, ...]) -> dict[str, Pod]: ...


class PodResourcesSource(Protocol):
    def list(self) -> list[PodResources]: ...


class RetryError(Exception):
    """Things didn't work out, but perhaps a retry will help (annotations not visible yet)."""


class ZeroPendingError(Exception):
    """There are no pending pods anymore in this node."""


@dataclass(frozen=True)
class Candidate:
    """The pod being admitted; ``allocated`` = its GPU containers that already hold devices."""

    pod: Pod
    allocated: int
    target: int


@dataclass(frozen=True)
class _ContainerAssignment:
    device_ids: frozenset[str] = frozenset()
    tile_env: str = ""


class ResourceManager:
    """A :class:`~gpu_plugin.deviceplugin.api.PreferredAllocator` and ``Allocator`` for GAS pods.

    ``fallback`` is the allocator of the default method (e.g. the CDI spec writer); None =
    the framework's default merge.
    """

    def __init__(self, pods: PodSource, podresources: PodResourcesSource, resource_names: Sequence[str], *,
                 fallback: Allocator | None = None, skip_id: str = SKIP_ID,
                 retry_timeout: float = RETRY_TIMEOUT, cleanup_interval: float = CLEANUP_INTERVAL,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.pods = pods
        self.podresources = podresources
        self.resource_names = tuple(resource_names)
        self.fallback = fallback
        self.skip_id = skip_id
        self.retry_timeout = retry_timeout
        self.cleanup_interval = cleanup_interval
        self._sleep = sleep
        self._lock = threading.Lock()
        self._assignments: dict[str, list[_ContainerAssignment]] = {}
        self._tiles_per_card = 0

    # -- state fed by the scanner -----------------------------------------------------------
    @property
    def tiles_per_card(self) -> int:
        with self._lock:
            return self._tiles_per_card

    def set_tile_count_per_card(self, count: int) -> None:
        with self._lock:
            self._tiles_per_card = count

    def assignments(self) -> dict[str, list[tuple[list[str], str]]]:
        """A copy of the remembered per-pod container choices (sorted IDs, tile mask)."""
        with self._lock:
            return {k: [(sorted(c.device_ids), c.tile_env) for c in v] for k, v in self._assignments.items()}

    # -- candidate search -------------------------------------------------------------------
    def find_candidates(self, pending: Mapping[str, Pod]) -> list[Candidate]:
        """Pending pods whose GPU containers are not all allocated yet (findAllocationPodCandidates)."""
        candidates = []
        for res in self.podresources.list():
            pod = pending.get(gas.pod_key(res.namespace, res.name))
            if pod is None:
                continue
            allocated = res.allocated_containers(self.resource_names)
            target = gas.num_gpu_using_containers(pod, self.resource_names)
            if allocated < target:
                candidates.append(Candidate(pod, allocated, target))
        return candidates

    def find_candidate(self) -> Candidate:
        """The one pod being admitted; raises RetryError, ZeroPendingError, PodResourcesError."""
        pending = {k: p for k, p in self.pods.with_phases((PHASE_PENDING,)).items()
                   if gas.num_gpu_using_containers(p, self.resource_names) > 0}
        candidates = self.find_candidates(pending)
        if not candidates:
            LOG.debug("zero pending pods")
            raise ZeroPendingError("there are no pending pods anymore in this node")
        if len(candidates) == 1:
            if gas.GAS_CARD_ANNOTATION not in candidates[0].pod.annotations:
                LOG.warning("Pending POD annotations from scheduler not yet visible for pod %r",
                            candidates[0].pod.name)
                raise RetryError("annotations not visible")
            return candidates[0]
        LOG.debug("%d pods pending, picking oldest", len(candidates))
        stamped = [c for c in candidates if gas.GAS_TS_ANNOTATION in c.pod.annotations]
        if not stamped:
            LOG.warning("Pending POD annotations from scheduler not yet visible")
            raise RetryError("timestamps not visible")
        # string order, as upstream's sort.Slice (stable here: ties keep podresources order)
        return min(stamped, key=lambda c: c.pod.annotations[gas.GAS_TS_ANNOTATION])

    def _candidate_or_none(self) -> Candidate | None:
        try:
            try:
                return self.find_candidate()
            except RetryError:
                LOG.warning("retrying POD resolving after sleeping")
                self._sleep(self.retry_timeout)
                return self.find_candidate()
        except ZeroPendingError:
            return None
        except (RetryError, PodResourcesError) as err:
            LOG.error("allocation candidate not found, perhaps the GPU scheduler extender is not called, "
                      "err: %s", err)
            return None

    # -- the two kubelet calls --------------------------------------------------------------
    def preferred_allocation(self, resource: ResourceType, available: Sequence[DeviceID],
                             must_include: Sequence[DeviceID], size: int) -> list[DeviceID]:
        """GetPreferredFractionalAllocation for one container request; [] = no preference."""
        if self.skip_id in available:
            return []
        candidate = self._candidate_or_none()
        if candidate is None:
            return []  # an error would label the pod UnexpectedAdmissionError
        pod, index = candidate.pod, candidate.allocated
        cards = gas.container_cards(pod, index)
        mask = gas.container_tile_affinity_mask(pod, index, self.tiles_per_card)
        LOG.debug("Get preferred fractional allocation: %s %d %s %s", pod.key, size, list(must_include),
                  list(available))
        ids = gas.select_device_ids(size, cards, available, must_include)
        with self._lock:
            containers = self._assignments.setdefault(pod.key, [_ContainerAssignment()] * candidate.target)
            containers[index] = _ContainerAssignment(frozenset(ids), mask)
        LOG.debug("Selected devices for container: %s", ids)
        return [DeviceID(i) for i in ids]

    def allocate(self, resource: ResourceType, device_ids: Sequence[DeviceID],
                 tree: Mapping[DeviceID, DeviceInfo]) -> ContainerAllocation | None:
        """CreateFractionalResourceResponse for one container request; else the default method."""
        response = self._fractional(device_ids, tree)
        if response is not None:
            return response
        return self.fallback.allocate(resource, device_ids, tree) if self.fallback is not None else None

    def _fractional(self, device_ids: Sequence[DeviceID],
                    tree: Mapping[DeviceID, DeviceInfo]) -> ContainerAllocation | None:
        if self.skip_id in device_ids:
            return None
        LOG.debug("Proposed device ids: %s", list(device_ids))
        candidate = self._candidate_or_none()
        if candidate is None:
            return None
        with self._lock:
            containers = self._assignments.get(candidate.pod.key)
            if containers is None:
                LOG.error("couldn't find allocation info from assignments: %s", candidate.pod.key)
                return None
            chosen = containers[candidate.allocated]
        if len(device_ids) != len(chosen.device_ids):
            LOG.warning("Allocate called with odd number of device IDs: %d vs %d",
                        len(device_ids), len(chosen.device_ids))
        for device_id in device_ids:
            if device_id not in chosen.device_ids:
                LOG.warning("Not preferred device used in Allocate: %s (%s)", device_id,
                            sorted(chosen.device_ids))
        LOG.debug("Allocate affinity mask: %s, device ids: %s", chosen.tile_env, list(device_ids))
        return self.response(device_ids, chosen.tile_env, tree)

    @staticmethod
    def response(device_ids: Sequence[DeviceID], tile_mask: str,
                 tree: Mapping[DeviceID, DeviceInfo]) -> ContainerAllocation | None:
        """Nodes, mounts and envs of the devices plus the tile mask (createAllocateResponse)."""
        nodes: list[DeviceSpec] = []
        mounts: list[Mount] = []
        envs: dict[str, str] = {}
        for device_id in device_ids:
            info = tree.get(device_id)
            if info is None:
                LOG.warning("No device info for %r, using default allocation method devices", device_id)
                return None
            nodes.extend(info.nodes)
            mounts.extend(info.mounts)
            envs.update(info.envs)
        if tile_mask:
            envs[gas.LEVELZERO_AFFINITY_MASK_ENV] = tile_mask
        return ContainerAllocation(devices=tuple(nodes), mounts=tuple(mounts), envs=envs)

    # -- periodic cleanup -------------------------------------------------------------------
    def cleanup(self) -> None:
        """Forget the choices of pods neither Running nor Pending (gone, finished)."""
        alive = self.pods.with_phases((PHASE_RUNNING, PHASE_PENDING))
        with self._lock:
            for key in [k for k in self._assignments if k not in alive]:
                LOG.debug("Removing from assignments: %s", key)
                del self._assignments[key]

    def run_cleanup(self, stop: threading.Event) -> None:
        """Every cleanup_interval/2 .. 3*cleanup_interval/2 (random) until ``stop`` is set."""
        while not stop.wait(self.cleanup_interval / 2 + random.uniform(0, self.cleanup_interval)):
            try:
                self.cleanup()
            except Exception:  # never die
                LOG.exception("assignment cleanup failed")
