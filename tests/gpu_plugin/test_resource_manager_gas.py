"""GAS annotation logic of -resource-manager: upstream's TestTileAnnotationParsing and
TestSelectDeviceIDsForContainer* (cmd/gpu_plugin/rm, parent of 281ca081) ported case by case,
plus pod JSON parsing and Kubernetes quantities.  Pure functions, no I/O."""
from __future__ import annotations

import pytest

from gpu_plugin.rm import gas
from gpu_plugin.rm.gas import Container, Pod


def _tile_pod(line: str, hierarchies: list[str] | None) -> Pod:
    containers: tuple[Container, ...] = ()
    if hierarchies is not None:  # upstream creates 10 containers, the first ones with the env
        containers = tuple(Container(env={gas.LEVELZERO_HIERARCHY_ENV: hierarchies[i]} if i < len(hierarchies)
                                     else {}) for i in range(10))
    return Pod(name="p", annotations={gas.GAS_TILE_ANNOTATION: line}, containers=containers)


# (line, container index, expected mask, hierarchies per container, tiles per card) — upstream's table
TILE_CASES = [
    ("card1:gt1", 0, "0.1", ["COMPOSITE"], 2),
    ("card1:gt0", 0, "", ["COMPOSITE"], 1),
    ("card1:gt1+gt2", 0, "0.1,0.2", ["COMPOSITE"], 3),
    ("card1:gt1+gt2,card2:gt0", 0, "1,2,3", ["FOOBAR"], 3),  # invalid hierarchy defaults to FLAT
    ("card1:gt1+gt2,card2:gt0", 0, "1,2,3", ["FLAT"], 3),
    ("||card1:gt1+gt2,card2:gt0", 0, "1,2,3", ["", "", "FLAT"], 3),
    ("||||card1:gt3,card5:gt1", 0, "3,9", ["", "", "", "", "FLAT"], 8),
    ("card1:gt1+gt2,card2:gt1", 0, "1,2,4", ["COMBINED"], 3),
    ("card1:gt1,card2:gt1", 0, "1,3", ["COMBINED"], 2),
    ("card1:gt1", 1, "", None, 0),
    ("card1:gt1|card2:gt4", 1, "4", None, 5),
    ("card1:gt1|card2:gt4,card3:gt2", 1, "0.4,1.2", ["COMPOSITE", "COMPOSITE"], 5),
    ("card1:gt1|card2:gt4,card3:gt2|card5:gt0", 2, "0.0", ["COMPOSITE"] * 3, 5),
    ("||card5:gt0,card6:gt4||", 0, "0.0,1.4", ["", "", "COMPOSITE"], 5),
    ("||card5:gt0,card6:gt4||", 1, "", None, 0),
    ("||card5:gt0,card:6:gt4||", 0, "", None, 0),
    ("||card5:gt0,card6:gt+gt+gt||", 0, "", None, 0),
    ("card1:gtX", 0, "", None, 0),
    ("card1:64X", 0, "", None, 0),
    ("|", 0, "", None, 0),
    ("card1:gt1||card2:gt4,card3:gt2", 1, "0.4,1.2", ["", "", "COMPOSITE"], 6),
    ("|||card2:gt7", 0, "0.7", ["", "", "", "COMPOSITE"], 8),
    ("card5", 0, "", None, 0),
]


@pytest.mark.parametrize("line,index,expected,hierarchies,tiles", TILE_CASES,
                         ids=[f"{i}:{c[0]}@{c[1]}" for i, c in enumerate(TILE_CASES)])
def test_tile_annotation_parsing(line: str, index: int, expected: str, hierarchies: list[str] | None,
                                 tiles: int) -> None:
    pod = _tile_pod(line, hierarchies)
    assert gas.container_tile_affinity_mask(pod, index, max(1, tiles)) == expected


def test_tile_mask_needs_more_than_one_tile_and_an_annotation() -> None:
    pod = _tile_pod("card1:gt1", ["COMPOSITE"])
    assert gas.container_tile_affinity_mask(pod, 0, 2) == "0.1"
    assert gas.container_tile_affinity_mask(pod, 0, 1) == ""
    assert gas.container_tile_affinity_mask(Pod(name="p"), 0, 4) == ""


