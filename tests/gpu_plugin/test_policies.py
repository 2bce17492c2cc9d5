"""Allocation policies: upstream's TestGetPreferredAllocation cases, then edge cases."""

from __future__ import annotations

import pytest

from gpu_plugin import policies
from gpu_plugin.deviceplugin.api import AllocationError, DeviceID, ResourceType

# upstream allocationpolicy_test.go: rqt (20 IDs of 4 cards, 5 shares each), size 4
RQT = [
    "card0-4",
    "card0-2",
    "card1-1",
    "card2-3",
    "card2-4",
    "card2-1",
    "card1-0",
    "card1-4",
    "card3-4",
    "card1-2",
    "card0-1",
    "card2-0",
    "card2-2",
    "card1-3",
    "card3-0",
    "card3-3",
    "card0-3",
    "card0-0",
    "card3-1",
    "card3-2",
]
NOT_ENOUGH = ["card0-1", "card0-2", "card0-3", "card1-1"]
ERR = ["card0-4", "card1-1", "card2-3", "card2-4", "card2-1"]

UPSTREAM = [
    # (id, policy, available, size, expected, compare sorted? (upstream sorts none's map-ordered result))
    ("none", "none", RQT, 4, ["card0-4", "card1-1", "card2-3", "card3-4"], True),
    ("balanced", "balanced", RQT, 4, ["card0-0", "card1-0", "card2-0", "card3-0"], False),
    ("packed", "packed", RQT, 4, ["card0-0", "card0-1", "card0-2", "card0-3"], False),
    ("none with too few separate devices", "none", NOT_ENOUGH, 3, ["card0-1", "card0-2", "card1-1"], True),
]


@pytest.mark.parametrize(
    "policy,available,size,expected,sort", [c[1:] for c in UPSTREAM], ids=[c[0] for c in UPSTREAM]
)
def test_upstream_preferred_allocation(
    policy: str, available: list[str], size: int, expected: list[str], sort: bool
) -> None:
    result = policies.POLICIES[policy](list(available), [], size)
    assert (sorted(result) if sort else result) == expected


@pytest.mark.parametrize("policy", ["none", "balanced", "packed"])
def test_upstream_more_than_available_is_an_error(policy: str) -> None:
    with pytest.raises(AllocationError, match=r"AllocationSize \(6\) is greater than .* \(5\)"):
        policies.POLICIES[policy](ERR, [], 6)


CASES = [
    # none keeps kubelet's order and prefers distinct cards
    ("none-kubelet-order", "none", ["card1-0", "card1-1", "card0-0", "card0-1"], 2, ["card1-0", "card0-0"]),
    (
        "none-fills-with-remaining",
        "none",
        ["card1-0", "card1-1", "card0-0"],
        3,
        ["card1-0", "card0-0", "card1-1"],
    ),
    # balanced takes from the card with most free IDs; ties go to the lowest card name (string order)
    (
        "balanced-most-free-first",
        "balanced",
        ["card0-0", "card1-0", "card1-1", "card1-2"],
        3,
        ["card1-0", "card1-1", "card0-0"],
    ),
    ("balanced-string-order-tie", "balanced", ["card2-0", "card10-0"], 1, ["card10-0"]),
    (
        "balanced-spreads-then-wraps",
        "balanced",
        ["card0-0", "card0-1", "card1-0", "card1-1"],
        3,
        ["card0-0", "card1-0", "card0-1"],
    ),
    # packed fills one card before the next, in plain string order (upstream quirk kept)
    ("packed-string-order", "packed", ["card2-0", "card10-1", "card10-0"], 2, ["card10-0", "card10-1"]),
    ("packed-ignores-must-include", "packed", ["card1-0", "card0-0"], 1, ["card0-0"]),
    ("size-zero", "balanced", ["card0-0"], 0, []),
    ("all-devices", "none", ["card0-0", "card0-1"], 2, ["card0-0", "card0-1"]),
]


@pytest.mark.parametrize("policy,available,size,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_policy_cases(policy: str, available: list[str], size: int, expected: list[str]) -> None:
    assert policies.POLICIES[policy](available, ["card1-0"], size) == expected


def test_packed_does_not_mutate_the_request() -> None:
    available = ["card1-0", "card0-0"]
    policies.packed(available, [], 1)
    assert available == ["card1-0", "card0-0"]


def test_negative_size_is_an_error() -> None:
    with pytest.raises(AllocationError):
        policies.none(["card0-0"], [], -1)


def test_policy_allocator_wraps_a_policy() -> None:
    alloc = policies.PolicyAllocator("balanced")
    result = alloc.preferred_allocation(ResourceType("i915"), [DeviceID(i) for i in RQT], [], 4)
    assert result == ["card0-0", "card1-0", "card2-0", "card3-0"]
    with pytest.raises(ValueError, match="unknown allocation policy 'spread'"):
        policies.PolicyAllocator("spread")


def _upstream_balanced(available: list[str], size: int) -> list[str]:
    """Line-by-line port of upstream's balancedPolicy loop (rescans every card per pick)."""
    card: dict[str, list[str]] = {}
    count: dict[str, int] = {}
    for device_id in available:
        dev = device_id.split("-")[0]
        card.setdefault(dev, []).append(device_id)
        count[dev] = count.get(dev, 0) + 1
    index = sorted(count)
    for key in index:
        card[key].sort()
    out: list[str] = []
    while len(out) < size:
        best, most = "", 0
        for key in index:
            if count[key] > most:
                most, best = count[key], key
        out.append(card[best].pop(0))
        count[best] -= 1
    return out


def test_balanced_matches_upstream_loop_on_random_requests() -> None:
    """The heap-based balanced policy picks exactly what upstream's O(size x cards) loop picks."""
    import random

    rng = random.Random(20261127)
    for _ in range(300):
        cards = rng.randint(1, 40)
        picks = range(rng.randint(cards, 4 * cards))
        available = list(dict.fromkeys(f"card{rng.randint(0, 99)}-{rng.randint(0, 15)}" for _ in picks))
        rng.shuffle(available)
        size = rng.randint(0, len(available))
        assert policies.balanced(list(available), [], size) == _upstream_balanced(available, size), \
            (available, size)