@pytest.mark.parametrize("requested,cards,available,must,expected", [
    (2, ["card0", "card1"], ["card0-0", "card0-1", "card0-2", "card1-0", "card1-1", "card1-2"], [],
     ["card0-0", "card1-0"]),
    (1, ["card2"], ["card0-0", "card0-1", "card1-0", "card2-0", "card2-1"], [], ["card2-0"]),
    (2, ["card0", "card1"], ["card0-0", "card0-1", "card1-0"], ["card0-2"], ["card0-2", "card1-0"]),
    (3, ["card0", "card1", "card0"], ["card0-0", "card0-1", "card1-0"], [],
     ["card0-0", "card1-0", "card0-1"]),
    (1, ["card0", "card1"], ["card0-0", "card1-0"], [], ["card0-0"]),  # fewer requested: first cards
    (3, ["card0", "card1"], ["card0-0", "card0-1", "card1-0"], [], ["card0-0", "card1-0"]),
    (1, ["card6"], ["card0-0"], [], []),  # GAS' card not among the available IDs
    (2, ["card0", "card0"], ["card0-0"], [], ["card0-0"]),  # card exhausted
], ids=["double cards", "single card", "must include first", "duplicate card", "size below cards",
        "size above cards", "unknown card", "card exhausted"])
def test_select_device_ids(requested: int, cards: list[str], available: list[str], must: list[str],
                           expected: list[str]) -> None:
    assert gas.select_device_ids(requested, cards, available, must) == expected


@pytest.mark.parametrize("annotation,index,expected", [
    ("card0", 0, ["card0"]),
    ("card0,card1|card2,card3", 1, ["card2", "card3"]),
    ("|card2", 0, ["card2"]),  # empty container entries are not GPU containers
    ("card0", 1, []),
    ("", 0, []),
])
def test_container_cards(annotation: str, index: int, expected: list[str]) -> None:
    pod = Pod(name="p", annotations={gas.GAS_CARD_ANNOTATION: annotation})
    assert gas.container_cards(pod, index) == expected


@pytest.mark.parametrize("text,value", [
    ("1", 1), ("2", 2), ("0", 0), ("1k", 1000), ("1Ki", 1024), ("500m", 0), ("1000m", 1), ("0.5", 0),
    ("1e3", 1000), ("garbage", 0), ("", 0),
])
def test_quantity_as_int(text: str, value: int) -> None:
    assert gas.quantity_as_int(text) == value


def test_pod_from_json_and_gpu_containers() -> None:
    pod = Pod.from_json({
        "metadata": {"name": "w", "namespace": "ns", "annotations": {"gas-ts": "5"}},
        "spec": {"containers": [
            {"name": "a", "resources": {"requests": {"gpu.intel.com/i915": "1", "cpu": "1"}},
             "env": [{"name": "ZE_FLAT_DEVICE_HIERARCHY", "value": "COMPOSITE"},
                     {"name": "X", "valueFrom": {"fieldRef": {}}}]},
            {"name": "b", "resources": {"requests": {"gpu.intel.com/i915_monitoring": "1"}}},
            {"name": "c", "resources": {"limits": {"gpu.intel.com/xe": "1"}}},
            {"name": "d", "resources": {"requests": {"gpu.intel.com/xe": "2"}}},
            {"name": "e"}]},
        "status": {"phase": "Pending"}})
    assert (pod.key, pod.phase, pod.annotations) == ("ns&w", "Pending", {"gas-ts": "5"})
    assert gas.hierarchy_mode(pod, 0) == "COMPOSITE" and gas.hierarchy_mode(pod, 1) == "FLAT"
    # limits-only containers do not count (upstream reads Requests; the API server defaults them)
    assert gas.num_gpu_using_containers(pod, ("gpu.intel.com/i915", "gpu.intel.com/xe")) == 2
    assert gas.num_gpu_using_containers(pod, ("gpu.less.com/i915",)) == 0
